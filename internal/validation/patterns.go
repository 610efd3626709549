package validation

import "strings"

// patternPrefix starts the description protovalidate gives a value that
// misses its field's string.pattern rule.
const patternPrefix = "does not match regex pattern `"

// patternMeanings says in words what each pattern of the contracts
// accepts, with an example, so that a CRM admin reading a 400 learns what
// to send without reading a regular expression. The pattern itself stays in
// the description, after the words.
var patternMeanings = map[string]string{
	`^(0|[1-9][0-9]{0,11})(\.[0-9]{1,6})?$`:   `must be a decimal number, not negative, with at most 12 digits before the point and 6 after and no leading zeros, like "12.5"`,
	`^(0|[1-9][0-9]{0,11})(\.[0-9]{1,9})?$`:   `must be a decimal number, not negative, with at most 12 digits before the point and 9 after and no leading zeros, like "0.25"`,
	`^-?(0|[1-9][0-9]{0,11})(\.[0-9]{1,6})?$`: `must be a decimal number, negative with a leading "-", with at most 12 digits before the point and 6 after and no leading zeros, like "-3" or "40.5"`,
	`^(0|[1-9][0-9]{0,14})(\.[0-9]{1,6})?$`:   `must be a decimal amount, not negative, with at most 15 digits before the point and 6 after and no leading zeros, like "1250.00"`,
	`^-?(0|[1-9][0-9]{0,14})(\.[0-9]{1,6})?$`: `must be a decimal amount, negative with a leading "-", with at most 15 digits before the point and 6 after and no leading zeros, like "1250.00" or "-12.5"`,
	`^[A-Z]{3}$`:                    `must be an ISO 4217 currency code of three capital letters, like "EUR"`,
	`^([A-Z]{3})?$`:                 `must be empty or an ISO 4217 currency code of three capital letters, like "EUR"`,
	`^([A-Z]{2})?$`:                 `must be empty or an ISO 3166 country code of two capital letters, like "DE"`,
	`^[A-Z][A-Z0-9_]{0,15}$`:        `must be a unit code of 1 to 16 capital letters, digits and underscores starting with a letter, like "EA" or "BOX_12"`,
	`^[a-z][a-z0-9-]{1,31}$`:        `must be 2 to 32 lower-case letters, digits and hyphens starting with a letter, like "eu" or "us-east"`,
	`^([a-z][a-z0-9-]{1,31})?$`:     `must be empty or 2 to 32 lower-case letters, digits and hyphens starting with a letter, like "eu" or "us-east"`,
	`^[a-z][a-z0-9_-]{1,31}$`:       `must be 2 to 32 lower-case letters, digits, "_" and "-" starting with a letter, like "salesforce"`,
	`^([a-z][a-z0-9_-]{0,31})?$`:    `must be empty or up to 32 lower-case letters, digits, "_" and "-" starting with a letter, like "gold"`,
	`^([A-Z0-9_]{1,16})?$`:          `must be empty or up to 16 capital letters, digits and underscores, like "NET30"`,
	`^[a-z0-9][a-z0-9-]{0,63}$`:     `must be 1 to 64 lower-case letters, digits and hyphens, not starting with a hyphen, like "plant-lyon"`,
	`^([^@\s]+@[^@\s]+\.[^@\s]+)?$`: `must be empty or an e-mail address, like "ap@acme.example"`,
	`^[A-Za-z0-9._]{1,200}\*?$`:     `must be an event type of 1 to 200 letters, digits, "." and "_", ending in "*" to match a prefix, like "millrace.events.v1.OrderAccepted" or "millrace.events.v1.Order*"`,
	`^[A-Z0-9][A-Z0-9._-]{0,63}$`:   `must be 1 to 64 capital letters, digits, ".", "_" and "-", starting with a letter or digit, like "VALVE-BV25"`,
}

// describe returns a violation's description for the API: a pattern
// miss says in words what the field accepts, followed by the pattern;
// anything else is left as it is.
func describe(message string) string {
	pattern, ok := strings.CutPrefix(message, patternPrefix)
	if !ok {
		return message
	}
	pattern, ok = strings.CutSuffix(pattern, "`")
	if !ok {
		return message
	}
	meaning, ok := patternMeanings[pattern]
	if !ok {
		return message
	}
	return meaning + " (pattern `" + pattern + "`)"
}
