package platform_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/edge"
	"github.com/millrace/millrace/internal/idempotency"
	"github.com/millrace/millrace/internal/platform"
	"github.com/millrace/millrace/internal/storage"
)

// fixture is a real gRPC server with the full interceptor chain serving the
// ApiKeyService, and the REST gateway dialing it over a client connection.
type fixture struct {
	conn     *grpc.ClientConn
	rest     *httptest.Server
	keys     *auth.KeyStore
	admin    string
	crm      string
	logs     *bytes.Buffer
	metrics  *platform.Metrics
	idem     *idempotency.Store
	chain    *platform.Chain
	limiterN float64
	path     string // the store file
}

func newFixture(t *testing.T, ratePerSecond float64, burst int) *fixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "integration.db")
	db, err := storage.Open(path, edge.Schema, storage.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &fixture{keys: auth.NewKeyStore(db), logs: &bytes.Buffer{}, metrics: platform.NewMetrics(), path: path}
	_, f.admin, err = f.keys.Create(context.Background(), &integrationv1.ApiKey{DisplayName: "admin", Role: auth.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	_, f.crm, err = f.keys.Create(context.Background(), &integrationv1.ApiKey{DisplayName: "crm", Role: auth.RoleCRM})
	if err != nil {
		t.Fatal(err)
	}
	f.idem = idempotency.NewStore(db, idempotency.Options{})
	log := slog.New(slog.NewJSONHandler(&syncWriter{w: f.logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.chain = &platform.Chain{
		Log:         log,
		Auth:        &platform.Authenticator{Keys: f.keys, MeshToken: "mesh-token-for-tests-0123456789"},
		Limiter:     platform.NewRateLimiter(ratePerSecond, burst),
		Validate:    true,
		Metrics:     f.metrics,
		Idempotency: &platform.Idempotency{Log: log, StoreFor: func(string) *idempotency.Store { return f.idem }},
	}
	srv, hs := platform.NewGRPCServer(f.chain, nil)
	// REST goes through the in-process channel (as in the all-in-one
	// server), gRPC clients through a network connection: the tests compare
	// the two.
	ch := platform.NewChannel(f.chain.Unary()[0], nil)
	integrationv1.RegisterApiKeyServiceServer(platform.Registrars{srv, ch}, &edge.APIKeyServer{Keys: f.keys})
	rest := ch.Handoff()
	platform.MarkServing(srv, hs)
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	f.conn, err = grpc.NewClient("passthrough:///bufnet", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.conn.Close() })
	conns := map[string]grpc.ClientConnInterface{}
	for _, d := range []string{"customer", "productpricing", "fulfillment", "order", "integration"} {
		conns[d] = rest
	}
	h, err := platform.NewGateway(context.Background(), platform.GatewayConfig{Conns: conns, Metrics: f.metrics, OpenAPI: []byte(`{"swagger":"2.0"}`), Log: log,
		Ready: func(context.Context) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	f.rest = httptest.NewServer(h)
	t.Cleanup(f.rest.Close)
	return f
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func withKey(ctx context.Context, key string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
}

type restResp struct {
	code   int
	header http.Header
	body   map[string]any
}

func (f *fixture) do(t *testing.T, method, path, key string, body string, headers map[string]string) restResp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.rest.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := restResp{code: resp.StatusCode, header: resp.Header}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out.body); err != nil {
			t.Fatalf("%s %s: body is not JSON: %q", method, path, b)
		}
	}
	return out
}

func reasonOf(body map[string]any) string {
	details, _ := body["details"].([]any)
	for _, d := range details {
		m, _ := d.(map[string]any)
		if r, ok := m["reason"].(string); ok {
			return r
		}
	}
	return ""
}

func fieldViolations(body map[string]any) []string {
	var out []string
	details, _ := body["details"].([]any)
	for _, d := range details {
		m, _ := d.(map[string]any)
		fv, _ := m["fieldViolations"].([]any)
		for _, v := range fv {
			vm, _ := v.(map[string]any)
			out = append(out, vm["field"].(string))
		}
	}
	return out
}

// TestRESTAndGRPCRefuseAlike proves the gateway goes through the same
// interceptors: the same call is refused with the same code and reason
// over both transports.
func TestRESTAndGRPCRefuseAlike(t *testing.T) {
	f := newFixture(t, 0, 1)
	client := integrationv1.NewApiKeyServiceClient(f.conn)
	tests := []struct {
		name     string
		key      string
		restBody string
		req      *integrationv1.CreateApiKeyRequest
		code     codes.Code
		http     int
		reason   string
		field    string
	}{
		{"no credentials", "", `{"displayName":"x","role":"ROLE_CRM"}`, &integrationv1.CreateApiKeyRequest{ApiKey: &integrationv1.ApiKey{DisplayName: "x", Role: auth.RoleCRM}}, codes.Unauthenticated, 401, "UNAUTHENTICATED", ""},
		{"unknown key", "mr_key_0000_nope", `{"displayName":"x","role":"ROLE_CRM"}`, &integrationv1.CreateApiKeyRequest{ApiKey: &integrationv1.ApiKey{DisplayName: "x", Role: auth.RoleCRM}}, codes.Unauthenticated, 401, "UNAUTHENTICATED", ""},
		{"wrong role", f.crm, `{"displayName":"x","role":"ROLE_CRM"}`, &integrationv1.CreateApiKeyRequest{ApiKey: &integrationv1.ApiKey{DisplayName: "x", Role: auth.RoleCRM}}, codes.PermissionDenied, 403, "PERMISSION_DENIED", ""},
		{"invalid input", f.admin, `{"displayName":"","role":"ROLE_CRM"}`, &integrationv1.CreateApiKeyRequest{ApiKey: &integrationv1.ApiKey{DisplayName: "", Role: auth.RoleCRM}}, codes.InvalidArgument, 400, "INVALID_ARGUMENT", "api_key.display_name"},
		{"service role cannot be granted", f.admin, `{"displayName":"x","role":"ROLE_SERVICE"}`, &integrationv1.CreateApiKeyRequest{ApiKey: &integrationv1.ApiKey{DisplayName: "x", Role: auth.RoleService}}, codes.InvalidArgument, 400, "INVALID_ARGUMENT", "api_key.role"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.key != "" {
				ctx = withKey(ctx, tt.key)
			}
			_, err := client.CreateApiKey(ctx, tt.req)
			st := status.Convert(err)
			if st.Code() != tt.code {
				t.Fatalf("gRPC code = %v (%s), want %v", st.Code(), st.Message(), tt.code)
			}
			var grpcReason, grpcField string
			for _, d := range st.Details() {
				switch d := d.(type) {
				case *errdetails.ErrorInfo:
					grpcReason = d.GetReason()
				case *errdetails.BadRequest:
					grpcField = d.GetFieldViolations()[0].GetField()
				}
			}
			r := f.do(t, "POST", "/v1/apiKeys", tt.key, tt.restBody, nil)
			if r.code != tt.http {
				t.Fatalf("HTTP status = %d, want %d (body %v)", r.code, tt.http, r.body)
			}
			if got := reasonOf(r.body); got != tt.reason || grpcReason != tt.reason {
				t.Fatalf("reason REST %q gRPC %q, want %q", got, grpcReason, tt.reason)
			}
			if int(r.body["code"].(float64)) != int(tt.code) {
				t.Fatalf("REST body code = %v, want %d", r.body["code"], tt.code)
			}
			if tt.field != "" {
				fv := fieldViolations(r.body)
				if len(fv) == 0 || fv[0] != tt.field || grpcField != tt.field {
					t.Fatalf("field violations REST %v gRPC %q, want %q", fv, grpcField, tt.field)
				}
			}
			if r.header.Get("X-Correlation-Id") == "" {
				t.Fatal("no X-Correlation-Id on the error response")
			}
		})
	}
	// Nothing was created by the refused calls: admin + crm only.
	if n, _ := f.keys.Count(); n != 2 {
		t.Fatalf("keys stored = %d, want 2", n)
	}
}

func TestAdminKeySucceedsAndSecretIsShownOnce(t *testing.T) {
	f := newFixture(t, 0, 1)
	r := f.do(t, "POST", "/v1/apiKeys", f.admin, `{"displayName":"salesforce-prod","role":"ROLE_CRM","region":"eu"}`, nil)
	if r.code != 200 {
		t.Fatalf("status %d: %v", r.code, r.body)
	}
	secret, _ := r.body["secret"].(string)
	key, _ := r.body["apiKey"].(map[string]any)
	if !strings.HasPrefix(secret, auth.SecretPrefix) || key["id"] == "" {
		t.Fatalf("unexpected create response %v", r.body)
	}
	got := f.do(t, "GET", "/v1/apiKeys/"+key["id"].(string), f.admin, "", nil)
	if got.code != 200 || got.body["region"] != "eu" || got.body["displayName"] != "salesforce-prod" {
		t.Fatalf("get: %d %v", got.code, got.body)
	}
	if b, _ := json.Marshal(got.body); strings.Contains(string(b), secret) || strings.Contains(strings.ToLower(string(b)), "secret") {
		t.Fatalf("a read returned the secret: %s", b)
	}
	// The new key works and carries its role and region.
	who := f.do(t, "GET", "/v1/callerIdentity", secret, "", map[string]string{"X-Correlation-Id": "corr-123"})
	if who.code != 200 || who.body["role"] != "ROLE_CRM" || who.body["region"] != "eu" || who.body["correlationId"] != "corr-123" {
		t.Fatalf("callerIdentity: %d %v", who.code, who.body)
	}
	if who.header.Get("X-Correlation-Id") != "corr-123" {
		t.Fatalf("correlation id not echoed: %q", who.header.Get("X-Correlation-Id"))
	}
	// Revoked keys stop working at once.
	if rv := f.do(t, "POST", "/v1/apiKeys/"+key["id"].(string)+":revoke", f.admin, `{}`, nil); rv.code != 200 {
		t.Fatalf("revoke: %d %v", rv.code, rv.body)
	}
	if again := f.do(t, "GET", "/v1/callerIdentity", secret, "", nil); again.code != 401 {
		t.Fatalf("revoked key still works: %d", again.code)
	}
	// Secrets never reach the logs.
	if strings.Contains(f.logs.String(), secret) || strings.Contains(f.logs.String(), f.admin) {
		t.Fatal("a secret appears in the logs")
	}
}

func TestIdempotencyKey(t *testing.T) {
	f := newFixture(t, 0, 1)
	body := `{"displayName":"erp","role":"ROLE_ERP"}`
	first := f.do(t, "POST", "/v1/apiKeys", f.admin, body, map[string]string{"Idempotency-Key": "k-1"})
	if first.code != 200 || first.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first: %d %v %v", first.code, first.body, first.header)
	}
	second := f.do(t, "POST", "/v1/apiKeys", f.admin, body, map[string]string{"Idempotency-Key": "k-1"})
	if second.code != 200 || second.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d %v", second.code, second.header)
	}
	id1 := first.body["apiKey"].(map[string]any)["id"]
	id2 := second.body["apiKey"].(map[string]any)["id"]
	if id1 != id2 || first.body["secret"] != second.body["secret"] {
		t.Fatalf("replay returned another key: %v vs %v", id1, id2)
	}
	other := f.do(t, "POST", "/v1/apiKeys", f.admin, `{"displayName":"other","role":"ROLE_ERP"}`, map[string]string{"Idempotency-Key": "k-1"})
	if other.code != 422 || reasonOf(other.body) != "IDEMPOTENCY_KEY_REUSED" {
		t.Fatalf("different request under the same key: %d %v", other.code, other.body)
	}
	bad := f.do(t, "POST", "/v1/apiKeys", f.admin, body, map[string]string{"Idempotency-Key": strings.Repeat("x", 300)})
	if bad.code != 400 || fieldViolations(bad.body)[0] != "Idempotency-Key" {
		t.Fatalf("oversized key: %d %v", bad.code, bad.body)
	}
	if n, _ := f.keys.Count(); n != 3 {
		t.Fatalf("keys = %d, want 3 (admin, crm, one erp)", n)
	}
}

func TestIdempotencyConcurrentSameKeyCreatesOnce(t *testing.T) {
	f := newFixture(t, 0, 1)
	client := integrationv1.NewApiKeyServiceClient(f.conn)
	var wg sync.WaitGroup
	var mu sync.Mutex
	codesSeen := map[codes.Code]int{}
	ids := map[string]bool{}
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+f.admin, "idempotency-key", "same")
			resp, err := client.CreateApiKey(ctx, &integrationv1.CreateApiKeyRequest{ApiKey: &integrationv1.ApiKey{DisplayName: "once", Role: auth.RoleERP}})
			mu.Lock()
			defer mu.Unlock()
			codesSeen[status.Code(err)]++
			if err == nil {
				ids[resp.GetApiKey().GetId()] = true
			}
		}()
	}
	wg.Wait()
	if len(ids) != 1 {
		t.Fatalf("distinct keys created = %d, want 1 (codes %v)", len(ids), codesSeen)
	}
	for c := range codesSeen {
		if c != codes.OK && c != codes.Aborted {
			t.Fatalf("unexpected code %v (codes %v)", c, codesSeen)
		}
	}
	if n, _ := f.keys.Count(); n != 3 {
		t.Fatalf("keys = %d, want 3", n)
	}
}

// TestKeyedCreateApiKeyKeepsNoSecretAtRest: the answer kept for an
// Idempotency-Key replay of CreateApiKey is sealed, so the store file never
// holds the new key's secret, and the replay still returns it, over gRPC
// and REST alike.
func TestKeyedCreateApiKeyKeepsNoSecretAtRest(t *testing.T) {
	f := newFixture(t, 0, 1)
	client := integrationv1.NewApiKeyServiceClient(f.conn)
	ctx := metadata.AppendToOutgoingContext(withKey(context.Background(), f.admin), "idempotency-key", "seal-1")
	req := &integrationv1.CreateApiKeyRequest{ApiKey: &integrationv1.ApiKey{DisplayName: "erp loader", Role: auth.RoleERP}}
	first, err := client.CreateApiKey(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	secret := first.GetSecret()
	if _, err := f.keys.Verify(context.Background(), secret); err != nil {
		t.Fatalf("the new secret does not verify: %v", err)
	}
	random := secret[strings.LastIndexByte(secret, '_')+1:]
	raw, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(random)) {
		t.Fatal("the store file holds the new API key's secret in the clear")
	}

	var hdr metadata.MD
	again, err := client.CreateApiKey(ctx, req, grpc.Header(&hdr))
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	if got := hdr.Get("idempotent-replayed"); len(got) != 1 || got[0] != "true" {
		t.Errorf("replay headers %v, want idempotent-replayed: true", hdr)
	}
	if again.GetSecret() != secret || again.GetApiKey().GetId() != first.GetApiKey().GetId() {
		t.Fatalf("replay answered key %s secret %q, want %s and the first secret", again.GetApiKey().GetId(), again.GetSecret(), first.GetApiKey().GetId())
	}

	r := f.do(t, "POST", "/v1/apiKeys", f.admin, `{"displayName":"erp loader","role":"ROLE_ERP"}`, map[string]string{"Idempotency-Key": "seal-2"})
	if r.code != 200 {
		t.Fatalf("REST create: %d %v", r.code, r.body)
	}
	restSecret, _ := r.body["secret"].(string)
	replayed := f.do(t, "POST", "/v1/apiKeys", f.admin, `{"displayName":"erp loader","role":"ROLE_ERP"}`, map[string]string{"Idempotency-Key": "seal-2"})
	if replayed.code != 200 || replayed.body["secret"] != restSecret || replayed.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("REST replay: %d %v %v, want the first secret", replayed.code, replayed.header, replayed.body)
	}
	if raw, _ := os.ReadFile(f.path); restSecret == "" || bytes.Contains(raw, []byte(restSecret[strings.LastIndexByte(restSecret, '_')+1:])) {
		t.Fatal("the store file holds the REST-created secret in the clear")
	}
	if n, _ := f.keys.Count(); n != 4 {
		t.Fatalf("keys = %d, want 4 (admin, crm and one per idempotency key)", n)
	}
}

func TestRateLimit(t *testing.T) {
	f := newFixture(t, 1, 1)
	if r := f.do(t, "GET", "/v1/callerIdentity", f.crm, "", nil); r.code != 200 {
		t.Fatalf("first call: %d", r.code)
	}
	r := f.do(t, "GET", "/v1/callerIdentity", f.crm, "", nil)
	if r.code != 429 || r.header.Get("Retry-After") == "" || reasonOf(r.body) != "RATE_LIMITED" {
		t.Fatalf("second call: %d %v %v", r.code, r.header, r.body)
	}
	// Another key has its own bucket.
	if r := f.do(t, "GET", "/v1/callerIdentity", f.admin, "", nil); r.code != 200 {
		t.Fatalf("other key limited: %d", r.code)
	}
	_, err := integrationv1.NewApiKeyServiceClient(f.conn).GetCallerIdentity(withKey(context.Background(), f.crm), &integrationv1.GetCallerIdentityRequest{})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("gRPC: %v", err)
	}
}

func TestPanicIsRecovered(t *testing.T) {
	f := newFixture(t, 0, 1)
	unary := f.chain.Unary()[0]
	info := &grpc.UnaryServerInfo{FullMethod: "/grpc.health.v1.Health/Check"}
	_, err := unary(context.Background(), nil, info, func(context.Context, any) (any, error) { panic("boom") })
	if status.Code(err) != codes.Internal || strings.Contains(status.Convert(err).Message(), "boom") {
		t.Fatalf("panic answered with %v", err)
	}
	if !strings.Contains(f.logs.String(), "boom") {
		t.Fatal("the panic was not logged")
	}
	// The server keeps serving.
	if r := f.do(t, "GET", "/v1/callerIdentity", f.admin, "", nil); r.code != 200 {
		t.Fatalf("after panic: %d", r.code)
	}
}

func TestPlainErrorsDoNotLeak(t *testing.T) {
	f := newFixture(t, 0, 1)
	unary := f.chain.Unary()[0]
	info := &grpc.UnaryServerInfo{FullMethod: "/grpc.health.v1.Health/Check"}
	_, err := unary(context.Background(), nil, info, func(context.Context, any) (any, error) {
		return nil, io.ErrUnexpectedEOF
	})
	if status.Code(err) != codes.Internal || strings.Contains(err.Error(), "EOF") {
		t.Fatalf("plain error answered with %v", err)
	}
}

func TestEdgeEndpoints(t *testing.T) {
	f := newFixture(t, 0, 1)
	for _, tt := range []struct {
		path string
		code int
	}{
		{"/healthz", 200},
		{"/readyz", 200},
		{"/openapi.json", 200},
	} {
		t.Run(tt.path, func(t *testing.T) {
			if r := f.do(t, "GET", tt.path, "", "", nil); r.code != tt.code || r.header.Get("X-Correlation-Id") == "" {
				t.Fatalf("%s: %d", tt.path, r.code)
			}
		})
	}
	f.do(t, "GET", "/v1/callerIdentity", f.admin, "", nil)
	resp, err := http.Get(f.rest.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `millrace_rpc_requests_total{code="OK",method="GetCallerIdentity",service="millrace.integration.v1.ApiKeyService"}`) {
		t.Fatalf("RED metrics missing:\n%s", b)
	}
	r := f.do(t, "GET", "/v1/nothingHere", f.admin, "", nil)
	if r.code != 404 || reasonOf(r.body) != "NO_SUCH_ROUTE" {
		t.Fatalf("unknown route: %d %v", r.code, r.body)
	}
	bad := f.do(t, "POST", "/v1/apiKeys", f.admin, `{"displayName":`, nil)
	if bad.code != 400 {
		t.Fatalf("malformed JSON: %d %v", bad.code, bad.body)
	}
}

func TestMeshTokenAuthenticatesAsService(t *testing.T) {
	f := newFixture(t, 0, 1)
	client := integrationv1.NewApiKeyServiceClient(f.conn)
	ctx := withKey(context.Background(), "mesh-token-for-tests-0123456789")
	resp, err := client.VerifyApiKey(ctx, &integrationv1.VerifyApiKeyRequest{Secret: f.crm})
	if err != nil || resp.GetApiKey().GetRole() != auth.RoleCRM {
		t.Fatalf("verify: %v %v", resp, err)
	}
	// A CRM key may not verify keys, and the mesh identity may not manage them.
	if _, err := client.VerifyApiKey(withKey(context.Background(), f.crm), &integrationv1.VerifyApiKeyRequest{Secret: f.crm}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("crm verify: %v", err)
	}
	if _, err := client.ListApiKeys(ctx, &integrationv1.ListApiKeysRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("mesh list keys: %v", err)
	}
	_ = time.Second
}

// TestChannelDoesNotForwardCallerCredentials: a handler that calls another
// service through the in-process channel must not pass on its caller's
// metadata, exactly as across a network.
func TestChannelDoesNotForwardCallerCredentials(t *testing.T) {
	f := newFixture(t, 0, 1)
	ch := platform.NewChannel(f.chain.Unary()[0], nil)
	var seen metadata.MD
	inner := &edge.APIKeyServer{Keys: f.keys}
	integrationv1.RegisterApiKeyServiceServer(ch, inner)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+f.crm, "x-correlation-id", "outer")
	client := integrationv1.NewApiKeyServiceClient(ch)
	var hdr metadata.MD
	resp, err := client.GetCallerIdentity(ctx, &integrationv1.GetCallerIdentityRequest{}, grpc.Header(&hdr))
	if err != nil || resp.GetRole() != auth.RoleCRM || resp.GetCorrelationId() != "outer" {
		t.Fatalf("identity %v %v", resp, err)
	}
	if hdr.Get("x-correlation-id")[0] != "outer" {
		t.Fatalf("response header %v", hdr)
	}
	// Inside a handler: outgoing metadata starts empty.
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		seen, _ = metadata.FromOutgoingContext(ctx)
		return h(ctx, req)
	}
	probe := platform.NewChannel(unary, nil)
	integrationv1.RegisterApiKeyServiceServer(probe, inner)
	_, _ = integrationv1.NewApiKeyServiceClient(probe).GetCallerIdentity(ctx, &integrationv1.GetCallerIdentityRequest{})
	if len(seen) != 0 {
		t.Fatalf("handler context carries the caller's outgoing metadata: %v", seen)
	}
}

// keeper is an ApiKeyService whose VerifyApiKey keeps the request it got
// and answers with a message it keeps too, then changes both: what a
// handler may do with its own messages.
type keeper struct {
	integrationv1.UnimplementedApiKeyServiceServer
	got    *integrationv1.VerifyApiKeyRequest
	answer *integrationv1.VerifyApiKeyResponse
}

func (k *keeper) VerifyApiKey(_ context.Context, req *integrationv1.VerifyApiKeyRequest) (*integrationv1.VerifyApiKeyResponse, error) {
	k.got = req
	k.answer = &integrationv1.VerifyApiKeyResponse{ApiKey: &integrationv1.ApiKey{Id: "key_1", DisplayName: "erp"}}
	return k.answer, nil
}

// TestChannelCopiesUnlessHandedOff: through the channel, caller and handler
// each own their messages, as across a network; through its Handoff view
// (the REST gateway's) the request and the answer move without a copy.
func TestChannelCopiesUnlessHandedOff(t *testing.T) {
	pass := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return h(ctx, req)
	}
	k := &keeper{}
	ch := platform.NewChannel(pass, nil)
	integrationv1.RegisterApiKeyServiceServer(ch, k)
	ctx := context.Background()

	req := &integrationv1.VerifyApiKeyRequest{Secret: "mr_key_1_abc"}
	resp, err := integrationv1.NewApiKeyServiceClient(ch).VerifyApiKey(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if k.got == req || k.got.GetSecret() != req.GetSecret() {
		t.Fatalf("the handler got %p %v, want a copy of %p", k.got, k.got, req)
	}
	if resp.GetApiKey() == k.answer.GetApiKey() || resp.GetApiKey().GetDisplayName() != "erp" {
		t.Fatal("the caller's answer shares the handler's sub-message")
	}
	k.answer.ApiKey.DisplayName = "changed by the handler"
	k.got.Secret = "changed by the handler"
	if resp.GetApiKey().GetDisplayName() != "erp" || req.GetSecret() != "mr_key_1_abc" {
		t.Fatal("a change on one side reached the other")
	}

	req = &integrationv1.VerifyApiKeyRequest{Secret: "mr_key_1_def"}
	resp, err = integrationv1.NewApiKeyServiceClient(ch.Handoff()).VerifyApiKey(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if k.got.GetSecret() != "mr_key_1_def" || resp.GetApiKey().GetDisplayName() != "erp" {
		t.Fatalf("handed off: handler got %v, caller got %v", k.got, resp)
	}
	if resp.GetApiKey() != k.answer.GetApiKey() {
		t.Fatal("the handed-off answer was copied, not moved")
	}
	if !proto.Equal(resp, k.answer) {
		t.Fatalf("handed-off answer %v, want %v", resp, k.answer)
	}
}

// TestServerRefusesStringsThatAreNotUTF8: Millrace's clients write with
// the generated marshaller, which does not check UTF-8; the server's
// decoder does, so such a request never reaches a handler.
func TestServerRefusesStringsThatAreNotUTF8(t *testing.T) {
	f := newFixture(t, 0, 1)
	client := integrationv1.NewApiKeyServiceClient(f.conn)
	_, err := client.VerifyApiKey(withKey(context.Background(), f.admin), &integrationv1.VerifyApiKeyRequest{Secret: "mr_\xff\xfe"})
	if err == nil || !strings.Contains(status.Convert(err).Message(), "UTF-8") {
		t.Fatalf("a secret that is not UTF-8 gave %v, want the server to refuse it", err)
	}
	if _, err := client.ListApiKeys(withKey(context.Background(), f.admin), &integrationv1.ListApiKeysRequest{}); err != nil {
		t.Fatalf("a valid request after it: %v", err)
	}
}

// TestUnavailablePeerIs503: a REST call whose service cannot be reached is
// answered 503 with a reason, never a bare 500.
func TestUnavailablePeerIs503(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there any more
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conns := map[string]grpc.ClientConnInterface{}
	for _, d := range []string{"customer", "productpricing", "fulfillment", "order", "integration"} {
		conns[d] = conn
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	h, err := platform.NewGateway(context.Background(), platform.GatewayConfig{Conns: conns, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/v1/customers/cus_1", nil)
	req.Header.Set("Authorization", "Bearer whatever")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != 503 || reasonOf(body) != "PEER_UNAVAILABLE" {
		t.Fatalf("status %d body %v", resp.StatusCode, body)
	}
}
