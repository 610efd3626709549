package app

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"testing"
)

// TestDemoLoad starts a node with --demo and checks what a newcomer sees:
// the demo data set, orders in several states (one held for credit), and a
// load that no call of it refused.
func TestDemoLoad(t *testing.T) {
	inst := startTestNode(t, "--demo", "--rate-limit", "0")
	base := "http://" + inst.HTTPAddr

	get := func(path string) []byte {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("Authorization", "Bearer "+inst.AdminKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return b
	}

	var orders struct {
		Orders []struct {
			Status     string `json:"status"`
			HoldReason string `json:"holdReason"`
		} `json:"orders"`
	}
	if err := json.Unmarshal(get("/v1/orders?pageSize=50"), &orders); err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, o := range orders.Orders {
		states = append(states, o.Status+" "+o.HoldReason)
	}
	if !slices.Contains(states, "ORDER_STATUS_ACCEPTED ") || !slices.Contains(states, "ORDER_STATUS_ON_HOLD HOLD_REASON_CREDIT_DECLINED") {
		t.Errorf("demo orders %v, want accepted ones and one held for credit", states)
	}
	var quotes struct {
		Quotes []struct {
			Status string `json:"status"`
		} `json:"quotes"`
	}
	if err := json.Unmarshal(get("/v1/quotes?pageSize=50"), &quotes); err != nil {
		t.Fatal(err)
	}
	if len(quotes.Quotes) < 3 {
		t.Errorf("%d demo quotes, want at least 3 (draft, approved, converted)", len(quotes.Quotes))
	}

	// Every call of the load went through: no InvalidArgument or worse.
	metrics := get("/metrics")
	refused := regexp.MustCompile(`(?m)^millrace_rpc_requests_total\{code="(\w+)",method="([^"]+)"`)
	for _, m := range refused.FindAllSubmatch(metrics, -1) {
		if code := string(m[1]); code != "OK" {
			t.Errorf("the demo load had %s answers from %s", code, m[2])
		}
	}

	// The order KPIs count the demo's held order, as the API lists it.
	heldDeclined := 0
	for _, s := range states {
		if s == "ORDER_STATUS_ON_HOLD HOLD_REASON_CREDIT_DECLINED" {
			heldDeclined++
		}
	}
	var byReason struct {
		Orders []struct {
			HoldReason string `json:"holdReason"`
		} `json:"orders"`
	}
	if err := json.Unmarshal(get("/v1/orders?holdReason=HOLD_REASON_CREDIT_DECLINED"), &byReason); err != nil {
		t.Fatal(err)
	}
	if len(byReason.Orders) != heldDeclined {
		t.Errorf("?holdReason=HOLD_REASON_CREDIT_DECLINED lists %d orders, want %d", len(byReason.Orders), heldDeclined)
	}
	if m := regexp.MustCompile(`(?m)^millrace_orders_held\{hold_reason="credit_declined"\} (\d+)$`).FindSubmatch(metrics); m == nil || string(m[1]) != strconv.Itoa(heldDeclined) {
		t.Errorf("/metrics millrace_orders_held for credit_declined: %q, want %d", m, heldDeclined)
	}
	if !regexp.MustCompile(`(?m)^millrace_order_status_changes_total\{from="pending",hold_reason="none",to="accepted"\} [1-9]`).Match(metrics) {
		t.Error("/metrics counts no order accepted")
	}

	// The load's writes show in every domain store's write metrics.
	for _, store := range []string{"customer", "productpricing", "fulfillment", "order"} {
		for _, series := range []string{
			`millrace_store_writes_total{store="` + store + `"}`,
			`millrace_store_commits_total{store="` + store + `"}`,
			`millrace_store_commit_seconds_count{store="` + store + `"}`,
			`millrace_store_write_seconds_count{store="` + store + `"}`,
		} {
			m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\d+)$`).FindSubmatch(metrics)
			if m == nil || string(m[1]) == "0" {
				t.Errorf("/metrics has no writes in %s (line %q)", series, m)
			}
		}
	}
}
