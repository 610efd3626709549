package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/millrace/millrace/internal/auth"
)

const testAdminKey = "mr_test_admin_key_0123456789abcdef"

func startTestNode(t *testing.T, extra ...string) *Instance {
	t.Helper()
	args := append([]string{"--data-dir", t.TempDir(), "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "error"}, extra...)
	inst, err := Start(context.Background(), args, map[string]string{"MILLRACE_ADMIN_KEY": testAdminKey}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := inst.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return inst
}

// TestEveryMethodHasAPermission walks every method registered on the
// all-in-one server and fails for one missing from the permission table.
func TestEveryMethodHasAPermission(t *testing.T) {
	cfg, _, err := parseServe([]string{"--data-dir", t.TempDir()}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	n, err := newNode(cfg, newLogger("error", io.Discard), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer n.closeStores()
	count := 0
	for svc, info := range n.grpc.GetServiceInfo() {
		for _, m := range info.Methods {
			full := "/" + svc + "/" + m.Name
			count++
			p, ok := auth.Lookup(full)
			if !ok {
				t.Errorf("%s has no permission in auth.Permissions", full)
				continue
			}
			if !p.Public && p.Name == "" {
				t.Errorf("%s has a permission without a name", full)
			}
		}
	}
	for _, want := range []string{"millrace.customer.v1.CustomerService", "millrace.productpricing.v1.ProductPricingService",
		"millrace.fulfillment.v1.FulfillmentService", "millrace.order.v1.OrderService", "grpc.health.v1.Health"} {
		if _, ok := n.grpc.GetServiceInfo()[want]; !ok {
			t.Errorf("%s is not registered", want)
		}
	}
	if count < 80 {
		t.Fatalf("only %d methods registered", count)
	}
}

func TestServeAnswersOverRESTAndGRPC(t *testing.T) {
	inst := startTestNode(t)
	base := "http://" + inst.HTTPAddr

	resp, err := http.Get(base + "/v1/customers")
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 401 || body["code"] != float64(16) {
		t.Fatalf("no key: %d %v", resp.StatusCode, body)
	}

	req, _ := http.NewRequest("GET", base+"/v1/customers", nil)
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("admin key: %d", resp.StatusCode)
	}

	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/openapi.json"} {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", p, resp.StatusCode)
		}
		if p == "/openapi.json" && !bytes.Contains(b, []byte(`"/v1/customers"`)) {
			t.Fatalf("openapi.json does not document /v1/customers")
		}
	}

	conn, err := grpc.NewClient(inst.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, svc := range []string{"", "millrace.customer.v1.CustomerService", "millrace.order.v1.OrderService"} {
		hr, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q: %v %v", svc, hr, err)
		}
	}
}

func TestConfigurationMistakesExitWithCode2(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown flag", []string{"serve", "--nope"}, nil, "flag provided but not defined"},
		{"bad service", []string{"serve", "--service", "billing", "--data-dir", t.TempDir()}, nil, "invalid --service"},
		{"data dir is a file", []string{"serve", "--data-dir", file}, nil, "data dir"},
		{"bad env value", []string{"serve", "--data-dir", t.TempDir()}, map[string]string{"MILLRACE_RATE_LIMIT": "lots"}, "MILLRACE_RATE_LIMIT"},
		{"mesh without token", []string{"serve", "--service", "customer", "--data-dir", t.TempDir()}, nil, "mesh token"},
		{"unknown command", []string{"frobnicate"}, nil, "unknown command"},
		{"unknown failpoint", []string{"serve", "--data-dir", t.TempDir()}, map[string]string{"MILLRACE_FAILPOINT": "order.ship"}, "MILLRACE_FAILPOINT"},
		{"failpoint of a service not run", []string{"serve", "--service", "customer", "--data-dir", t.TempDir(), "--edge-addr", "127.0.0.1:1"},
			map[string]string{"MILLRACE_FAILPOINT": "order.reserve", "MILLRACE_MESH_TOKEN": "mesh-token-0123456789"}, "order service"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			err := Run(context.Background(), tt.args, func(k string) string { return tt.env[k] }, io.Discard, io.Discard)
			code := ExitCode(err, &stderr)
			if code != 2 {
				t.Fatalf("exit code %d (err %v), want 2", code, err)
			}
			out := stderr.String()
			if strings.Count(out, "\n") != 1 || !strings.Contains(out, tt.want) || strings.Contains(out, "goroutine") {
				t.Fatalf("stderr %q, want one line mentioning %q", out, tt.want)
			}
		})
	}
}

func TestConfigPrintMasksSecrets(t *testing.T) {
	dir := t.TempDir()
	_, specs, err := parseServe([]string{"--data-dir", dir}, func(k string) string {
		return map[string]string{"MILLRACE_ADMIN_KEY": "mr_supersecret_value_123456789", "MILLRACE_MESH_TOKEN": "mesh-secret-token-1234567890"}[k]
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	printConfig(&out, specs)
	if strings.Contains(out.String(), "supersecret") || strings.Contains(out.String(), "mesh-secret") {
		t.Fatalf("secret printed:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "--data-dir") {
		t.Fatalf("config not printed:\n%s", out.String())
	}
}
