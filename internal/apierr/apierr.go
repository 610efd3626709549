// Package apierr builds the errors Millrace returns to callers: a gRPC status
// carrying google.rpc.ErrorInfo with a stable reason string and, for invalid
// input, google.rpc.BadRequest field violations. The gateway turns the gRPC
// code into the HTTP status; clients branch on the reason, never on the text.
package apierr

import (
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Domain is the ErrorInfo domain of every Millrace error.
const Domain = "millrace.dev"

// Stable reasons shared across services. Services add their own.
const (
	ReasonInvalidArgument     = "INVALID_ARGUMENT"
	ReasonNotFound            = "NOT_FOUND"
	ReasonAlreadyExists       = "ALREADY_EXISTS"
	ReasonStaleEtag           = "STALE_ETAG"
	ReasonUnauthenticated     = "UNAUTHENTICATED"
	ReasonPermissionDenied    = "PERMISSION_DENIED"
	ReasonFieldOwnedByRole    = "FIELD_OWNED_BY_ROLE"
	ReasonRateLimited         = "RATE_LIMITED"
	ReasonIdempotencyMismatch = "IDEMPOTENCY_KEY_REUSED"
	ReasonIdempotencyInFlight = "IDEMPOTENCY_KEY_IN_FLIGHT"
	// ReasonIdempotencySealed: the kept answer holds a secret sealed for
	// another credential than the replaying caller's.
	ReasonIdempotencySealed  = "IDEMPOTENCY_ANSWER_SEALED"
	ReasonUnavailable        = "PEER_UNAVAILABLE"
	ReasonInternal           = "INTERNAL"
	ReasonFailedPrecondition = "FAILED_PRECONDITION"
)

// FieldViolation names one invalid field by its path in the request, for
// example "customer.billing_address.country_code".
type FieldViolation struct {
	Field       string
	Description string
}

// New returns a status error with ErrorInfo{reason, metadata}.
func New(code codes.Code, reason, message string, metadata map[string]string) error {
	st := status.New(code, message)
	withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: Domain, Metadata: metadata})
	if err != nil {
		return st.Err()
	}
	return withInfo.Err()
}

// Invalid reports one invalid field.
func Invalid(field, description string) error {
	return InvalidFields(FieldViolation{Field: field, Description: description})
}

// InvalidFields reports invalid input with one violation per field. The
// message names the first field so that a log line alone is useful.
func InvalidFields(violations ...FieldViolation) error {
	msg := "invalid argument"
	if len(violations) > 0 {
		msg = fmt.Sprintf("invalid %s: %s", violations[0].Field, violations[0].Description)
		if len(violations) > 1 {
			msg += fmt.Sprintf(" (and %d more)", len(violations)-1)
		}
	}
	br := &errdetails.BadRequest{}
	for _, v := range violations {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
	}
	st := status.New(codes.InvalidArgument, msg)
	var meta map[string]string
	if len(violations) > 0 {
		meta = map[string]string{"field": violations[0].Field}
	}
	withDetails, err := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonInvalidArgument, Domain: Domain, Metadata: meta}, br)
	if err != nil {
		return st.Err()
	}
	return withDetails.Err()
}

// NotFound reports a missing resource of a kind ("customer") and id.
func NotFound(kind, id string) error {
	return New(codes.NotFound, ReasonNotFound, fmt.Sprintf("%s %q not found", kind, id), map[string]string{"kind": kind, "id": id})
}

// AlreadyExists reports a conflict with an existing resource (HTTP 409).
func AlreadyExists(reason, message string, metadata map[string]string) error {
	return New(codes.AlreadyExists, reason, message, metadata)
}

// StaleEtag reports an update based on an outdated version (HTTP 409).
func StaleEtag(kind, id string) error {
	return New(codes.Aborted, ReasonStaleEtag, fmt.Sprintf("%s %q was changed by someone else; fetch it again and retry with the new etag", kind, id), map[string]string{"kind": kind, "id": id})
}

// FailedPrecondition reports an operation the resource's state does not allow.
func FailedPrecondition(reason, message string, metadata map[string]string) error {
	return New(codes.FailedPrecondition, reason, message, metadata)
}

// PermissionDenied reports a caller that may not do this (HTTP 403).
func PermissionDenied(reason, message string, metadata map[string]string) error {
	return New(codes.PermissionDenied, reason, message, metadata)
}

// FieldOwned reports an attempt to write a field another role owns.
func FieldOwned(field, owner string) error {
	return New(codes.PermissionDenied, ReasonFieldOwnedByRole,
		fmt.Sprintf("field %s is owned by the %s role and cannot be written with this key", field, owner),
		map[string]string{"field": field, "owning_role": owner})
}

// Unavailable reports a peer service that could not be reached (HTTP 503).
func Unavailable(peer string, cause error) error {
	msg := fmt.Sprintf("%s is unavailable", peer)
	return New(codes.Unavailable, ReasonUnavailable, msg, map[string]string{"peer": peer})
}

// Internal reports a server fault without leaking its details; the cause
// belongs in the log, not the response.
func Internal() error {
	return New(codes.Internal, ReasonInternal, "internal error", nil)
}

// Reason returns the ErrorInfo reason of err, or "" when it has none.
func Reason(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

// IsStatus reports whether err already is a gRPC status error.
func IsStatus(err error) bool {
	var se interface{ GRPCStatus() *status.Status }
	return errors.As(err, &se)
}
