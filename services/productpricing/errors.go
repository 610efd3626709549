package productpricing

import (
	"fmt"
	"strings"
)

// The domain reports what went wrong with these error types; server.go maps
// each to a gRPC status in one place (mapError). They carry the field path,
// the stable reason and the facts a caller needs (which list overlaps, which
// product holds a reference), never internals.

// FieldViolation names one invalid field by its path in the request, for
// example "product.conversions[1].per_unit".
type FieldViolation struct {
	Field       string
	Description string
}

// InvalidError reports invalid input. Reason is the stable reason; empty
// means the generic INVALID_ARGUMENT. Meta adds facts such as the unit
// concerned.
type InvalidError struct {
	Reason     string
	Violations []FieldViolation
	Meta       map[string]string
}

// Error names the first field, so a log line alone is useful.
func (e *InvalidError) Error() string {
	if len(e.Violations) == 0 {
		return "invalid argument"
	}
	msg := fmt.Sprintf("invalid %s: %s", e.Violations[0].Field, e.Violations[0].Description)
	if n := len(e.Violations) - 1; n > 0 {
		msg += fmt.Sprintf(" (and %d more)", n)
	}
	return msg
}

// invalid returns an InvalidError for one field.
func invalid(field, format string, args ...any) *InvalidError {
	return &InvalidError{Violations: []FieldViolation{{Field: field, Description: fmt.Sprintf(format, args...)}}}
}

// invalidReason returns an InvalidError for one field with its own reason.
func invalidReason(reason string, meta map[string]string, field, format string, args ...any) *InvalidError {
	e := invalid(field, format, args...)
	e.Reason = reason
	e.Meta = meta
	return e
}

// violations collects every problem of a record before answering, so a
// caller fixes its input in one round trip.
type violations []FieldViolation

func (v *violations) add(field, format string, args ...any) {
	*v = append(*v, FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

// err returns nil when nothing was added.
func (v violations) err() error {
	if len(v) == 0 {
		return nil
	}
	return &InvalidError{Violations: v}
}

// NotFoundError reports a missing product or price list.
type NotFoundError struct {
	Kind string // "product", "price list", "customer"
	ID   string
}

func (e *NotFoundError) Error() string { return fmt.Sprintf("%s %q not found", e.Kind, e.ID) }

// ConflictError reports a write that collides with another record (HTTP
// 409): a SKU that exists, an external reference another product holds, an
// overlapping price list.
type ConflictError struct {
	Reason  string
	Message string
	Meta    map[string]string
}

func (e *ConflictError) Error() string { return e.Message }

// StaleEtagError reports an update or delete based on an outdated version.
type StaleEtagError struct {
	Kind string
	ID   string
}

func (e *StaleEtagError) Error() string {
	return fmt.Sprintf("%s %q: stale etag", e.Kind, e.ID)
}

// PreconditionError reports a change the current state does not allow, such
// as removing a unit a price list still prices in.
type PreconditionError struct {
	Reason  string
	Message string
	Meta    map[string]string
}

func (e *PreconditionError) Error() string { return e.Message }

// ForbiddenError reports a write outside the caller's region scope.
type ForbiddenError struct {
	Reason  string
	Field   string
	Message string
}

func (e *ForbiddenError) Error() string { return e.Message }

// PeerUnavailableError reports a peer service (the customer directory) that
// could not answer in time. Callers may retry.
type PeerUnavailableError struct {
	Peer string
	Err  error
}

func (e *PeerUnavailableError) Error() string {
	return fmt.Sprintf("%s unavailable: %v", e.Peer, e.Err)
}

func (e *PeerUnavailableError) Unwrap() error { return e.Err }

// fieldPath joins a path prefix and a field: fieldPath("product",
// "conversions[1]", "unit") is "product.conversions[1].unit".
func fieldPath(parts ...string) string {
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

// indexed renders "entries[3]".
func indexed(name string, i int) string { return fmt.Sprintf("%s[%d]", name, i) }
