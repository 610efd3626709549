package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	"github.com/millrace/millrace/internal/ids"
	"github.com/millrace/millrace/internal/storage"
	"github.com/millrace/millrace/internal/webhooks/verify"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testSchema is the integration store as cmd builds it: the webhook buckets
// added to its own.
var testSchema = storage.Schema{Name: "integration", Version: 1, Buckets: Buckets}

var testKey = []byte("0123456789abcdef0123456789abcdef")

func openStore(t *testing.T, path string) *storage.DB {
	t.Helper()
	db, err := storage.Open(path, testSchema, storage.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func tempStore(t *testing.T) (*storage.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "integration.db")
	db := openStore(t, path)
	t.Cleanup(func() { db.Close() })
	return db, path
}

// testOptions are fast: the whole retry schedule takes about a second.
func testOptions() Options {
	return Options{
		SecretKey:     testKey,
		AllowPrivate:  true,
		Timeout:       300 * time.Millisecond,
		ScheduleScale: 0.00001,
		DisableAfter:  time.Hour,
	}
}

func newDispatcher(t *testing.T, db *storage.DB, opts Options) *Dispatcher {
	t.Helper()
	d, err := New(db, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.transport.CloseIdleConnections)
	return d
}

// start runs d until the returned stop is called (or the test ends).
func start(t *testing.T, d *Dispatcher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// event returns the seq-th event of an aggregate.
func event(subject string, seq uint64) *eventsv1.Envelope {
	data, _ := anypb.New(&eventsv1.CreditLimitChanged{CustomerId: subject})
	return &eventsv1.Envelope{
		Id:            ids.New("evt"),
		Source:        "/millrace/customer",
		Type:          "millrace.events.v1.CreditLimitChanged",
		Subject:       subject,
		Time:          timestamppb.Now(),
		SpecVersion:   "1.0",
		CorrelationId: "corr-" + subject,
		CausationId:   "cause-" + strconv.FormatUint(seq, 10),
		Traceparent:   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		Sequence:      seq,
		Data:          data,
	}
}

// consumeAll feeds events to d as the bus would: in order, one at a time.
func consumeAll(t *testing.T, d *Dispatcher, envs ...*eventsv1.Envelope) {
	t.Helper()
	for _, e := range envs {
		if err := d.Consume(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
}

// answer is what a test receiver does with one request.
type answer struct {
	code       int
	retryAfter string
	location   string
	hang       bool // process, then never answer (the client times out)
	hangRaw    bool // never answer and do not process
}

// received is one event a receiver processed (first time a webhook-id was
// seen with a valid signature).
type received struct {
	webhookID string
	id        string
	subject   string
	sequence  uint64
	at        time.Time
}

// receiver is a CRM-side endpoint: it verifies signatures, de-duplicates by
// webhook-id, and records what it processed.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	decide func(r *http.Request, webhookID string, attempt int) answer

	mu          sync.Mutex
	secrets     []string
	attempts    map[string]int         // per webhook-id
	attemptLog  map[string][]time.Time // per webhook-id
	processed   []received
	seen        map[string]bool
	badSig      int
	inflight    int
	maxInflight int
	headers     []http.Header
	bodies      [][]byte
	paths       map[string]int
	release     chan struct{}
}

func newReceiver(t *testing.T, decide func(r *http.Request, webhookID string, attempt int) answer) *receiver {
	t.Helper()
	rc := &receiver{t: t, decide: decide, attempts: map[string]int{}, attemptLog: map[string][]time.Time{}, paths: map[string]int{}, seen: map[string]bool{}, release: make(chan struct{})}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(func() {
		close(rc.release)
		rc.srv.CloseClientConnections()
		rc.srv.Close()
	})
	return rc
}

func (rc *receiver) url() string { return rc.srv.URL + "/hooks/millrace" }

func (rc *receiver) setSecrets(s ...string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.secrets = s
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id := r.Header.Get(verify.HeaderID)
	rc.mu.Lock()
	rc.inflight++
	rc.maxInflight = max(rc.maxInflight, rc.inflight)
	rc.attempts[id]++
	n := rc.attempts[id]
	rc.attemptLog[id] = append(rc.attemptLog[id], time.Now())
	rc.headers = append(rc.headers, r.Header.Clone())
	rc.bodies = append(rc.bodies, body)
	rc.paths[r.URL.Path]++
	secrets := rc.secrets
	rc.mu.Unlock()
	defer func() {
		rc.mu.Lock()
		rc.inflight--
		rc.mu.Unlock()
	}()
	a := answer{code: http.StatusOK}
	if rc.decide != nil {
		a = rc.decide(r, id, n)
	}
	if a.hangRaw {
		rc.wait(r)
		return
	}
	if a.code >= 200 && a.code < 300 || a.hang {
		if err := verify.Verify(secrets, r.Header, body, time.Now(), 0); err != nil {
			rc.mu.Lock()
			rc.badSig++
			rc.mu.Unlock()
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		rc.process(id, body)
	}
	if a.hang {
		rc.wait(r)
		return
	}
	if a.retryAfter != "" {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	if a.location != "" {
		w.Header().Set("Location", a.location)
	}
	w.WriteHeader(a.code)
}

func (rc *receiver) wait(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-rc.release:
	}
}

// process applies an event once per webhook-id, as a CRM would.
func (rc *receiver) process(webhookID string, body []byte) {
	var ce struct {
		ID       string `json:"id"`
		Subject  string `json:"subject"`
		Sequence uint64 `json:"sequence"`
	}
	if err := json.Unmarshal(body, &ce); err != nil {
		rc.t.Errorf("receiver: body is not JSON: %v", err)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.seen[webhookID] {
		return
	}
	rc.seen[webhookID] = true
	rc.processed = append(rc.processed, received{webhookID: webhookID, id: ce.ID, subject: ce.Subject, sequence: ce.Sequence, at: time.Now()})
}

func (rc *receiver) processedEvents() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.processed...)
}

func (rc *receiver) requestCount() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.headers)
}

// checkExactlyOnceInOrder asserts every event was processed exactly once
// and, per subject, in sequence order.
func checkExactlyOnceInOrder(t *testing.T, got []received, want []*eventsv1.Envelope) {
	t.Helper()
	byID := map[string]int{}
	for _, r := range got {
		byID[r.id]++
	}
	for _, e := range want {
		if byID[e.GetId()] != 1 {
			t.Errorf("event %s (%s #%d) processed %d times, want once", e.GetId(), e.GetSubject(), e.GetSequence(), byID[e.GetId()])
		}
	}
	if len(got) != len(want) {
		t.Errorf("processed %d events, want %d", len(got), len(want))
	}
	last := map[string]uint64{}
	for _, r := range got {
		if r.sequence != last[r.subject]+1 {
			t.Errorf("subject %s: event #%d processed after #%d", r.subject, r.sequence, last[r.subject])
		}
		last[r.subject] = r.sequence
	}
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func createSub(t *testing.T, d *Dispatcher, url string, types ...string) (*integrationv1.Subscription, string) {
	t.Helper()
	sub, secret, err := d.CreateSubscription(context.Background(), &integrationv1.Subscription{Url: url, EventTypes: types, Description: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return sub, secret
}

func getSubT(t *testing.T, d *Dispatcher, id string) *integrationv1.Subscription {
	t.Helper()
	s, err := d.GetSubscription(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func deliveries(t *testing.T, d *Dispatcher, subID string, st integrationv1.DeliveryStatus) []*integrationv1.Delivery {
	t.Helper()
	var out []*integrationv1.Delivery
	token := ""
	for {
		page, next, err := d.ListDeliveries(context.Background(), subID, st, 500, token)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page...)
		if next == "" {
			return out
		}
		token = next
	}
}

func deadLetters(t *testing.T, d *Dispatcher, subID string) []*integrationv1.DeadLetter {
	t.Helper()
	var out []*integrationv1.DeadLetter
	token := ""
	for {
		page, next, err := d.ListDeadLetters(context.Background(), subID, 500, token)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page...)
		if next == "" {
			return out
		}
		token = next
	}
}

// makeEvents makes n events for each of the subjects, interleaved as a busy
// system would commit them.
func makeEvents(subjects []string, n int) []*eventsv1.Envelope {
	var out []*eventsv1.Envelope
	for seq := 1; seq <= n; seq++ {
		for _, s := range subjects {
			out = append(out, event(s, uint64(seq)))
		}
	}
	return out
}

func subjects(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s/%02d", prefix, i)
	}
	sort.Strings(out)
	return out
}
