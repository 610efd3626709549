package fulfillment

import (
	"fmt"
	"strings"
)

// The domain reports what went wrong with these error types; server.go maps
// each to its API error in one place (apiError). They carry the field path,
// the stable reason and the facts a caller needs, never internals.

// fieldViolation names one invalid field by its full path in the request,
// for example "shipment.lines[1].quantity".
type fieldViolation struct {
	Field       string
	Description string
}

// invalidError reports invalid input. Reason is the stable reason; empty
// means the generic INVALID_ARGUMENT.
type invalidError struct {
	Reason     string
	Violations []fieldViolation
	// Meta adds machine-readable facts to the ErrorInfo, such as the
	// product's base unit when a unit is unknown.
	Meta map[string]string
}

func (e *invalidError) Error() string {
	msg := fmt.Sprintf("invalid %s: %s", e.Violations[0].Field, e.Violations[0].Description)
	if n := len(e.Violations) - 1; n > 0 {
		msg += fmt.Sprintf(" (and %d more)", n)
	}
	return msg
}

func invalid(field, format string, args ...any) error {
	return &invalidError{Violations: []fieldViolation{{Field: field, Description: fmt.Sprintf(format, args...)}}}
}

func invalidReason(reason, field, format string, args ...any) error {
	return &invalidError{Reason: reason, Violations: []fieldViolation{{Field: field, Description: fmt.Sprintf(format, args...)}}}
}

// notFoundError reports a record that does not exist or that the caller may
// not see; the two are indistinguishable on purpose.
type notFoundError struct{ Kind, ID string }

func (e *notFoundError) Error() string { return fmt.Sprintf("%s %q not found", e.Kind, e.ID) }

// conflictError reports a write that collides with an existing record
// (HTTP 409).
type conflictError struct {
	Reason  string
	Message string
	Meta    map[string]string
}

func (e *conflictError) Error() string { return e.Message }

// preconditionError reports an operation the current state does not allow.
// Field names the request field the caller would change to succeed.
type preconditionError struct {
	Reason  string
	Field   string
	Message string
	Meta    map[string]string
}

func (e *preconditionError) Error() string { return e.Message }

func precondition(reason, field, format string, args ...any) error {
	return &preconditionError{Reason: reason, Field: field, Message: fmt.Sprintf(format, args...)}
}

// regionError reports a write outside the caller's region scope.
type regionError struct{ Field, Region, Scope string }

func (e *regionError) Error() string {
	return fmt.Sprintf("%s %q is outside this key's region %q", e.Field, e.Region, e.Scope)
}

// PeerUnavailableError reports a peer service (productpricing, order) that
// could not answer in time. The call fails with UNAVAILABLE (HTTP 503) and
// writes nothing; callers may retry.
type PeerUnavailableError struct {
	Peer string
	Err  error
}

func (e *PeerUnavailableError) Error() string {
	return fmt.Sprintf("%s unavailable: %v", e.Peer, e.Err)
}

func (e *PeerUnavailableError) Unwrap() error { return e.Err }

// checker collects every problem of a request before answering, so a
// caller fixes its input in one round trip.
type checker struct{ v []fieldViolation }

func (c *checker) add(field, format string, args ...any) {
	c.v = append(c.v, fieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

func (c *checker) err() error {
	if len(c.v) == 0 {
		return nil
	}
	return &invalidError{Violations: c.v}
}

// path joins a field path: path("shipment", "lines[1]", "quantity").
func path(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		if p == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

func indexed(name string, i int) string { return fmt.Sprintf("%s[%d]", name, i) }
