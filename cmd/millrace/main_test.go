package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/millrace/millrace/internal/storage"
)

var binary string

// TestMain builds the real binary once; these tests run it as separate
// processes, as an operator would.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "millrace-bin-*")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "millrace")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build millrace: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const adminKey = "mr_process_test_admin_key_0123456789"

// handedOut holds the addresses freeAddr gave, so that it never gives one
// twice: a port closed after the probe may come back from the next probe,
// and two processes of one mesh would then race for it.
var handedOut = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

func freeAddr(t *testing.T) string {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		if !handedOut.addrs[addr] {
			handedOut.addrs[addr] = true
			return addr
		}
	}
	t.Fatal("no free port that was not handed out before")
	return ""
}

type proc struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	done   chan error
	waited error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	p := &proc{cmd: cmd, out: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("output of %v:\n%s", args, p.out.String())
		}
	})
	return p
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never became ready", url)
}

func call(t *testing.T, method, url, key, body string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestMeshOfProcesses runs the four services and the edge as five
// processes on loopback; REST calls go edge → service over gRPC and keys
// are verified by the edge for every service.
func TestMeshOfProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five processes")
	}
	root := t.TempDir()
	names := []string{"edge", "customer", "productpricing", "fulfillment", "order"}
	grpcAddr, httpAddr := map[string]string{}, map[string]string{}
	for _, n := range names {
		grpcAddr[n], httpAddr[n] = freeAddr(t), freeAddr(t)
	}
	env := []string{"MILLRACE_MESH_TOKEN=mesh-token-for-process-tests-0123", "MILLRACE_ADMIN_KEY=" + adminKey}
	peers := func() []string {
		var out []string
		for _, n := range names {
			out = append(out, "--"+n+"-addr", grpcAddr[n])
		}
		return out
	}()
	for _, n := range names {
		args := append([]string{"serve", "--service", n, "--data-dir", filepath.Join(root, n),
			"--grpc-addr", grpcAddr[n], "--http-addr", httpAddr[n], "--log-level", "warn"}, peers...)
		start(t, env, args...)
	}
	for _, n := range names {
		waitHTTP(t, "http://"+httpAddr[n]+"/healthz")
	}
	waitHTTP(t, "http://"+httpAddr["edge"]+"/readyz")
	edge := "http://" + httpAddr["edge"]

	if code, _ := call(t, "GET", edge+"/v1/customers", "", ""); code != 401 {
		t.Fatalf("no key through the mesh: %d", code)
	}
	code, created := call(t, "POST", edge+"/v1/customers", adminKey, `{"displayName":"Mesh Works","region":"eu","currencyCode":"EUR"}`)
	if code != 200 {
		t.Fatalf("create customer through the edge: %d %v", code, created)
	}
	id, _ := created["id"].(string)
	if code, got := call(t, "GET", edge+"/v1/customers/"+id, adminKey, ""); code != 200 || got["displayName"] != "Mesh Works" {
		t.Fatalf("get customer through the edge: %d %v", code, got)
	}
	// A key created at the edge works on every service of the mesh.
	code, k := call(t, "POST", edge+"/v1/apiKeys", adminKey, `{"displayName":"crm","role":"ROLE_CRM"}`)
	if code != 200 {
		t.Fatalf("create key: %d %v", code, k)
	}
	crm := k["secret"].(string)
	if code, _ := call(t, "GET", edge+"/v1/customers/"+id, crm, ""); code != 200 {
		t.Fatalf("crm key on the customer service: %d", code)
	}
	if code, _ := call(t, "POST", edge+"/v1/products", crm, `{"sku":"MESH-1","name":"x","baseUnit":"EA","status":"PRODUCT_STATUS_ACTIVE"}`); code != 403 {
		t.Fatalf("crm key writing products: %d, want 403", code)
	}
	code, p := call(t, "POST", edge+"/v1/products", adminKey, `{"sku":"MESH-1","name":"Mesh part","baseUnit":"EA","baseUnitIndivisible":true,"status":"PRODUCT_STATUS_ACTIVE"}`)
	if code != 200 {
		t.Fatalf("create product through the edge: %d %v", code, p)
	}
	// productpricing calls customer over the mesh for a simulation.
	code, sim := call(t, "POST", edge+"/v1/prices:simulate", adminKey,
		fmt.Sprintf(`{"customerId":%q,"currencyCode":"EUR","lines":[{"sku":"MESH-1","quantity":{"value":"1","unit":"EA"}}]}`, id))
	if code != 200 {
		t.Fatalf("simulate across services: %d %v", code, sim)
	}
	lines := sim["lines"].([]any)
	if lines[0].(map[string]any)["reason"] != "NO_PRICE" {
		t.Fatalf("simulate: %v", sim)
	}
}

// TestGracefulShutdown sends SIGTERM while calls are in flight: the calls
// finish, the process exits 0 within 5 seconds, and the stores are intact.
func TestGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	grpcA, httpA := freeAddr(t), freeAddr(t)
	p := start(t, []string{"MILLRACE_ADMIN_KEY=" + adminKey}, "serve", "--data-dir", dir, "--grpc-addr", grpcA, "--http-addr", httpA, "--log-level", "info")
	base := "http://" + httpA
	waitHTTP(t, base+"/readyz")

	// Batches of 1,000 customers take long enough to be in flight when the
	// signal arrives.
	var items []string
	for i := 0; i < 1000; i++ {
		items = append(items, fmt.Sprintf(`{"externalRef":{"system":"salesforce","id":"SIG-%d"},"customer":{"displayName":"Account %d","region":"eu"}}`, i, i))
	}
	body := `{"items":[` + strings.Join(items, ",") + `]}`
	var wg sync.WaitGroup
	codes := make([]int, 4)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := strings.ReplaceAll(body, "SIG-", fmt.Sprintf("SIG%d-", i))
			codes[i], _ = call(t, "POST", base+"/v1/customers:batchUpsert", adminKey, b)
		}()
	}
	time.Sleep(150 * time.Millisecond)
	sent := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, p.out.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("still running 5 s after SIGTERM")
	}
	t.Logf("exited %v after SIGTERM", time.Since(sent).Round(time.Millisecond))
	wg.Wait()
	t.Logf("in-flight calls ended with %v", codes)
	finished := 0
	for _, c := range codes {
		if c == 200 {
			finished++
		}
	}
	if finished == 0 {
		t.Errorf("no call was in flight at SIGTERM (codes %v); the test proves nothing", codes)
	}
	for i, c := range codes {
		// A call either finished (200) or was refused before it started
		// (the listener was already closed: code 0 from a dial error).
		if c != 200 && c != 0 {
			t.Errorf("in-flight call %d ended with HTTP %d", i, c)
		}
	}
	for _, f := range []string{"customer.db", "order.db", "integration.db"} {
		if err := storage.Check(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if !strings.Contains(p.out.String(), "millrace stopped") {
		t.Errorf("no clean stop logged:\n%s", p.out.String())
	}
}

// TestHotBackup backs up every store while the server runs and writes;
// each copy passes the consistency check and holds the data.
func TestHotBackup(t *testing.T) {
	dir := t.TempDir()
	grpcA, httpA := freeAddr(t), freeAddr(t)
	// No rate limit: the busy writer below shares the backup's key, and on
	// a fast machine it spends the key's whole burst before the backup asks.
	start(t, []string{"MILLRACE_ADMIN_KEY=" + adminKey}, "serve", "--data-dir", dir, "--grpc-addr", grpcA, "--http-addr", httpA, "--log-level", "warn", "--rate-limit", "0")
	base := "http://" + httpA
	waitHTTP(t, base+"/readyz")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			call(t, "POST", base+"/v1/customers", adminKey, fmt.Sprintf(`{"displayName":"Busy %d","region":"eu"}`, i))
		}
	}()
	time.Sleep(300 * time.Millisecond)
	out := filepath.Join(t.TempDir(), "backup")
	cmd := exec.Command(binary, "backup", "--data-dir", dir, "--out", out, "--grpc-addr", grpcA)
	cmd.Env = append(os.Environ(), "MILLRACE_API_KEY="+adminKey)
	b, err := cmd.CombinedOutput()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("backup: %v\n%s", err, b)
	}
	if !strings.Contains(string(b), "passed the consistency check") {
		t.Fatalf("backup output:\n%s", b)
	}
	for _, f := range []string{"customer.db", "productpricing.db", "fulfillment.db", "order.db", "integration.db"} {
		if err := storage.Check(filepath.Join(out, f)); err != nil {
			t.Errorf("copy %s: %v", f, err)
		}
	}
	// Without a key the command says what to do, in one line, exit 2.
	cmd = exec.Command(binary, "backup", "--data-dir", dir, "--out", filepath.Join(t.TempDir(), "b2"))
	cmd.Env = os.Environ()
	b, err = cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(b), "running server") {
		t.Fatalf("backup without key: %v %s", err, b)
	}
}

func TestVersionAndBadFlags(t *testing.T) {
	out, err := exec.Command(binary, "version").Output()
	if err != nil || !strings.Contains(string(out), "baseline sha256") {
		t.Fatalf("version: %v %s", err, out)
	}
	cmd := exec.Command(binary, "serve", "--data-dir", "/proc/nope/data")
	b, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 {
		t.Fatalf("unusable data dir: %v %s", err, b)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	lines := 0
	for sc.Scan() {
		lines++
	}
	if lines != 1 || !strings.Contains(string(b), "data dir") {
		t.Fatalf("want one line naming the data dir, got:\n%s", b)
	}
	_ = context.Background
}
