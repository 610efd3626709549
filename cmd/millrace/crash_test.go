package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/millrace/millrace/internal/storage"
	"github.com/millrace/millrace/internal/webhooks/verify"
)

// crashRounds is how many times TestCrashRecovery kills the server:
// MILLRACE_CRASH_ROUNDS when set (make crash sets 25), else a few, to keep
// the suite quick.
func crashRounds(t *testing.T) int {
	if v := os.Getenv("MILLRACE_CRASH_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("MILLRACE_CRASH_ROUNDS=%q: want a positive number", v)
		}
		return n
	}
	return 6
}

// idempotencyLease is the server's default lease on an Idempotency-Key
// claim (idempotency.DefaultLease): a claim whose request died with the
// process blocks retries with that key for this long.
const idempotencyLease = 60 * time.Second

// TestCrashRecovery kills the all-in-one server with SIGKILL at random
// moments while a CRM-like load generator creates customers and orders
// through REST, restarts it on the same data dir and ports each time, and
// then checks what a CRM relies on:
//
//   - every customer and order acknowledged with 200 exists, once: retries
//     with the same Idempotency-Key and upserts by external reference never
//     make a second one;
//   - every customer and order that exists reached the webhook receiver
//     (CustomerCreated, OrderAccepted), and so did every event in the feed;
//   - per aggregate, the receiver saw sequence numbers 1..n without a gap,
//     first arrivals in order, each signed correctly;
//   - every store passes the consistency check after every kill and after
//     the final graceful stop.
//
// Requests in flight when the server dies fail with a connection error;
// the load generator retries them with the same Idempotency-Key until they
// succeed, as a CRM does.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts the server for a minute")
	}
	rounds := crashRounds(t)
	began := time.Now()
	dir := t.TempDir()
	grpcA, httpA := freeAddr(t), freeAddr(t)
	base := "http://" + httpA
	env := []string{"MILLRACE_ADMIN_KEY=" + adminKey}
	args := []string{"serve", "--data-dir", dir, "--grpc-addr", grpcA, "--http-addr", httpA,
		"--allow-private-webhooks", "--rate-limit", "0", "--log-level", "warn"}
	var p *proc
	boot := func() {
		t.Helper()
		p = start(t, env, args...)
		waitHTTP(t, base+"/readyz")
	}
	boot()

	rcv := newHookReceiver()
	hooks := httptest.NewServer(rcv)
	defer hooks.Close()
	sub := rest(t, "POST", base+"/v1/subscriptions", adminKey,
		`{"url":"`+hooks.URL+`/millrace","description":"crash test receiver"}`).must(t, "create subscription")
	rcv.setSecret(sub["secret"].(string))

	// Master data for orders: one buyer with room for every order, one
	// product with a price and plenty of stock.
	buyer := rest(t, "POST", base+"/v1/customers", adminKey, `{"displayName":"Crash Buyer GmbH","region":"eu","currencyCode":"EUR",
		"creditLimit":{"currencyCode":"EUR","amount":"1000000000"},"externalRefs":[{"system":"crm","id":"BUYER"}]}`).must(t, "create buyer")
	buyerID := buyer["id"].(string)
	rest(t, "POST", base+"/v1/products", adminKey, `{"sku":"CRASH-1","name":"Crash part","baseUnit":"EA","baseUnitIndivisible":true,"status":"PRODUCT_STATUS_ACTIVE"}`).must(t, "create product")
	rest(t, "POST", base+"/v1/priceLists", adminKey, `{"name":"EUR crash list","currencyCode":"EUR","validFrom":"2025-01-01T00:00:00Z",
		"entries":[{"sku":"CRASH-1","unit":"EA","unitPrice":"9.99"}]}`).must(t, "create price list")
	rest(t, "POST", base+"/v1/sites", adminKey, `{"id":"plant-crash","name":"Crash plant","kind":"SITE_KIND_PLANT","region":"eu","transitTimes":[{"region":"eu","days":1}]}`).must(t, "create site")
	rest(t, "POST", base+"/v1/sites/plant-crash/inventory:adjust", adminKey,
		`{"sku":"CRASH-1","delta":"10000000","unit":"EA","reason":"LEDGER_REASON_PRODUCTION_RECEIPT","note":"opening stock"}`).must(t, "stock")

	gen := &loadGen{base: base, buyerID: buyerID}
	stop := make(chan struct{})
	var stopOnce sync.Once
	var workers sync.WaitGroup
	for range 3 {
		workers.Add(1)
		go func() { defer workers.Done(); gen.work(stop) }()
	}
	stopLoad := func() {
		stopOnce.Do(func() { close(stop) })
		workers.Wait()
	}
	t.Cleanup(func() { // a failed test leaves no worker retrying a dead server
		gen.abandon.Store(true)
		stopLoad()
	})

	stores := []string{"customer.db", "productpricing.db", "fulfillment.db", "order.db", "integration.db"}
	checkStores := func(when string) {
		t.Helper()
		for _, f := range stores {
			if err := storage.Check(filepath.Join(dir, f)); err != nil {
				t.Errorf("%s: %s: %v", when, f, err)
			}
		}
	}
	var downtime time.Duration
	for round := 1; round <= rounds; round++ {
		time.Sleep(time.Duration(200+rand.IntN(1300)) * time.Millisecond)
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-p.done
		killed := time.Now()
		checkStores(fmt.Sprintf("after kill %d", round))
		if t.Failed() {
			t.FailNow()
		}
		boot()
		downtime += time.Since(killed)
	}
	stopLoad()
	loadEnd := time.Now()
	t.Logf("%d kills in %v (%v down in total); load: %s", rounds, loadEnd.Sub(began).Round(time.Millisecond), downtime.Round(time.Millisecond), gen.stats())

	// Requests whose key was claimed by a process that then died are
	// refused as in flight until the claim's lease runs out; the CRM keeps
	// retrying them, so does the generator, until each has its answer.
	gen.drain(t, loadEnd.Add(idempotencyLease+30*time.Second))
	t.Logf("in-flight keys settled %v after the load stopped", time.Since(loadEnd).Round(time.Millisecond))

	// What exists: every customer (paging through the list) and every
	// order.
	customers := listAll(t, base+"/v1/customers", "customers")
	orders := listAll(t, base+"/v1/orders", "orders")
	custByRef, orderByRef := map[string][]string{}, map[string][]map[string]any{}
	for _, c := range customers {
		refs, _ := c["externalRefs"].([]any)
		for _, r := range refs {
			ref := r.(map[string]any)
			key := fmt.Sprint(ref["system"], "/", ref["id"])
			custByRef[key] = append(custByRef[key], c["id"].(string))
		}
	}
	for _, o := range orders {
		ref, _ := o["externalRef"].(map[string]any)
		if ref == nil {
			t.Errorf("order %v has no external reference", o["id"])
			continue
		}
		orderByRef[ref["id"].(string)] = append(orderByRef[ref["id"].(string)], o)
	}

	// No duplicates, nothing acknowledged missing.
	for ref, ids := range custByRef {
		if len(ids) != 1 {
			t.Errorf("customer reference %s is held by %d accounts: %v", ref, len(ids), ids)
		}
	}
	for ref, list := range orderByRef {
		if len(list) != 1 {
			t.Errorf("order reference %s is held by %d orders", ref, len(list))
		}
	}
	gen.mu.Lock()
	acked, reran := gen.acked, gen.reran
	gen.mu.Unlock()
	var ackedCustomers, ackedOrders int
	for ref, id := range acked {
		switch {
		case strings.HasPrefix(ref, "salesforce/"):
			ackedOrders++
			list := orderByRef[strings.TrimPrefix(ref, "salesforce/")]
			if len(list) != 1 || list[0]["id"] != id {
				t.Errorf("order %s was acknowledged as %s; the orders holding its reference: %d", ref, id, len(list))
			}
		default:
			ackedCustomers++
			if ids := custByRef[ref]; len(ids) != 1 || ids[0] != id {
				t.Errorf("customer %s was acknowledged as %s; the accounts holding its reference: %v", ref, id, ids)
			}
		}
	}
	for ref, holder := range reran {
		if ids := custByRef[ref]; len(ids) != 1 || ids[0] != holder {
			t.Errorf("customer %s: the retry was refused naming holder %s; the accounts holding the reference: %v", ref, holder, ids)
		}
	}
	if len(reran) > 0 {
		// A keyed create attaches what it created to its Idempotency-Key
		// claim in the same commit, so a retry after a kill that lost the
		// stored answer gets the account, never a 409 naming it.
		refs := make([]string, 0, len(reran))
		for ref := range reran {
			refs = append(refs, ref)
		}
		sort.Strings(refs)
		t.Errorf("%d creates were run again after a crash lost their Idempotency-Key answer, and refused as EXTERNAL_REF_TAKEN: %v", len(reran), refs)
	}
	if ackedCustomers == 0 || ackedOrders == 0 {
		t.Fatalf("the load acknowledged %d customers and %d orders; the test proves nothing", ackedCustomers, ackedOrders)
	}

	// Every order's saga finishes, even one interrupted by a kill.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var pendingOrders []string
		for _, o := range listAll(t, base+"/v1/orders", "orders") {
			if o["status"] != "ORDER_STATUS_ACCEPTED" {
				pendingOrders = append(pendingOrders, fmt.Sprintf("%v %v", o["id"], o["status"]))
			}
		}
		if len(pendingOrders) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("orders not ACCEPTED 30 s after the load: %v", pendingOrders)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Every committed event reaches the receiver: each customer's
	// CustomerCreated, each order's OrderAccepted, and everything the feed
	// holds.
	var feed []feedEvent
	var missing []string
	deadline = time.Now().Add(60 * time.Second)
	for {
		var err error
		if feed, err = readFeed(base, adminKey); err != nil {
			t.Fatal(err)
		}
		missing = rcv.missing(feed, customers, orders)
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Errorf("%d events never reached the receiver, for example: %v", len(missing), missing[:min(len(missing), 20)])
	}
	seenInFeed := map[string]bool{}
	for _, e := range feed {
		if seenInFeed[e.Event.ID] {
			t.Errorf("event %s is in the feed twice", e.Event.ID)
		}
		seenInFeed[e.Event.ID] = true
	}
	rcv.check(t)

	// A graceful stop, then every store is consistent.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("graceful stop: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("still running 15 s after SIGTERM")
	}
	checkStores("after the graceful stop")
	rcv.mu.Lock()
	t.Logf("%d customers, %d orders (%d and %d acknowledged); feed %d events; receiver %d events, %d redeliveries of a webhook-id; %v in all",
		len(customers), len(orders), ackedCustomers, ackedOrders, len(feed), len(rcv.byHook), rcv.redelivered, time.Since(began).Round(time.Millisecond))
	rcv.mu.Unlock()
}

// loadGen is the CRM: workers create customers (plain creates and upserts
// by external reference) and orders, each identified by an external
// reference and sent with an Idempotency-Key, retried until answered.
type loadGen struct {
	base    string
	buyerID string
	next    atomic.Int64
	abandon atomic.Bool // the test failed: stop retrying

	mu       sync.Mutex
	acked    map[string]string // external reference → id acknowledged with 200
	reran    map[string]string // customer reference → holder named by EXTERNAL_REF_TAKEN
	deferred []loadOp          // keys refused as in flight, retried later
	connErrs int               // attempts that failed with a connection error
	status5x map[int]int       // attempts answered with a 5xx, by status
	inFlight int               // answers IDEMPOTENCY_KEY_IN_FLIGHT
	replays  int               // answers with Idempotent-Replayed
	unexpect []string          // answers the CRM cannot act on
}

type loadOp struct {
	ref, key, path, body string
}

func (g *loadGen) op(n int) loadOp {
	switch n % 3 {
	case 0:
		return loadOp{ref: fmt.Sprintf("crm/C-%d", n), key: fmt.Sprintf("crash-%d", n), path: "/v1/customers",
			body: fmt.Sprintf(`{"displayName":"Crash Account %d","region":"eu","currencyCode":"EUR",
				"creditLimit":{"currencyCode":"EUR","amount":"5000"},"externalRefs":[{"system":"crm","id":"C-%d"}]}`, n, n)}
	case 1:
		return loadOp{ref: fmt.Sprintf("crm/C-%d", n), key: fmt.Sprintf("crash-%d", n), path: "/v1/customers:upsertByExternalRef",
			body: fmt.Sprintf(`{"externalRef":{"system":"crm","id":"C-%d"},"customer":{"displayName":"Crash Account %d","region":"eu","currencyCode":"EUR"}}`, n, n)}
	default:
		return loadOp{ref: fmt.Sprintf("salesforce/O-%d", n), key: fmt.Sprintf("crash-%d", n), path: "/v1/orders",
			body: fmt.Sprintf(`{"customerId":%q,"currencyCode":"EUR","shipToRegion":"eu","externalRef":{"system":"salesforce","id":"O-%d"},
				"lines":[{"sku":"CRASH-1","quantity":{"value":"%d","unit":"EA"}}]}`, g.buyerID, n, 1+n%5)}
	}
}

func (g *loadGen) work(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		op := g.op(int(g.next.Add(1)))
		if g.send(op) == outcomeInFlight {
			g.mu.Lock()
			g.deferred = append(g.deferred, op)
			g.mu.Unlock()
		}
	}
}

type outcome int

const (
	outcomeDone outcome = iota
	outcomeInFlight
)

// send makes the call until it has an answer the CRM can act on: it
// retries connection errors and 5xx (the server died or is starting) with
// the same key; an in-flight key is handed back to be retried later.
func (g *loadGen) send(op loadOp) outcome {
	for !g.abandon.Load() {
		req, _ := http.NewRequest("POST", g.base+op.path, strings.NewReader(op.body))
		req.Header.Set("Authorization", "Bearer "+adminKey)
		req.Header.Set("Idempotency-Key", op.key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			g.count(&g.connErrs)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var body struct {
			ID       string `json:"id"`
			Customer struct {
				ID string `json:"id"`
			} `json:"customer"`
			Details []struct {
				Reason   string            `json:"reason"`
				Metadata map[string]string `json:"metadata"`
			} `json:"details"`
		}
		_ = json.Unmarshal(b, &body)
		reason := ""
		var meta map[string]string
		for _, d := range body.Details {
			if d.Reason != "" {
				reason, meta = d.Reason, d.Metadata
			}
		}
		switch {
		case resp.StatusCode == 200:
			id := body.ID
			if op.path == "/v1/customers:upsertByExternalRef" {
				id = body.Customer.ID
			}
			g.mu.Lock()
			if g.acked == nil {
				g.acked = map[string]string{}
			}
			if prev, ok := g.acked[op.ref]; ok && prev != id {
				g.unexpect = append(g.unexpect, fmt.Sprintf("%s acknowledged as %s and as %s", op.ref, prev, id))
			}
			g.acked[op.ref] = id
			if resp.Header.Get("Idempotent-Replayed") == "true" {
				g.replays++
			}
			g.mu.Unlock()
			return outcomeDone
		case resp.StatusCode >= 500:
			g.mu.Lock()
			if g.status5x == nil {
				g.status5x = map[int]int{}
			}
			g.status5x[resp.StatusCode]++
			g.mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		case resp.StatusCode == 409 && reason == "IDEMPOTENCY_KEY_IN_FLIGHT":
			// Not worth a worker's time while the load runs: the lease of a
			// claim whose owner died lasts a minute. drain comes back to it.
			g.count(&g.inFlight)
			return outcomeInFlight
		case resp.StatusCode == 409 && reason == "EXTERNAL_REF_TAKEN" && op.path == "/v1/customers":
			g.mu.Lock()
			if g.reran == nil {
				g.reran = map[string]string{}
			}
			g.reran[op.ref] = meta["holder_id"]
			g.mu.Unlock()
			return outcomeDone
		default:
			g.mu.Lock()
			g.unexpect = append(g.unexpect, fmt.Sprintf("%s %s: HTTP %d %s", op.path, op.ref, resp.StatusCode, b))
			g.mu.Unlock()
			return outcomeDone
		}
	}
	return outcomeDone
}

func (g *loadGen) count(n *int) {
	g.mu.Lock()
	*n++
	g.mu.Unlock()
}

// drain retries the deferred keys until each has its answer.
func (g *loadGen) drain(t *testing.T, deadline time.Time) {
	t.Helper()
	for {
		g.mu.Lock()
		ops := g.deferred
		g.deferred = nil
		g.mu.Unlock()
		if len(ops) == 0 {
			break
		}
		var again []loadOp
		for _, op := range ops {
			if g.send(op) == outcomeInFlight {
				again = append(again, op)
			}
		}
		if len(again) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d Idempotency-Keys still in flight long after their lease: %v", len(again), again)
		}
		g.mu.Lock()
		g.deferred = append(g.deferred, again...)
		g.mu.Unlock()
		time.Sleep(time.Second)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, u := range g.unexpect {
		t.Errorf("unexpected answer: %s", u)
	}
}

func (g *loadGen) stats() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return fmt.Sprintf("%d operations, %d acknowledged; retries: %d after a connection error, %v after a 5xx; %d answers IDEMPOTENCY_KEY_IN_FLIGHT (%d keys deferred); %d answers replayed",
		g.next.Load(), len(g.acked), g.connErrs, g.status5x, g.inFlight, len(g.deferred), g.replays)
}

// listAll pages through a REST collection.
func listAll(t *testing.T, u, field string) []map[string]any {
	t.Helper()
	var all []map[string]any
	token := ""
	for {
		r := rest(t, "GET", u+"?pageSize=500&pageToken="+url.QueryEscape(token), adminKey, "").must(t, "list "+field)
		items, _ := r[field].([]any)
		for _, it := range items {
			all = append(all, it.(map[string]any))
		}
		token, _ = r["nextPageToken"].(string)
		if token == "" {
			return all
		}
	}
}

// hookReceiver is the CRM's webhook endpoint: it verifies every signature and
// records each delivery once by webhook-id.
type hookReceiver struct {
	mu          sync.Mutex
	secret      string
	byHook      map[string]hookEvent // webhook-id → event
	hookOf      map[string][]string  // event id → webhook-ids
	arrivals    map[string][]uint64  // subject → sequences in order of first arrival
	redelivered int
	problems    []string
}

type hookEvent struct {
	ID, Type, Subject string
	Sequence          uint64
}

func newHookReceiver() *hookReceiver {
	return &hookReceiver{byHook: map[string]hookEvent{}, hookOf: map[string][]string{}, arrivals: map[string][]uint64{}}
}

func (rc *hookReceiver) setSecret(s string) {
	rc.mu.Lock()
	rc.secret = s
	rc.mu.Unlock()
}

func (rc *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.secret == "" { // the subscription's answer is not in yet
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if err := verify.Verify([]string{rc.secret}, r.Header, body, time.Now(), verify.DefaultTolerance); err != nil {
		rc.problems = append(rc.problems, "signature: "+err.Error())
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	hook := r.Header.Get(verify.HeaderID)
	if _, ok := rc.byHook[hook]; ok {
		rc.redelivered++
		w.WriteHeader(http.StatusNoContent)
		return
	}
	var ce struct {
		ID       string `json:"id"`
		Type     string `json:"type"`
		Subject  string `json:"subject"`
		Sequence uint64 `json:"sequence"`
	}
	if err := json.Unmarshal(body, &ce); err != nil || ce.ID == "" {
		rc.problems = append(rc.problems, fmt.Sprintf("body of %s: %v %s", hook, err, body))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	e := hookEvent{ID: ce.ID, Type: ce.Type, Subject: ce.Subject, Sequence: ce.Sequence}
	rc.byHook[hook] = e
	rc.hookOf[e.ID] = append(rc.hookOf[e.ID], hook)
	rc.arrivals[e.Subject] = append(rc.arrivals[e.Subject], e.Sequence)
	w.WriteHeader(http.StatusNoContent)
}

// missing lists what should have arrived and has not: every feed event,
// each customer's CustomerCreated and each order's OrderAccepted.
func (rc *hookReceiver) missing(feed []feedEvent, customers, orders []map[string]any) []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	have := map[string]bool{} // subject|type
	for _, e := range rc.byHook {
		have[e.Subject+"|"+e.Type] = true
	}
	var out []string
	for _, e := range feed {
		if len(rc.hookOf[e.Event.ID]) == 0 {
			out = append(out, fmt.Sprintf("feed event %s %s %s#%s", e.Event.ID, e.Event.Type, e.Event.Subject, e.Event.Sequence))
		}
	}
	for _, c := range customers {
		if s := "customers/" + c["id"].(string); !have[s+"|millrace.events.v1.CustomerCreated"] {
			out = append(out, "CustomerCreated of "+s)
		}
	}
	for _, o := range orders {
		if s := "orders/" + o["id"].(string); !have[s+"|millrace.events.v1.OrderAccepted"] {
			out = append(out, "OrderAccepted of "+s)
		}
	}
	return out
}

// check reports bad signatures, an event delivered under two webhook-ids,
// gaps in a subject's sequence and first arrivals out of order.
func (rc *hookReceiver) check(t *testing.T) {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, p := range rc.problems[:min(len(rc.problems), 20)] {
		t.Errorf("receiver: %s", p)
	}
	for id, hooks := range rc.hookOf {
		if len(hooks) > 1 {
			t.Errorf("event %s was delivered under %d webhook-ids %v: a receiver de-duplicating by webhook-id processes it twice", id, len(hooks), hooks)
		}
	}
	gaps, disorder := 0, 0
	for subject, seqs := range rc.arrivals {
		sorted := slices.Clone(seqs)
		slices.Sort(sorted)
		sorted = slices.Compact(sorted)
		for i, s := range sorted {
			if s != uint64(i+1) {
				if gaps++; gaps <= 20 {
					t.Errorf("subject %s: the receiver has sequences %v, not 1..%d", subject, sorted, len(sorted))
				}
				break
			}
		}
		if !slices.IsSorted(seqs) {
			if disorder++; disorder <= 20 {
				t.Errorf("subject %s: first arrivals out of order: %v", subject, seqs)
			}
		}
	}
}
