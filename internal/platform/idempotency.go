package platform

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/millrace/millrace/internal/apierr"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/idempotency"
	"github.com/millrace/millrace/internal/reqctx"
)

// MaxIdempotencyKeyLen bounds the Idempotency-Key header.
const MaxIdempotencyKeyLen = 255

// Idempotency applies the Idempotency-Key semantics to every create and
// custom method: the first response is stored and replayed (with
// idempotent-replayed: true); the same key with a different request is
// refused (HTTP 422); the same key while the first call still runs is
// ABORTED (HTTP 409). Keys are scoped to the API key and method.
type Idempotency struct {
	// StoreFor returns the store of the service that owns a method, so the
	// record lives in the same file as the state it protects.
	StoreFor func(fullMethod string) *idempotency.Store
	Log      *slog.Logger
}

// readOnly methods need no idempotency: repeating them changes nothing.
var readOnlyPrefixes = []string{"Get", "List", "Watch", "Verify", "Check", "Simulate", "Convert", "Backup"}

// IsReadOnly reports whether a method only reads.
func IsReadOnly(fullMethod string) bool {
	name := methodName(fullMethod)
	for _, p := range readOnlyPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// Handle runs handler under the idempotency key of the call, if any.
func (i *Idempotency) Handle(ctx context.Context, p auth.Principal, fullMethod string, req any, handler grpc.UnaryHandler) (any, error) {
	key := incomingMD(ctx, MDIdempotencyKey)
	if key == "" || IsReadOnly(fullMethod) {
		return handler(ctx, req)
	}
	if len(key) > MaxIdempotencyKeyLen || !printableASCII(key) {
		return nil, apierr.Invalid("Idempotency-Key", fmt.Sprintf("must be 1 to %d printable ASCII characters", MaxIdempotencyKeyLen))
	}
	store := i.StoreFor(fullMethod)
	msg, ok := req.(proto.Message)
	if store == nil || !ok {
		return handler(ctx, req)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("hash request: %w", err)
	}
	sum := sha256.Sum256(append([]byte(fullMethod+"\x00"), b...))
	scope := p.KeyID + "|" + fullMethod
	out, err := store.Begin(scope, key, sum[:])
	if err != nil {
		if errors.Is(err, idempotency.ErrInvalidKey) {
			return nil, apierr.Invalid("Idempotency-Key", err.Error())
		}
		return nil, err
	}
	switch o := out.(type) {
	case idempotency.Mismatch:
		return nil, apierr.New(codes.InvalidArgument, apierr.ReasonIdempotencyMismatch,
			"this Idempotency-Key was already used with a different request; use a new key for a new request",
			map[string]string{"idempotency_key": key})
	case idempotency.InFlight:
		wait := retryAfterSeconds(time.Until(o.Until))
		_ = grpc.SetHeader(ctx, metadata.Pairs(MDRetryAfter, fmt.Sprint(min(wait, 5))))
		return nil, apierr.New(codes.Aborted, apierr.ReasonIdempotencyInFlight,
			"a request with this Idempotency-Key is still running; retry shortly to get its result",
			map[string]string{"idempotency_key": key})
	case idempotency.Replay:
		_ = grpc.SetHeader(ctx, metadata.Pairs(MDIdempotentReplayed, "true"))
		return replay(fullMethod, o.Record, callerBearer(ctx), scope, key)
	case idempotency.Started:
		// This call owns the key. The handler learns the claim too, so that
		// it can attach what it creates (see reqctx.Idempotency).
		ctx = reqctx.WithIdempotency(ctx, reqctx.Idempotency{Scope: scope, Key: key, Created: o.Resource})
	}
	resp, herr := handler(ctx, req)
	if herr != nil && retryable(status.Code(herr)) {
		if err := store.Abandon(scope, key); err != nil {
			i.Log.WarnContext(ctx, "could not release idempotency key", "method", fullMethod, "err", err)
		}
		return resp, herr
	}
	rec, err := record(resp, herr, callerBearer(ctx), scope, key)
	if err == nil {
		err = store.Complete(scope, key, rec)
	}
	if err != nil {
		i.Log.ErrorContext(ctx, "could not store idempotent response", "method", fullMethod, "err", err)
	}
	return resp, herr
}

// retryable codes leave the key free: the client is expected to try again
// and the outcome was not final.
func retryable(c codes.Code) bool {
	switch c {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.ResourceExhausted, codes.Internal, codes.Unknown:
		return true
	}
	return false
}

// callerBearer is the caller's bearer secret, or "" without one.
func callerBearer(ctx context.Context) string {
	secret, err := bearer(incomingMD(ctx, MDAuthorization))
	if err != nil {
		return ""
	}
	return secret
}

// record turns the handler's outcome into the record kept for replays. An
// answer holding a secret is kept sealed for the caller (see keepAnswer).
func record(resp any, herr error, bearer, scope, key string) (idempotency.Record, error) {
	if herr != nil {
		st := status.Convert(herr)
		rec := idempotency.Record{Code: uint32(st.Code()), Message: st.Message()}
		for _, d := range st.Proto().GetDetails() {
			b, err := proto.Marshal(d)
			if err != nil {
				return rec, err
			}
			rec.Details = append(rec.Details, b)
		}
		return rec, nil
	}
	msg, ok := resp.(proto.Message)
	if !ok {
		return idempotency.Record{}, fmt.Errorf("response is %T, not a proto message", resp)
	}
	b, err := keepAnswer(msg, bearer, scope, key)
	return idempotency.Record{Code: uint32(codes.OK), Response: b}, err
}

// replay rebuilds the first call's outcome from its record; a sealed answer
// is opened with the replaying caller's bearer secret.
func replay(fullMethod string, rec idempotency.Record, bearer, scope, key string) (any, error) {
	if codes.Code(rec.Code) != codes.OK {
		sp := &spb.Status{Code: int32(rec.Code), Message: rec.Message}
		for _, d := range rec.Details {
			a := &anypb.Any{}
			if err := proto.Unmarshal(d, a); err != nil {
				return nil, err
			}
			sp.Details = append(sp.Details, a)
		}
		return nil, status.FromProto(sp).Err()
	}
	mt, err := outputType(fullMethod)
	if err != nil {
		return nil, err
	}
	answer := rec.Response
	if isSealedAnswer(answer) {
		if answer, err = openAnswer(bearer, scope, key, answer); err != nil {
			return nil, apierr.New(codes.FailedPrecondition, apierr.ReasonIdempotencySealed, err.Error(), map[string]string{"idempotency_key": key})
		}
	}
	msg := mt.New().Interface()
	if err := proto.Unmarshal(answer, msg); err != nil {
		return nil, fmt.Errorf("decode stored response: %w", err)
	}
	return msg, nil
}

// outputType finds the response type of a method in the registry of
// compiled-in descriptors.
func outputType(fullMethod string) (protoreflect.MessageType, error) {
	s := strings.TrimPrefix(fullMethod, "/")
	svc, method, ok := strings.Cut(s, "/")
	if !ok {
		return nil, fmt.Errorf("malformed method %q", fullMethod)
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return nil, err
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is not a service", svc)
	}
	md := sd.Methods().ByName(protoreflect.Name(method))
	if md == nil {
		return nil, fmt.Errorf("no method %s", fullMethod)
	}
	return protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
