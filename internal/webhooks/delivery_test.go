package webhooks

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	"github.com/millrace/millrace/internal/webhooks/verify"
)

// A receiver that fails in every way a real one does, then recovers: after
// de-duplication by webhook-id every event is applied exactly once and each
// aggregate's events in sequence order.
func TestFlakyReceiverGetsEveryEventOnceInOrder(t *testing.T) {
	db, _ := tempStore(t)
	opts := testOptions()
	opts.Timeout = 150 * time.Millisecond
	d := newDispatcher(t, db, opts)

	var (
		mu           sync.Mutex
		retryAfterID string             // the delivery answered 429 with Retry-After: 1
		scriptOf     = map[string]int{} // webhook-id → its script, in order of first sight
	)
	rc := newReceiver(t, nil)
	rc.decide = func(r *http.Request, id string, attempt int) answer {
		mu.Lock()
		defer mu.Unlock()
		if retryAfterID == "" {
			retryAfterID = id
		}
		if id == retryAfterID {
			if attempt == 1 {
				return answer{code: http.StatusTooManyRequests, retryAfter: "1"}
			}
			return answer{code: http.StatusOK}
		}
		// Every other delivery walks through one of the failure modes, in
		// turn as deliveries first arrive, so that each mode is met.
		n, ok := scriptOf[id]
		if !ok {
			n = len(scriptOf)
			scriptOf[id] = n
		}
		script := [][]answer{
			{{code: 500}, {hang: true}, {code: 302, location: rc.srv.URL + "/elsewhere"}, {code: 200}},
			{{code: 503, retryAfter: "0"}, {code: 200}},
			{{hang: true}, {code: 404}, {code: 200}},
			{{code: 200}},
		}[n%4]
		return script[min(attempt, len(script))-1]
	}
	sub, secret := createSub(t, d, rc.url())
	rc.setSecrets(secret)

	want := makeEvents(subjects("customers", 4), 5)
	consumeAll(t, d, want...)
	start(t, d)

	eventually(t, 15*time.Second, "every event processed", func() bool { return len(rc.processedEvents()) >= len(want) })
	eventually(t, 5*time.Second, "backlog drained", func() bool { return getSubT(t, d, sub.GetId()).GetBacklog() == 0 })
	checkExactlyOnceInOrder(t, rc.processedEvents(), want)

	if rc.badSig != 0 {
		t.Errorf("%d requests had a bad signature", rc.badSig)
	}
	if got := len(deadLetters(t, d, "")); got != 0 {
		t.Errorf("%d dead letters, want 0", got)
	}
	all := deliveries(t, d, sub.GetId(), integrationv1.DeliveryStatus_DELIVERY_STATUS_UNSPECIFIED)
	if len(all) != len(want) {
		t.Fatalf("%d deliveries, want %d", len(all), len(want))
	}
	seenErrors := map[string]bool{}
	for _, dl := range all {
		if dl.GetStatus() != integrationv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED {
			t.Errorf("delivery %s is %v", dl.GetId(), dl.GetStatus())
		}
		if n := len(dl.GetAttempts()); n != rc.attempts[dl.GetId()] {
			t.Errorf("delivery %s records %d attempts, the receiver saw %d", dl.GetId(), n, rc.attempts[dl.GetId()])
		}
		for _, a := range dl.GetAttempts() {
			seenErrors[a.GetError()] = true
			if a.GetTime() == nil {
				t.Errorf("attempt without a time")
			}
		}
		if last := dl.GetAttempts()[len(dl.GetAttempts())-1]; last.GetStatusCode() != 200 || last.GetError() != "" {
			t.Errorf("last attempt of %s = %v", dl.GetId(), last)
		}
	}
	for _, e := range []string{"HTTP 500", "timeout", "HTTP 429", "HTTP 404", "HTTP 503"} {
		if !seenErrors[e] {
			t.Errorf("no attempt recorded the error %q; saw %v", e, seenErrors)
		}
	}
	redirect := false
	for e := range seenErrors {
		redirect = redirect || strings.HasPrefix(e, "redirect (HTTP 302) not followed")
	}
	if !redirect {
		t.Errorf("no attempt recorded a refused redirect; saw %v", seenErrors)
	}
	// Retry-After: 1 was honoured although the scaled schedule's first
	// step is 50µs.
	rc.mu.Lock()
	times := rc.attemptLog[retryAfterID]
	rc.mu.Unlock()
	if len(times) < 2 || times[1].Sub(times[0]) < 950*time.Millisecond {
		t.Errorf("retry after a 429 with Retry-After: 1 came after %v", times[1].Sub(times[0]))
	}
	// Nobody followed the redirect.
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if n := rc.paths["/elsewhere"]; n != 0 {
		t.Errorf("a redirect was followed %d times", n)
	}
}

// Exhausted deliveries become dead letters, exactly one each; the other
// aggregates are unaffected; replayed dead letters keep their webhook-id.
func TestExhaustedDeliveriesBecomeDeadLettersAndReplay(t *testing.T) {
	db, _ := tempStore(t)
	reg := prometheus.NewRegistry()
	opts := testOptions()
	opts.Registerer = reg
	d := newDispatcher(t, db, opts)
	var mu sync.Mutex
	broken := true
	rc := newReceiver(t, func(r *http.Request, id string, attempt int) answer {
		mu.Lock()
		defer mu.Unlock()
		if broken && strings.Contains(r.Header.Get("X-Correlation-Id"), "bad") {
			return answer{code: http.StatusInternalServerError}
		}
		return answer{code: http.StatusOK}
	})
	sub, secret := createSub(t, d, rc.url())
	rc.setSecrets(secret)
	bad := makeEvents(subjects("bad", 2), 3)
	good := makeEvents(subjects("good", 2), 3)
	consumeAll(t, d, append(append(bad[:0:0], bad...), good...)...)
	start(t, d)

	eventually(t, 15*time.Second, "bad deliveries exhausted", func() bool {
		return len(deliveries(t, d, sub.GetId(), integrationv1.DeliveryStatus_DELIVERY_STATUS_DEAD)) == len(bad)
	})
	eventually(t, 5*time.Second, "good events processed", func() bool { return len(rc.processedEvents()) == len(good) })
	checkExactlyOnceInOrder(t, rc.processedEvents(), good)

	dlts := deadLetters(t, d, sub.GetId())
	if len(dlts) != len(bad) {
		t.Fatalf("%d dead letters, want exactly %d", len(dlts), len(bad))
	}
	if all := deadLetters(t, d, ""); len(all) != len(bad) {
		t.Fatalf("%d dead letters unfiltered, want %d", len(all), len(bad))
	}
	failedIDs := map[string]bool{}
	var ids []string
	for _, dlt := range dlts {
		dl := dlt.GetDelivery()
		if n := len(dl.GetAttempts()); n != 1+len(DefaultSchedule) {
			t.Errorf("dead delivery %s had %d attempts, want %d", dl.GetId(), n, 1+len(DefaultSchedule))
		}
		if dl.GetStatus() != integrationv1.DeliveryStatus_DELIVERY_STATUS_DEAD || dl.GetNextAttemptTime() != nil {
			t.Errorf("dead letter's delivery = %v", dl)
		}
		failedIDs[dl.GetId()] = true
		ids = append(ids, dlt.GetId())
	}
	if s := getSubT(t, d, sub.GetId()); s.GetBacklog() != 0 {
		t.Errorf("backlog %d after everything resolved", s.GetBacklog())
	}
	// The dead-letter backlog on /metrics is what the store holds.
	if n, age := deadGauges(t, reg); n != float64(len(bad)) || age < 0 || age > 60 {
		t.Errorf("millrace_webhook_dead_letters = %v, oldest %v s; want %d, a few seconds", n, age, len(bad))
	}

	mu.Lock()
	broken = false
	mu.Unlock()
	n, notFound, err := d.ReplayDeadLetters(context.Background(), append(ids, "dlt_unknown"))
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(bad)) || len(notFound) != 1 || notFound[0] != "dlt_unknown" {
		t.Fatalf("replay queued %d, not found %v", n, notFound)
	}
	eventually(t, 5*time.Second, "replayed events processed", func() bool { return len(rc.processedEvents()) == len(good)+len(bad) })
	for _, r := range rc.processedEvents()[len(good):] {
		if !failedIDs[r.webhookID] {
			t.Errorf("replayed event arrived with webhook-id %s, not the id of its failed attempts", r.webhookID)
		}
	}
	if left := deadLetters(t, d, ""); len(left) != 0 {
		t.Errorf("%d dead letters left after replay", len(left))
	}
	if n, age := deadGauges(t, reg); n != 0 || age != 0 {
		t.Errorf("after replay millrace_webhook_dead_letters = %v, oldest %v s; want 0, 0", n, age)
	}
	if _, err := d.ReplayDeadLetter(context.Background(), ids[0]); err == nil {
		t.Error("replaying a dead letter twice succeeded")
	}
}

// One endpoint that never answers does not slow ten healthy ones, and holds
// at most PerSubscription workers.
func TestDeadEndpointDoesNotDelayHealthyOnes(t *testing.T) {
	db, _ := tempStore(t)
	opts := testOptions()
	opts.Timeout = 10 * time.Second // the dead endpoint's first attempts are still hanging when the test ends
	opts.Workers = 16
	opts.PerSubscription = 4
	d := newDispatcher(t, db, opts)

	dead := newReceiver(t, func(*http.Request, string, int) answer { return answer{hangRaw: true} })
	createSub(t, d, dead.url())
	var healthy []*receiver
	for range 10 {
		rc := newReceiver(t, nil)
		_, secret := createSub(t, d, rc.url())
		rc.setSecrets(secret)
		healthy = append(healthy, rc)
	}
	want := makeEvents(subjects("orders", 8), 3)
	consumeAll(t, d, want...)
	began := time.Now()
	start(t, d)

	for _, rc := range healthy {
		eventually(t, 8*time.Second, "healthy receiver served", func() bool { return len(rc.processedEvents()) == len(want) })
		checkExactlyOnceInOrder(t, rc.processedEvents(), want)
	}
	elapsed := time.Since(began)
	if elapsed >= opts.Timeout {
		t.Fatalf("healthy endpoints took %v, as long as the dead one's timeout", elapsed)
	}
	dead.mu.Lock()
	deadMax, deadReqs := dead.maxInflight, len(dead.headers)
	dead.mu.Unlock()
	if deadMax > opts.PerSubscription || deadReqs == 0 {
		t.Errorf("dead endpoint: %d requests, %d at once; want 1..%d at once", deadReqs, deadMax, opts.PerSubscription)
	}
	t.Logf("healthy endpoints done in %v; dead endpoint held %d requests at once", elapsed, deadMax)
}

// The global worker limit holds across subscriptions.
func TestWorkerLimit(t *testing.T) {
	db, _ := tempStore(t)
	opts := testOptions()
	opts.Workers = 3
	d := newDispatcher(t, db, opts)
	var mu sync.Mutex
	inflight, peak := 0, 0
	slow := func(*http.Request, string, int) answer {
		mu.Lock()
		inflight++
		peak = max(peak, inflight)
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		inflight--
		mu.Unlock()
		return answer{code: 200}
	}
	var rcs []*receiver
	for range 4 {
		rc := newReceiver(t, slow)
		_, secret := createSub(t, d, rc.url())
		rc.setSecrets(secret)
		rcs = append(rcs, rc)
	}
	want := makeEvents(subjects("sites", 6), 2)
	consumeAll(t, d, want...)
	start(t, d)
	for _, rc := range rcs {
		eventually(t, 10*time.Second, "all delivered", func() bool { return len(rc.processedEvents()) == len(want) })
	}
	if peak > 3 || peak < 2 {
		t.Errorf("peak concurrency %d, want 2..3 (Workers = 3)", peak)
	}
}

// A subscription failing for DisableAfter is disabled; its events are kept
// (new ones too), nothing is attempted; re-enabling delivers them all in
// order.
func TestDisableAfterFailingAndReEnable(t *testing.T) {
	db, _ := tempStore(t)
	opts := testOptions()
	opts.ScheduleScale = 0.0001 // 0.5ms, 30ms, 180ms, 720ms, 1.8s, ...
	opts.DisableAfter = 300 * time.Millisecond
	d := newDispatcher(t, db, opts)
	d.jitter = func(max time.Duration) time.Duration { return max } // deterministic: no delivery can exhaust first
	var mu sync.Mutex
	down := true
	rc := newReceiver(t, func(*http.Request, string, int) answer {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return answer{code: http.StatusBadGateway}
		}
		return answer{code: http.StatusOK}
	})
	sub, secret := createSub(t, d, rc.url())
	rc.setSecrets(secret)
	first := makeEvents(subjects("quotes", 3), 3)
	consumeAll(t, d, first...)
	start(t, d)

	eventually(t, 5*time.Second, "subscription disabled", func() bool {
		return getSubT(t, d, sub.GetId()).GetStatus() == integrationv1.SubscriptionStatus_SUBSCRIPTION_STATUS_DISABLED
	})
	s := getSubT(t, d, sub.GetId())
	if s.GetConsecutiveFailures() == 0 || s.GetLastSuccessTime() != nil {
		t.Errorf("disabled subscription health: %v", s)
	}
	time.Sleep(50 * time.Millisecond) // let attempts in flight at the switch finish
	before := rc.requestCount()
	more := makeEvents(subjects("quotes", 3), 5)[len(first):] // sequences 4 and 5
	consumeAll(t, d, more...)
	time.Sleep(700 * time.Millisecond)
	if after := rc.requestCount(); after != before {
		t.Fatalf("%d attempts while disabled", after-before)
	}
	if n := len(deadLetters(t, d, "")); n != 0 {
		t.Fatalf("%d dead letters; a disabled subscription keeps its events", n)
	}
	if got := getSubT(t, d, sub.GetId()).GetBacklog(); got != int64(len(first)+len(more)) {
		t.Fatalf("backlog %d, want %d", got, len(first)+len(more))
	}

	mu.Lock()
	down = false
	mu.Unlock()
	if _, err := d.UpdateSubscription(context.Background(), &integrationv1.Subscription{Id: sub.GetId(), Status: integrationv1.SubscriptionStatus_SUBSCRIPTION_STATUS_ACTIVE}); err != nil {
		t.Fatal(err)
	}
	all := append(append(first[:0:0], first...), more...)
	eventually(t, 3*time.Second, "everything delivered after re-enabling", func() bool { return len(rc.processedEvents()) == len(all) })
	checkExactlyOnceInOrder(t, rc.processedEvents(), all)
	eventually(t, time.Second, "backlog drained", func() bool { return getSubT(t, d, sub.GetId()).GetBacklog() == 0 })
	s = getSubT(t, d, sub.GetId())
	if s.GetStatus() != integrationv1.SubscriptionStatus_SUBSCRIPTION_STATUS_ACTIVE || s.GetBacklog() != 0 || s.GetConsecutiveFailures() != 0 || s.GetLastSuccessTime() == nil {
		t.Errorf("after recovery: %v", s)
	}
}

// Paused subscriptions keep their events until resumed.
func TestPausedSubscriptionKeepsEvents(t *testing.T) {
	db, _ := tempStore(t)
	d := newDispatcher(t, db, testOptions())
	rc := newReceiver(t, nil)
	sub, secret := createSub(t, d, rc.url())
	rc.setSecrets(secret)
	start(t, d)
	if _, err := d.UpdateSubscription(context.Background(), &integrationv1.Subscription{Id: sub.GetId(), Status: integrationv1.SubscriptionStatus_SUBSCRIPTION_STATUS_PAUSED}); err != nil {
		t.Fatal(err)
	}
	want := makeEvents(subjects("orders", 2), 2)
	consumeAll(t, d, want...)
	time.Sleep(100 * time.Millisecond)
	if n := rc.requestCount(); n != 0 {
		t.Fatalf("%d requests to a paused subscription", n)
	}
	if _, err := d.UpdateSubscription(context.Background(), &integrationv1.Subscription{Id: sub.GetId(), Status: integrationv1.SubscriptionStatus_SUBSCRIPTION_STATUS_ACTIVE}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "delivered after resume", func() bool { return len(rc.processedEvents()) == len(want) })
	checkExactlyOnceInOrder(t, rc.processedEvents(), want)
}

// Pending deliveries survive a restart: queued with no Run at all, and
// mid-retry.
func TestRestartResumesPendingDeliveries(t *testing.T) {
	path := t.TempDir() + "/integration.db"
	var mu sync.Mutex
	down := true
	rc := newReceiver(t, func(*http.Request, string, int) answer {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return answer{code: http.StatusServiceUnavailable}
		}
		return answer{code: http.StatusOK}
	})
	opts := testOptions()
	opts.ScheduleScale = 0.001 // retries far enough apart that the restart lands mid-series

	db := openStore(t, path)
	d := newDispatcher(t, db, opts)
	sub, secret := createSub(t, d, rc.url())
	rc.setSecrets(secret)
	want := makeEvents(subjects("invoices", 3), 3)
	consumeAll(t, d, want[:4]...) // queued while nothing runs
	stop := start(t, d)
	eventually(t, 3*time.Second, "first attempts made", func() bool { return rc.requestCount() >= 3 })
	consumeAll(t, d, want[4:]...)
	stop()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	down = false
	mu.Unlock()
	db = openStore(t, path)
	defer db.Close()
	d = newDispatcher(t, db, opts)
	if got := getSubT(t, d, sub.GetId()).GetBacklog(); got != int64(len(want)) {
		t.Fatalf("backlog after restart %d, want %d", got, len(want))
	}
	stop = start(t, d)
	defer stop()
	eventually(t, 5*time.Second, "delivered after restart", func() bool { return len(rc.processedEvents()) == len(want) })
	checkExactlyOnceInOrder(t, rc.processedEvents(), want)
	for _, dl := range deliveries(t, d, sub.GetId(), integrationv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED) {
		if len(dl.GetAttempts()) < 1 {
			t.Errorf("delivery %s has no attempts", dl.GetId())
		}
	}
}

// Consume is idempotent per (subscription, event) and honours filters.
func TestConsumeFiltersAndIsIdempotent(t *testing.T) {
	db, _ := tempStore(t)
	d := newDispatcher(t, db, testOptions())
	exact, _ := createSub(t, d, "http://127.0.0.1:1/a", "millrace.events.v1.CreditLimitChanged")
	prefix, _ := createSub(t, d, "http://127.0.0.1:1/b", "millrace.events.v1.Credit*")
	other, _ := createSub(t, d, "http://127.0.0.1:1/c", "millrace.events.v1.Order*")
	every, _ := createSub(t, d, "http://127.0.0.1:1/d")
	e := event("customers/cus_1", 1)
	for range 3 {
		consumeAll(t, d, e)
	}
	for _, tt := range []struct {
		sub  *integrationv1.Subscription
		want int
	}{{exact, 1}, {prefix, 1}, {other, 0}, {every, 1}} {
		got := deliveries(t, d, tt.sub.GetId(), integrationv1.DeliveryStatus_DELIVERY_STATUS_PENDING)
		if len(got) != tt.want {
			t.Errorf("subscription %v: %d pending deliveries, want %d", tt.sub.GetEventTypes(), len(got), tt.want)
		}
		if s := getSubT(t, d, tt.sub.GetId()); s.GetBacklog() != int64(tt.want) {
			t.Errorf("subscription %v: backlog %d, want %d", tt.sub.GetEventTypes(), s.GetBacklog(), tt.want)
		}
	}
}

// ConsumeBatch queues a batch as Consume would queue its events one by one:
// once per (subscription, event), in order, with the backlog counted, also
// when a batch is delivered again and overlaps what is queued.
func TestConsumeBatch(t *testing.T) {
	db, _ := tempStore(t)
	d := newDispatcher(t, db, testOptions())
	rc := newReceiver(t, nil)
	every, secret := createSub(t, d, rc.url())
	rc.setSecrets(secret)
	other, _ := createSub(t, d, "http://127.0.0.1:1/c", "millrace.events.v1.Order*")
	evs := makeEvents(subjects("customers/cus", 3), 4)
	for _, batch := range [][]*eventsv1.Envelope{evs[:5], evs[3:9], evs[3:], {evs[0], evs[0]}} {
		if err := d.ConsumeBatch(t.Context(), batch); err != nil {
			t.Fatalf("ConsumeBatch: %v", err)
		}
	}
	if got := len(deliveries(t, d, every.GetId(), integrationv1.DeliveryStatus_DELIVERY_STATUS_PENDING)); got != len(evs) {
		t.Errorf("%d pending deliveries, want one per event: %d", got, len(evs))
	}
	if s := getSubT(t, d, every.GetId()); s.GetBacklog() != int64(len(evs)) {
		t.Errorf("backlog %d, want %d", s.GetBacklog(), len(evs))
	}
	if s := getSubT(t, d, other.GetId()); s.GetBacklog() != 0 {
		t.Errorf("backlog of a subscription no event matches: %d, want 0", s.GetBacklog())
	}
	start(t, d)
	eventually(t, 5*time.Second, "every event delivered", func() bool { return len(rc.processedEvents()) == len(evs) })
	checkExactlyOnceInOrder(t, rc.processedEvents(), evs)
}

// The body is the CloudEvent in structured mode and the headers carry the
// signature, trace and correlation.
func TestRequestFormat(t *testing.T) {
	db, _ := tempStore(t)
	d := newDispatcher(t, db, testOptions())
	rc := newReceiver(t, nil)
	sub, secret := createSub(t, d, rc.url())
	rc.setSecrets(secret)
	e := event("customers/cus_42", 7)
	consumeAll(t, d, e)
	start(t, d)
	eventually(t, 3*time.Second, "delivered", func() bool { return len(rc.processedEvents()) == 1 })

	rc.mu.Lock()
	h, body := rc.headers[0], rc.bodies[0]
	rc.mu.Unlock()
	dls := deliveries(t, d, sub.GetId(), 0)
	if h.Get("webhook-id") != dls[0].GetId() {
		t.Errorf("webhook-id %q, want the delivery id %q", h.Get("webhook-id"), dls[0].GetId())
	}
	for name, want := range map[string]string{
		"Content-Type":     ContentType,
		"traceparent":      e.GetTraceparent(),
		"X-Correlation-Id": e.GetCorrelationId(),
	} {
		if got := h.Get(name); got != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
	if ts := h.Get("webhook-timestamp"); len(ts) != 10 {
		t.Errorf("webhook-timestamp %q is not unix seconds", ts)
	}
	if sig := h.Get("webhook-signature"); !strings.HasPrefix(sig, "v1,") || strings.Contains(sig, " ") {
		t.Errorf("webhook-signature %q: want one v1 signature", sig)
	}
	var ce map[string]any
	if err := json.Unmarshal(body, &ce); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"specversion":     "1.0",
		"id":              e.GetId(),
		"source":          "/millrace/customer",
		"type":            "millrace.events.v1.CreditLimitChanged",
		"subject":         "customers/cus_42",
		"time":            e.GetTime().AsTime().Format(time.RFC3339Nano),
		"datacontenttype": "application/json",
		"data":            map[string]any{"customerId": "customers/cus_42"},
		"correlationid":   e.GetCorrelationId(),
		"causationid":     e.GetCausationId(),
		"traceparent":     e.GetTraceparent(),
		"sequence":        float64(7),
	}
	for k, v := range want {
		g, _ := json.Marshal(ce[k])
		w, _ := json.Marshal(v)
		if string(g) != string(w) {
			t.Errorf("body %s = %s, want %s", k, g, w)
		}
	}
	if len(ce) != len(want) {
		t.Errorf("body has %d attributes, want %d: %s", len(ce), len(want), body)
	}
}

// A rotated secret signs alongside the new one for the overlap, then stops.
func TestSecretRotationSignsWithBoth(t *testing.T) {
	db, _ := tempStore(t)
	opts := testOptions()
	opts.SecretOverlap = 300 * time.Millisecond
	d := newDispatcher(t, db, opts)
	rc := newReceiver(t, nil)
	sub, oldSecret := createSub(t, d, rc.url())
	newSecret, expire, err := d.RotateSecret(context.Background(), sub.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if newSecret == oldSecret || time.Until(expire) > opts.SecretOverlap {
		t.Fatalf("rotation returned %q expiring %v", newSecret, expire)
	}
	rc.setSecrets(newSecret)
	dl, err := d.SendTestEvent(context.Background(), sub.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if dl.GetStatus() != integrationv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED {
		t.Fatalf("test event: %v", dl)
	}
	rc.mu.Lock()
	h, body := rc.headers[0], rc.bodies[0]
	rc.mu.Unlock()
	if n := len(strings.Fields(h.Get("webhook-signature"))); n != 2 {
		t.Fatalf("%d signatures during the overlap, want 2", n)
	}
	for _, s := range []string{oldSecret, newSecret} {
		if err := verify.Verify([]string{s}, h, body, time.Now(), 0); err != nil {
			t.Errorf("during the overlap a receiver with one secret fails: %v", err)
		}
	}
	time.Sleep(time.Until(expire) + 10*time.Millisecond)
	if _, err := d.SendTestEvent(context.Background(), sub.GetId()); err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	h, body = rc.headers[1], rc.bodies[1]
	rc.mu.Unlock()
	if n := len(strings.Fields(h.Get("webhook-signature"))); n != 1 {
		t.Fatalf("%d signatures after the overlap, want 1", n)
	}
	if err := verify.Verify([]string{oldSecret}, h, body, time.Now(), 0); err == nil {
		t.Error("the retired secret still verifies")
	}
}

// While a subscription is failing it is probed with one attempt at a time,
// so a dead endpoint holds a single worker; a success restores its share.
func TestFailingEndpointIsProbedOneAtATime(t *testing.T) {
	db, _ := tempStore(t)
	d := newDispatcher(t, db, testOptions())
	var (
		mu          sync.Mutex
		firstFailed time.Time
		inflight    int
		peakLater   int // peak concurrency of requests begun well after the first failure
		recovered   bool
		peakHealthy int
	)
	rc := newReceiver(t, func(*http.Request, string, int) answer {
		mu.Lock()
		inflight++
		if !firstFailed.IsZero() && time.Since(firstFailed) > 150*time.Millisecond && !recovered {
			peakLater = max(peakLater, inflight)
		}
		if recovered {
			peakHealthy = max(peakHealthy, inflight)
		}
		ok := recovered
		mu.Unlock()
		time.Sleep(10 * time.Millisecond)
		mu.Lock()
		inflight--
		if !ok && firstFailed.IsZero() {
			firstFailed = time.Now()
		}
		mu.Unlock()
		if ok {
			return answer{code: 200}
		}
		return answer{code: 500}
	})
	sub, secret := createSub(t, d, rc.url())
	rc.setSecrets(secret)
	want := makeEvents(subjects("orders", 8), 2)
	consumeAll(t, d, want...)
	d.jitter = func(max time.Duration) time.Duration { return max }
	start(t, d)
	time.Sleep(600 * time.Millisecond)
	mu.Lock()
	recovered = true
	mu.Unlock()
	eventually(t, 10*time.Second, "delivered after recovery", func() bool { return getSubT(t, d, sub.GetId()).GetBacklog() == 0 })
	mu.Lock()
	defer mu.Unlock()
	if peakLater != 1 {
		t.Errorf("while failing, %d attempts at once; want 1", peakLater)
	}
	if peakHealthy < 2 {
		t.Errorf("after recovering, at most %d attempts at once; want up to %d", peakHealthy, DefaultPerSubscription)
	}
}

// deadGauges gathers the dead-letter backlog gauges from reg.
func deadGauges(t *testing.T, reg *prometheus.Registry) (count, oldestSeconds float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	count, oldestSeconds = -1, -1
	for _, mf := range mfs {
		switch mf.GetName() {
		case "millrace_webhook_dead_letters":
			count = mf.GetMetric()[0].GetGauge().GetValue()
		case "millrace_webhook_dead_letters_oldest_seconds":
			oldestSeconds = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return count, oldestSeconds
}
