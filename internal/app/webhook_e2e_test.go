package app

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/millrace/millrace/internal/webhooks/verify"
)

// TestWebhookEndToEnd subscribes a receiver through REST, changes a
// customer through REST, and checks the receiver gets a signed CloudEvent
// that carries the request's correlation id.
func TestWebhookEndToEnd(t *testing.T) {
	inst := startTestNode(t, "--allow-private-webhooks")
	base := "http://" + inst.HTTPAddr

	type got struct {
		header http.Header
		body   []byte
	}
	var mu sync.Mutex
	var received []got
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		received = append(received, got{r.Header.Clone(), b})
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()

	post := func(path, body string, headers map[string]string) map[string]any {
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testAdminKey)
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != 200 {
			t.Fatalf("POST %s: %d %v", path, resp.StatusCode, out)
		}
		return out
	}
	sub := post("/v1/subscriptions", `{"url":"`+recv.URL+`/hooks","eventTypes":["millrace.events.v1.Customer*"],"description":"crm sync"}`, nil)
	secret, _ := sub["secret"].(string)
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("subscription response: %v", sub)
	}
	post("/v1/customers", `{"displayName":"Hook Industries","region":"eu"}`, map[string]string{"X-Correlation-Id": "corr-webhook-1"})

	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(received)
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(received) != 1 {
		t.Fatalf("receiver got %d deliveries, want 1", len(received))
	}
	d := received[0]
	if err := verify.Verify([]string{secret}, d.header, d.body, time.Now(), 5*time.Minute); err != nil {
		t.Fatalf("signature: %v", err)
	}
	var ce map[string]any
	if err := json.Unmarshal(d.body, &ce); err != nil {
		t.Fatal(err)
	}
	if ce["type"] != "millrace.events.v1.CustomerCreated" || ce["specversion"] != "1.0" || ce["correlationid"] != "corr-webhook-1" {
		t.Fatalf("cloud event: %v", ce)
	}
	if d.header.Get("X-Correlation-Id") != "corr-webhook-1" {
		t.Fatalf("correlation header: %q", d.header.Get("X-Correlation-Id"))
	}
}
