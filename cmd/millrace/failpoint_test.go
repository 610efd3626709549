package main

import (
	"errors"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSagaSurvivesAKillAtEachFailpoint arms MILLRACE_FAILPOINT at each
// point of the order saga in turn, so that the real process kills itself
// with SIGKILL there, mid-request: CreateOrder for the points a direct
// order passes, ConvertQuote (of an approved quote holding stock softly)
// for its price step. Started again on the same data dir without the
// failpoint, the process must finish the order by itself: the CRM's retry
// (same external reference) answers with the same order, which reaches
// ACCEPTED with exactly one stock reservation (the site's reserved quantity
// is the order's, not twice it, and no soft hold is left) and one credit
// reservation (the customer's exposure is the order's total), and its
// timeline shows one acceptance.
func TestSagaSurvivesAKillAtEachFailpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills the server a dozen times")
	}
	for _, tt := range []struct {
		failpoint string
		fromQuote bool
	}{
		{"order.reserve", false}, {"order.credit", false}, {"order.reserve.done", false}, {"order.credit.done", false}, {"order.accept", false},
		{"order.price", true}, {"order.price.done", true},
	} {
		fp := tt.failpoint
		name := fp + " in CreateOrder"
		if tt.fromQuote {
			name = fp + " in ConvertQuote"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			grpcA, httpA := freeAddr(t), freeAddr(t)
			base := "http://" + httpA
			env := []string{"MILLRACE_ADMIN_KEY=" + adminKey}
			args := []string{"serve", "--data-dir", dir, "--grpc-addr", grpcA, "--http-addr", httpA, "--rate-limit", "0", "--log-level", "warn"}

			p := start(t, append(env, "MILLRACE_FAILPOINT="+fp), args...)
			waitHTTP(t, base+"/readyz")
			buyer := rest(t, "POST", base+"/v1/customers", adminKey, `{"displayName":"Failpoint Buyer","region":"eu","currencyCode":"EUR",
				"creditLimit":{"currencyCode":"EUR","amount":"100000"}}`).must(t, "create buyer")
			buyerID := buyer["id"].(string)
			rest(t, "POST", base+"/v1/products", adminKey, `{"sku":"FP-1","name":"Failpoint part","baseUnit":"EA","baseUnitIndivisible":true,"status":"PRODUCT_STATUS_ACTIVE"}`).must(t, "create product")
			rest(t, "POST", base+"/v1/priceLists", adminKey, `{"name":"EUR list","currencyCode":"EUR","validFrom":"2025-01-01T00:00:00Z",
				"entries":[{"sku":"FP-1","unit":"EA","unitPrice":"12.50"}]}`).must(t, "create price list")
			rest(t, "POST", base+"/v1/sites", adminKey, `{"id":"plant-fp","name":"Failpoint plant","kind":"SITE_KIND_PLANT","region":"eu","transitTimes":[{"region":"eu","days":1}]}`).must(t, "create site")
			rest(t, "POST", base+"/v1/sites/plant-fp/inventory:adjust", adminKey,
				`{"sku":"FP-1","delta":"100","unit":"EA","reason":"LEDGER_REASON_PRODUCTION_RECEIPT","note":"opening stock"}`).must(t, "stock")

			path := "/v1/orders"
			order := `{"customerId":"` + buyerID + `","currencyCode":"EUR","shipToRegion":"eu","externalRef":{"system":"crm","id":"FP-ORDER"},
				"lines":[{"sku":"FP-1","quantity":{"value":"4","unit":"EA"}}]}`
			if tt.fromQuote {
				q := rest(t, "POST", base+"/v1/quotes", adminKey, `{"customerId":"`+buyerID+`","currencyCode":"EUR","shipToRegion":"eu","holdStock":true,
					"validUntil":"`+time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339)+`","lines":[{"sku":"FP-1","quantity":{"value":"4","unit":"EA"}}]}`).must(t, "create quote")
				qid := q["id"].(string)
				rest(t, "POST", base+"/v1/quotes/"+qid+":submit", adminKey, `{}`).must(t, "submit quote")
				rest(t, "POST", base+"/v1/quotes/"+qid+":approve", adminKey, `{"note":"ok"}`).must(t, "approve quote")
				path, order = "/v1/quotes/"+qid+":convert", `{"externalRef":{"system":"crm","id":"FP-ORDER"}}`
			}
			req, _ := http.NewRequest("POST", base+path, strings.NewReader(order))
			req.Header.Set("Authorization", "Bearer "+adminKey)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
				t.Fatalf("%s answered HTTP %d; the failpoint should have killed the process first", path, resp.StatusCode)
			}
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Fatal("the process is still running after reaching its failpoint")
			}
			var exit *exec.ExitError
			if !errors.As(p.cmd.Wait(), &exit) && p.cmd.ProcessState == nil {
				t.Fatal("no exit status")
			}
			if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("the process ended with %v, want killed by SIGKILL", p.cmd.ProcessState)
			}
			if !strings.Contains(p.out.String(), "failpoint reached") {
				t.Fatalf("the process did not say which failpoint killed it:\n%s", p.out.String())
			}

			start(t, env, args...)
			waitHTTP(t, base+"/readyz")
			// The CRM retries the request that died; the external reference
			// makes it answer with the order the first try created, if it
			// stored one.
			got := rest(t, "POST", base+path, adminKey, order).must(t, "retry the call")
			if tt.fromQuote {
				got, _ = got["order"].(map[string]any)
			}
			id := got["id"].(string)
			deadline := time.Now().Add(30 * time.Second)
			for got["status"] != "ORDER_STATUS_ACCEPTED" {
				if time.Now().After(deadline) {
					t.Fatalf("order %s is %v after the restart, want ORDER_STATUS_ACCEPTED", id, got["status"])
				}
				time.Sleep(100 * time.Millisecond)
				got = rest(t, "GET", base+"/v1/orders/"+id, adminKey, "").must(t, "get order")
			}

			list := rest(t, "GET", base+"/v1/orders?externalRefSystem=crm&externalRefId=FP-ORDER", adminKey, "").must(t, "list orders by ref")
			if orders, _ := list["orders"].([]any); len(orders) != 1 {
				t.Errorf("%d orders carry the CRM reference, want 1: %v", len(orders), list)
			}
			inv := rest(t, "GET", base+"/v1/inventory?sku=FP-1", adminKey, "").must(t, "inventory")
			balances, _ := inv["balances"].([]any)
			if len(balances) != 1 {
				t.Fatalf("balances %v, want one at plant-fp", inv)
			}
			b := balances[0].(map[string]any)
			if r := b["reserved"].(map[string]any)["value"]; r != "4" {
				t.Errorf("reserved at plant-fp = %v, want 4: one reservation of the order's 4 units", r)
			}
			if h := b["softHeld"]; h != nil && h.(map[string]any)["value"] != "0" {
				t.Errorf("soft-held at plant-fp = %v, want none: the quote's hold became the order's reservation", h)
			}
			credit := rest(t, "POST", base+"/v1/customers/"+buyerID+":checkCredit", adminKey, `{"amount":{"currencyCode":"EUR","amount":"0.01"}}`).must(t, "check credit")
			exposure := credit["position"].(map[string]any)["exposure"].(map[string]any)["amount"]
			total := got["total"].(map[string]any)["amount"]
			if exposure != total || total != "50.00" {
				t.Errorf("credit exposure %v, order total %v: want one credit reservation of 50.00", exposure, total)
			}
			tl := rest(t, "GET", base+"/v1/orders/"+id+"/timeline", adminKey, "").must(t, "timeline")
			accepted := 0
			entries, _ := tl["entries"].([]any)
			for _, e := range entries {
				if e.(map[string]any)["toStatus"] == "ORDER_STATUS_ACCEPTED" {
					accepted++
				}
			}
			if accepted != 1 {
				t.Errorf("the timeline shows %d acceptances, want 1: %v", accepted, entries)
			}
		})
	}
}
