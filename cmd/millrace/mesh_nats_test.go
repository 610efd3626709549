package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// startNATS runs a NATS server with JetStream inside the test process, on a
// free loopback port, stopped when the test ends.
func startNATS(t *testing.T) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{JetStream: true, StoreDir: t.TempDir(), Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("NATS server not ready within 10 s")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// restResult is one REST answer: status, decoded JSON body and headers.
type restResult struct {
	code   int
	body   map[string]any
	header http.Header
}

// rest calls the REST API with the key and extra headers given as name,
// value pairs, and fails the test on a transport error.
func rest(t *testing.T, method, u, key, body string, headers ...string) restResult {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return restResult{code: resp.StatusCode, body: out, header: resp.Header}
}

// must fails the test unless the call answered 200, and returns the body.
func (r restResult) must(t *testing.T, what string) map[string]any {
	t.Helper()
	if r.code != 200 {
		t.Fatalf("%s: HTTP %d %v", what, r.code, r.body)
	}
	return r.body
}

// feedEvent is one entry of GET /v1/events, as the REST API renders it.
type feedEvent struct {
	Cursor string `json:"cursor"`
	Event  struct {
		ID            string `json:"id"`
		Type          string `json:"type"`
		Subject       string `json:"subject"`
		CorrelationID string `json:"correlationId"`
		Sequence      string `json:"sequence"`
	} `json:"event"`
}

// readFeed pages through GET /v1/events from the start of the feed until
// the cursor stops moving, and returns every event, oldest first. It
// returns an error rather than failing so a caller can poll with it.
func readFeed(base, key string) ([]feedEvent, error) {
	var all []feedEvent
	after := ""
	for range 100_000 {
		req, _ := http.NewRequest("GET", base+"/v1/events?pageSize=1000&after="+url.QueryEscape(after), nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		var page struct {
			Events     []feedEvent `json:"events"`
			NextCursor string      `json:"nextCursor"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if resp.StatusCode != 200 || err != nil {
			return nil, fmt.Errorf("GET /v1/events: HTTP %d, %v", resp.StatusCode, err)
		}
		all = append(all, page.Events...)
		if page.NextCursor == "" || page.NextCursor == after {
			return all, nil
		}
		after = page.NextCursor
	}
	return nil, fmt.Errorf("the feed never stopped")
}

// TestMeshWithNATSToShipped runs the four services and the edge as five
// processes that exchange events over a NATS JetStream server: an order
// placed through the edge is accepted by the order service's saga across
// the mesh, moves to SHIPPED and INVOICED on the events fulfillment (another
// process) publishes, and the edge's feed, which consumes from NATS too,
// shows the events with the order's correlation id.
func TestMeshWithNATSToShipped(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five processes and a NATS server")
	}
	ns := startNATS(t)
	root := t.TempDir()
	names := []string{"edge", "customer", "productpricing", "fulfillment", "order"}
	grpcAddr, httpAddr := map[string]string{}, map[string]string{}
	for _, n := range names {
		grpcAddr[n], httpAddr[n] = freeAddr(t), freeAddr(t)
	}
	env := []string{"MILLRACE_MESH_TOKEN=mesh-token-for-process-tests-0123", "MILLRACE_ADMIN_KEY=" + adminKey}
	var peers []string
	for _, n := range names {
		peers = append(peers, "--"+n+"-addr", grpcAddr[n])
	}
	for _, n := range names {
		args := append([]string{"serve", "--service", n, "--data-dir", filepath.Join(root, n),
			"--grpc-addr", grpcAddr[n], "--http-addr", httpAddr[n], "--nats-url", ns.ClientURL(),
			"--log-level", "warn", "--rate-limit", "0"}, peers...)
		start(t, env, args...)
	}
	for _, n := range names {
		waitHTTP(t, "http://"+httpAddr[n]+"/healthz")
	}
	waitHTTP(t, "http://"+httpAddr["edge"]+"/readyz")
	edge := "http://" + httpAddr["edge"]
	post := func(path, body string, headers ...string) map[string]any {
		t.Helper()
		return rest(t, "POST", edge+path, adminKey, body, headers...).must(t, "POST "+path)
	}

	// Master data, each piece owned by another process.
	cust := post("/v1/customers", `{"displayName":"Mesh Maschinenbau GmbH","region":"eu","currencyCode":"EUR",
		"creditLimit":{"currencyCode":"EUR","amount":"10000"},"paymentTerms":"NET30"}`)
	customerID, _ := cust["id"].(string)
	post("/v1/products", `{"sku":"NATS-VALVE","name":"Ball valve DN25","baseUnit":"EA","baseUnitIndivisible":true,"status":"PRODUCT_STATUS_ACTIVE"}`)
	post("/v1/priceLists", `{"name":"EUR mesh list","currencyCode":"EUR","validFrom":"2025-01-01T00:00:00Z",
		"entries":[{"sku":"NATS-VALVE","unit":"EA","unitPrice":"42.50"}]}`)
	post("/v1/sites", `{"id":"plant-mesh","name":"Mesh plant","kind":"SITE_KIND_PLANT","region":"eu","transitTimes":[{"region":"eu","days":1}]}`)
	post("/v1/sites/plant-mesh/inventory:adjust", `{"sku":"NATS-VALVE","delta":"100","unit":"EA","reason":"LEDGER_REASON_PRODUCTION_RECEIPT","note":"opening stock"}`)

	// The order: the saga prices it (productpricing), reserves stock
	// (fulfillment) and credit (customer), all over gRPC between processes.
	const correlation = "mesh-nats-order-0001"
	r := rest(t, "POST", edge+"/v1/orders", adminKey, fmt.Sprintf(`{"customerId":%q,"currencyCode":"EUR","shipToRegion":"eu",
		"externalRef":{"system":"salesforce","id":"801-MESH-0001"},"lines":[{"sku":"NATS-VALVE","quantity":{"value":"10","unit":"EA"}}]}`, customerID),
		"X-Correlation-Id", correlation, "Idempotency-Key", "mesh-order-1")
	ord := r.must(t, "create order")
	if got := r.header.Get("X-Correlation-Id"); got != correlation {
		t.Fatalf("X-Correlation-Id %q returned, want %q", got, correlation)
	}
	orderID, _ := ord["id"].(string)
	if ord["status"] != "ORDER_STATUS_ACCEPTED" || orderID == "" {
		t.Fatalf("order %v, want ACCEPTED", ord)
	}

	ship := post("/v1/shipments", fmt.Sprintf(`{"orderId":%q,"siteId":"plant-mesh",
		"lines":[{"orderLineIndex":0,"sku":"NATS-VALVE","quantity":{"value":"10","unit":"EA"}}]}`, orderID))
	shipID, _ := ship["id"].(string)
	confirmed := post("/v1/shipments/"+shipID+":confirm", `{"carrier":"DHL Freight","trackingNumber":"JD0146000039"}`,
		"X-Correlation-Id", "mesh-nats-ship-0001")
	if confirmed["status"] != "SHIPMENT_STATUS_CONFIRMED" {
		t.Fatalf("confirmed shipment %v", confirmed)
	}

	// ShipmentConfirmed and InvoicePosted reach the order service over
	// NATS; the order passes SHIPPED on its way to INVOICED.
	seen := map[string]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for !seen["ORDER_STATUS_INVOICED"] {
		if time.Now().After(deadline) {
			t.Fatalf("order %s never reached INVOICED; statuses seen %v", orderID, seen)
		}
		got := rest(t, "GET", edge+"/v1/orders/"+orderID, adminKey, "").must(t, "get order")
		seen[fmt.Sprint(got["status"])] = true
		time.Sleep(50 * time.Millisecond)
	}
	tl := rest(t, "GET", edge+"/v1/orders/"+orderID+"/timeline", adminKey, "").must(t, "timeline")
	var path []string
	entries, _ := tl["entries"].([]any)
	for _, e := range entries {
		path = append(path, fmt.Sprint(e.(map[string]any)["toStatus"]))
	}
	if want := "ORDER_STATUS_PENDING ORDER_STATUS_ACCEPTED ORDER_STATUS_SHIPPED ORDER_STATUS_INVOICED"; strings.Join(path, " ") != want {
		t.Fatalf("timeline %v, want %s", path, want)
	}

	// The edge's feed consumes from NATS: the order's events are there with
	// the correlation id of the request that caused them, and so are the
	// events of the other services.
	var feed []feedEvent
	wantTypes := []string{"CustomerCreated", "ProductChanged", "PriceListChanged", "OrderAccepted", "ShipmentConfirmed", "InvoicePosted"}
	deadline = time.Now().Add(15 * time.Second)
	for {
		var err error
		feed, err = readFeed(edge, adminKey)
		if err != nil {
			t.Fatal(err)
		}
		types := map[string]bool{}
		for _, e := range feed {
			types[strings.TrimPrefix(e.Event.Type, "millrace.events.v1.")] = true
		}
		missing := 0
		for _, w := range wantTypes {
			if !types[w] {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the feed has types %v, want at least %v", types, wantTypes)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var accepted, shippedStatus bool
	for _, e := range feed {
		ev := e.Event
		if ev.Subject != "orders/"+orderID {
			continue
		}
		if ev.CorrelationID == "" {
			t.Errorf("%s %s carries no correlation id", ev.Type, ev.ID)
		}
		switch ev.Type {
		case "millrace.events.v1.OrderAccepted":
			accepted = true
			if ev.CorrelationID != correlation {
				t.Errorf("OrderAccepted carries correlation id %q, want %q", ev.CorrelationID, correlation)
			}
		case "millrace.events.v1.OrderStatusChanged":
			shippedStatus = true
		}
	}
	if !accepted || !shippedStatus {
		t.Errorf("the feed lacks the order's OrderAccepted (%v) or OrderStatusChanged (%v) events", accepted, shippedStatus)
	}
	for _, e := range feed {
		if e.Event.Type == "millrace.events.v1.ShipmentConfirmed" && e.Event.CorrelationID != "mesh-nats-ship-0001" {
			t.Errorf("ShipmentConfirmed carries correlation id %q, want the confirm call's", e.Event.CorrelationID)
		}
	}
	t.Logf("feed holds %d events; order %s went %v", len(feed), orderID, path)
}
