package platform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	"github.com/millrace/millrace/internal/apierr"
	"github.com/millrace/millrace/internal/reqctx"
)

// MaxBodyBytes bounds a REST request body.
const MaxBodyBytes = 8 << 20

// GatewayConfig says where the REST edge sends each domain's calls and what
// it serves besides the API.
type GatewayConfig struct {
	// Conns maps a domain ("customer", "productpricing", "fulfillment",
	// "order", "integration") to the gRPC connection serving it. In the
	// all-in-one server every domain maps to the same local connection.
	Conns   map[string]grpc.ClientConnInterface
	Metrics *Metrics
	OpenAPI []byte
	// Ready reports whether every store is open and every service serving.
	Ready func(ctx context.Context) error
	Log   *slog.Logger
	// Extra routes (the console) mounted beside the API.
	Extra map[string]http.Handler
}

// NewGateway returns the HTTP handler of the REST edge: the grpc-gateway
// mux registered over gRPC client connections (never the handlers
// directly, so auth, validation, rate limits and idempotency apply to REST
// exactly as to gRPC), plus /healthz, /readyz, /metrics and /openapi.json.
// A connection is a network connection in a mesh, or the in-process
// Channel, which runs the same interceptor chain, in the all-in-one server.
func NewGateway(ctx context.Context, cfg GatewayConfig) (http.Handler, error) {
	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.HTTPBodyMarshaler{
			Marshaler: newFastJSON(&runtime.JSONPb{
				MarshalOptions:   protojson.MarshalOptions{EmitUnpopulated: false, UseProtoNames: false},
				UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
			}),
		}),
		runtime.WithIncomingHeaderMatcher(incomingHeader),
		runtime.WithOutgoingHeaderMatcher(outgoingHeader),
		runtime.WithErrorHandler(errorHandler(cfg.Log)),
		runtime.WithRoutingErrorHandler(routingErrorHandler(cfg.Log)),
		runtime.WithDisablePathLengthFallback(),
		runtime.SetQueryParameterParser(&strictQuery{}),
	)
	type reg struct {
		domain string
		fn     func(context.Context, *runtime.ServeMux, grpc.ClientConnInterface) error
	}
	for _, r := range []reg{
		{"customer", func(ctx context.Context, m *runtime.ServeMux, c grpc.ClientConnInterface) error {
			return customerv1.RegisterCustomerServiceHandlerClient(ctx, m, customerv1.NewCustomerServiceClient(c))
		}},
		{"productpricing", func(ctx context.Context, m *runtime.ServeMux, c grpc.ClientConnInterface) error {
			return productpricingv1.RegisterProductPricingServiceHandlerClient(ctx, m, productpricingv1.NewProductPricingServiceClient(c))
		}},
		{"fulfillment", func(ctx context.Context, m *runtime.ServeMux, c grpc.ClientConnInterface) error {
			return fulfillmentv1.RegisterFulfillmentServiceHandlerClient(ctx, m, fulfillmentv1.NewFulfillmentServiceClient(c))
		}},
		{"order", func(ctx context.Context, m *runtime.ServeMux, c grpc.ClientConnInterface) error {
			return orderv1.RegisterOrderServiceHandlerClient(ctx, m, orderv1.NewOrderServiceClient(c))
		}},
		{"integration", func(ctx context.Context, m *runtime.ServeMux, c grpc.ClientConnInterface) error {
			return integrationv1.RegisterApiKeyServiceHandlerClient(ctx, m, integrationv1.NewApiKeyServiceClient(c))
		}},
		{"integration", func(ctx context.Context, m *runtime.ServeMux, c grpc.ClientConnInterface) error {
			return integrationv1.RegisterSubscriptionServiceHandlerClient(ctx, m, integrationv1.NewSubscriptionServiceClient(c))
		}},
		{"integration", func(ctx context.Context, m *runtime.ServeMux, c grpc.ClientConnInterface) error {
			return integrationv1.RegisterEventServiceHandlerClient(ctx, m, integrationv1.NewEventServiceClient(c))
		}},
		{"integration", func(ctx context.Context, m *runtime.ServeMux, c grpc.ClientConnInterface) error {
			return integrationv1.RegisterOperationsServiceHandlerClient(ctx, m, integrationv1.NewOperationsServiceClient(c))
		}},
	} {
		conn := cfg.Conns[r.domain]
		if conn == nil {
			return nil, fmt.Errorf("gateway: no connection for the %s service", r.domain)
		}
		if err := r.fn(ctx, mux, conn); err != nil {
			return nil, fmt.Errorf("gateway: register %s: %w", r.domain, err)
		}
	}

	root := http.NewServeMux()
	root.Handle("/v1/", mux)
	root.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	root.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if cfg.Ready != nil {
			if err := cfg.Ready(r.Context()); err != nil {
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	if cfg.Metrics != nil {
		root.Handle("GET /metrics", MetricsHandler(cfg.Metrics))
	}
	if cfg.OpenAPI != nil {
		root.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(cfg.OpenAPI)
		})
	}
	for pattern, h := range cfg.Extra {
		root.Handle(pattern, h)
	}
	return edgeMiddleware(root, cfg.Log), nil
}

// edgeMiddleware gives every HTTP response a correlation id (the caller's
// when well formed), bounds the request body, and turns a panic into a
// 500 without taking the server down.
func edgeMiddleware(next http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Correlation-Id")
		if !reqctx.ValidCorrelationID(id) {
			id = reqctx.NewCorrelationID()
			r.Header.Set("X-Correlation-Id", id)
		}
		w.Header().Set("X-Correlation-Id", id)
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.Error("panic in HTTP handler", "path", r.URL.Path, "panic", fmt.Sprint(v), "correlation_id", id)
				writeStatus(w, http.StatusInternalServerError, status.New(codes.Internal, "internal error"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// incomingHeader forwards the headers Millrace reads as gRPC metadata.
func incomingHeader(key string) (string, bool) {
	switch textproto.CanonicalMIMEHeaderKey(key) {
	case "Idempotency-Key":
		return MDIdempotencyKey, true
	case "X-Correlation-Id":
		return MDCorrelationID, true
	case "Traceparent":
		return MDTraceparent, true
	case "Authorization":
		return MDAuthorization, true
	}
	return runtime.DefaultHeaderMatcher(key)
}

// outgoingHeader turns the gRPC response headers Millrace sets into HTTP
// headers; the correlation id is already set by the middleware.
func outgoingHeader(key string) (string, bool) {
	switch key {
	case MDIdempotentReplayed:
		return "Idempotent-Replayed", true
	case MDRetryAfter:
		return "Retry-After", true
	case "deprecation":
		return "Deprecation", true
	case "sunset":
		return "Sunset", true
	}
	return "", false
}

// HTTPStatus maps a gRPC status to the HTTP status Millrace documents. It
// differs from the gateway's default in one place: a reused idempotency key
// is 422 (Unprocessable Entity).
func HTTPStatus(st *status.Status) int {
	switch apierr.Reason(st.Err()) {
	case apierr.ReasonIdempotencyMismatch:
		return http.StatusUnprocessableEntity
	case apierr.ReasonUnavailable:
		return http.StatusServiceUnavailable
	}
	switch st.Code() {
	case codes.Unknown, codes.Internal, codes.DataLoss:
		return http.StatusInternalServerError
	}
	return runtime.HTTPStatusFromCode(st.Code())
}

var statusJSON = protojson.MarshalOptions{UseProtoNames: false}

func writeStatus(w http.ResponseWriter, code int, st *status.Status) {
	b, err := statusJSON.Marshal(st.Proto())
	if err != nil {
		b = []byte(`{"code":13,"message":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

func errorHandler(log *slog.Logger) runtime.ErrorHandlerFunc {
	return func(ctx context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
		st := gatewayStatus(err)
		if md, ok := runtime.ServerMetadataFromContext(ctx); ok {
			for k, vs := range md.HeaderMD {
				if h, ok := outgoingHeader(k); ok && len(vs) > 0 {
					w.Header().Set(h, vs[0])
				}
			}
		}
		if st.Code() == codes.ResourceExhausted && w.Header().Get("Retry-After") == "" {
			w.Header().Set("Retry-After", strconv.Itoa(retryDelay(st)))
		}
		code := HTTPStatus(st)
		if code >= 500 && st.Code() != codes.Unavailable {
			log.ErrorContext(ctx, "REST call failed", "path", r.URL.Path, "code", st.Code().String(), "correlation_id", w.Header().Get("X-Correlation-Id"))
		}
		writeStatus(w, code, st)
	}
}

// gatewayStatus converts a gateway-side error (a bad JSON body, a bad path
// parameter, a body too large) into an INVALID_ARGUMENT with a field name
// instead of letting it surface as a bare 500.
func gatewayStatus(err error) *status.Status {
	if st, ok := status.FromError(err); ok {
		if st.Code() == codes.InvalidArgument && apierr.Reason(err) == "" {
			// Raised by the gateway itself while decoding: a query or path
			// parameter it could not read, named as the field, or a body.
			field, desc := gatewayField(st.Message())
			return status.Convert(apierr.Invalid(field, desc))
		}
		if st.Code() == codes.Unavailable && apierr.Reason(err) == "" {
			return status.Convert(apierr.Unavailable("the service", err))
		}
		return st
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return status.Convert(apierr.Invalid("body", fmt.Sprintf("the request body exceeds %d bytes", MaxBodyBytes)))
	}
	return status.Convert(apierr.Invalid("body", err.Error()))
}

// gatewayField splits a decoding error of the gateway into the field it
// concerns and what was wrong: a query parameter ("parsing field
// \"created_after\": parsing time ..."), a path parameter ("type mismatch,
// parameter: id, error: ..." or "missing parameter id"), or else the body.
func gatewayField(msg string) (field, description string) {
	if rest, ok := strings.CutPrefix(msg, `parsing field "`); ok {
		if name, desc, ok := strings.Cut(rest, `": `); ok && name != "" {
			return name, desc
		}
	}
	if rest, ok := strings.CutPrefix(msg, "type mismatch, parameter: "); ok {
		if name, desc, ok := strings.Cut(rest, ", error: "); ok && name != "" {
			return name, desc
		}
	}
	if name, ok := strings.CutPrefix(msg, "missing parameter "); ok && name != "" && !strings.Contains(name, " ") {
		return name, "is required in the path"
	}
	return "body", msg
}

func retryDelay(st *status.Status) int {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return retryAfterSeconds(ri.GetRetryDelay().AsDuration())
		}
	}
	return 1
}

func routingErrorHandler(log *slog.Logger) runtime.RoutingErrorHandlerFunc {
	return func(ctx context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
		switch httpStatus {
		case http.StatusMethodNotAllowed:
			writeStatus(w, httpStatus, status.Convert(apierr.New(codes.Unimplemented, "METHOD_NOT_ALLOWED",
				fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path), nil)))
		default:
			writeStatus(w, http.StatusNotFound, status.Convert(apierr.New(codes.NotFound, "NO_SUCH_ROUTE",
				fmt.Sprintf("no API route %s %s; see /openapi.json", r.Method, r.URL.Path), nil)))
		}
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Shutdown timeouts shared by the binary.
const (
	ShutdownGrace = 4 * time.Second
)
