package feed

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/ids"
	"github.com/millrace/millrace/internal/storage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)

// clock is a settable time source shared by the log and the test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// testSchema is the part of the integration store the feed needs.
var testSchema = storage.Schema{Name: "integration", Version: 1, Buckets: Buckets}

func openDB(t *testing.T) *storage.DB {
	t.Helper()
	db, err := storage.Open(filepath.Join(t.TempDir(), "integration.db"), testSchema, storage.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func openLog(t *testing.T, c *clock) *Log {
	t.Helper()
	l, err := NewLog(openDB(t), Options{Retention: 24 * time.Hour, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

const (
	typeAccepted  = "millrace.events.v1.OrderAccepted"
	typeHeld      = "millrace.events.v1.OrderHeld"
	typeInvoice   = "millrace.events.v1.InvoicePosted"
	typeCustomer  = "millrace.events.v1.CustomerCreated"
	typeHeldLater = "millrace.events.v1.OrderHeldAgain"
)

func event(typ, region string) *eventsv1.Envelope {
	return &eventsv1.Envelope{Id: ids.New("evt"), Source: "/millrace/order", Type: typ, Subject: "orders/ord-1", Time: timestamppb.New(t0), SpecVersion: events.SpecVersion, Sequence: 1, Region: region}
}

func consume(t *testing.T, l *Log, envs ...*eventsv1.Envelope) {
	t.Helper()
	for _, env := range envs {
		if err := l.Consume(context.Background(), env); err != nil {
			t.Fatal(err)
		}
	}
}

func idsOf(page []*integrationv1.FeedEvent) []string {
	out := make([]string, len(page))
	for i, fe := range page {
		out[i] = fe.GetEvent().GetId()
	}
	return out
}

func envIDs(envs []*eventsv1.Envelope) []string {
	out := make([]string, len(envs))
	for i, e := range envs {
		out[i] = e.GetId()
	}
	return out
}

// listAll follows cursors from after until the feed has nothing newer.
func listAll(t *testing.T, ctx context.Context, l *Log, after string, types []string, size int) (got []*integrationv1.FeedEvent, pages int, last string) {
	t.Helper()
	for {
		page, next, err := l.List(ctx, after, types, size)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		got = append(got, page...)
		if next == after {
			return got, pages, next
		}
		after = next
	}
}

func TestListPages(t *testing.T) {
	l := openLog(t, &clock{now: t0})
	var envs []*eventsv1.Envelope
	for i := range 25 {
		envs = append(envs, event([]string{typeAccepted, typeHeld, typeInvoice}[i%3], ""))
	}
	consume(t, l, envs...)

	got, pages, last := listAll(t, t.Context(), l, "", nil, 10)
	if !slices.Equal(idsOf(got), envIDs(envs)) {
		t.Fatalf("paging returned %d events, want all %d in commit order", len(got), len(envs))
	}
	if pages != 4 { // 10, 10, 5, and the empty page that shows the end
		t.Errorf("took %d pages, want 4", pages)
	}
	if last != got[len(got)-1].GetCursor() {
		t.Errorf("final cursor %q is not the last event's %q", last, got[len(got)-1].GetCursor())
	}
	for i, fe := range got {
		if !proto.Equal(fe.GetEvent(), envs[i]) {
			t.Fatalf("event %d = %v, want %v", i, fe.GetEvent(), envs[i])
		}
	}

	t.Run("an event's cursor continues after it", func(t *testing.T) {
		page, _, err := l.List(t.Context(), got[11].GetCursor(), nil, 3)
		if err != nil {
			t.Fatal(err)
		}
		if want := envIDs(envs[12:15]); !slices.Equal(idsOf(page), want) {
			t.Errorf("after event 12: %q, want %q", idsOf(page), want)
		}
	})
	t.Run("an empty feed answers with the cursor it was given", func(t *testing.T) {
		empty := openLog(t, &clock{now: t0})
		page, next, err := empty.List(t.Context(), "", nil, 10)
		if err != nil || len(page) != 0 || next != "" {
			t.Errorf("List on an empty feed = %d events, next %q, %v; want none, \"\"", len(page), next, err)
		}
	})
	t.Run("page size is capped", func(t *testing.T) {
		page, _, err := l.List(t.Context(), "", nil, 5000)
		if err != nil || len(page) != 25 {
			t.Errorf("List(5000) = %d events, %v", len(page), err)
		}
	})
	t.Run("cursors survive reopening the store", func(t *testing.T) {
		again, err := NewLog(l.db, Options{Retention: 24 * time.Hour, Now: l.now})
		if err != nil {
			t.Fatal(err)
		}
		page, _, err := again.List(t.Context(), got[23].GetCursor(), nil, 10)
		if err != nil || !slices.Equal(idsOf(page), envIDs(envs[24:])) {
			t.Errorf("after reopening: %q, %v", idsOf(page), err)
		}
	})
}

func TestListTypeFilters(t *testing.T) {
	l := openLog(t, &clock{now: t0})
	accepted, held, invoice, customer, heldLater := event(typeAccepted, ""), event(typeHeld, ""), event(typeInvoice, ""), event(typeCustomer, ""), event(typeHeldLater, "")
	consume(t, l, accepted, held, invoice, customer, heldLater)
	tests := []struct {
		name  string
		types []string
		want  []*eventsv1.Envelope
	}{
		{"none is every type", nil, []*eventsv1.Envelope{accepted, held, invoice, customer, heldLater}},
		{"exact", []string{typeHeld}, []*eventsv1.Envelope{held}},
		{"prefix", []string{"millrace.events.v1.Order*"}, []*eventsv1.Envelope{accepted, held, heldLater}},
		{"several", []string{typeInvoice, "millrace.events.v1.Customer*"}, []*eventsv1.Envelope{invoice, customer}},
		{"star", []string{"*"}, []*eventsv1.Envelope{accepted, held, invoice, customer, heldLater}},
		{"nothing matches", []string{"millrace.events.v2.*"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, last := listAll(t, t.Context(), l, "", tt.types, 2)
			if !slices.Equal(idsOf(got), envIDs(tt.want)) {
				t.Errorf("types %q: %q, want %q", tt.types, idsOf(got), envIDs(tt.want))
			}
			// Skipped events move the cursor too, so the next poll does not
			// walk past them again.
			if last == "" {
				t.Error("the cursor did not move past the skipped events")
			}
		})
	}
	for _, bad := range [][]string{{""}, {"millrace.*.OrderHeld"}, {"a b"}} {
		var ite *InvalidTypeError
		if _, _, err := l.List(t.Context(), "", bad, 10); !errors.As(err, &ite) {
			t.Errorf("types %q: err = %v, want *InvalidTypeError", bad, err)
		}
	}
}

func TestListSkipsBoundedly(t *testing.T) {
	l := openLog(t, &clock{now: t0})
	// More non-matching events than one call walks past, then a match.
	err := l.db.Update(func(tx *bbolt.Tx) error {
		for range maxScan + 10 {
			env := event(typeInvoice, "")
			data, _ := proto.Marshal(env)
			if _, err := l.appendTx(tx, env, data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	held := event(typeHeld, "")
	consume(t, l, held)
	page, next, err := l.List(t.Context(), "", []string{typeHeld}, 10)
	if err != nil || len(page) != 0 || next == "" {
		t.Fatalf("first call = %d events, next %q, %v; want a short page that moves the cursor", len(page), next, err)
	}
	page, _, err = l.List(t.Context(), next, []string{typeHeld}, 10)
	if err != nil || !slices.Equal(idsOf(page), []string{held.GetId()}) {
		t.Errorf("second call = %q, %v; want the matching event", idsOf(page), err)
	}
}

func TestConsumeDeduplicates(t *testing.T) {
	l := openLog(t, &clock{now: t0})
	e1, e2 := event(typeAccepted, ""), event(typeHeld, "")
	consume(t, l, e1, e1, e2, e1, e2) // at-least-once redelivery
	got, _, _ := listAll(t, t.Context(), l, "", nil, 10)
	if want := envIDs([]*eventsv1.Envelope{e1, e2}); !slices.Equal(idsOf(got), want) {
		t.Errorf("feed holds %q, want each event once: %q", idsOf(got), want)
	}
	t.Run("an envelope without id is dropped, not retried", func(t *testing.T) {
		if err := l.Consume(t.Context(), &eventsv1.Envelope{Type: typeHeld}); err != nil {
			t.Errorf("Consume = %v, want nil", err)
		}
	})
}

func TestConsumeBatch(t *testing.T) {
	l := openLog(t, &clock{now: t0})
	e1, e2, e3, e4 := event(typeAccepted, ""), event(typeHeld, ""), event(typeInvoice, ""), event(typeCustomer, "")
	consume(t, l, e1)
	first, _, err := l.List(t.Context(), "", nil, 1)
	if err != nil || len(first) != 1 {
		t.Fatalf("List = %v, %v", first, err)
	}
	watched := make(chan []string, 1)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		var got []string
		_ = l.Watch(ctx, first[0].GetCursor(), nil, func(fe *integrationv1.FeedEvent) error {
			got = append(got, fe.GetEvent().GetId())
			if len(got) == 3 {
				watched <- got
			}
			return nil
		})
	}()
	// A redelivered batch overlaps what the feed holds and repeats itself;
	// an envelope without id is dropped, not retried.
	batch := []*eventsv1.Envelope{e1, e2, e3, e2, {Type: typeHeld}, e4}
	if err := l.ConsumeBatch(t.Context(), batch); err != nil {
		t.Fatalf("ConsumeBatch = %v", err)
	}
	if err := l.ConsumeBatch(t.Context(), batch); err != nil {
		t.Fatalf("ConsumeBatch again = %v", err)
	}
	got, _, _ := listAll(t, t.Context(), l, "", nil, 10)
	if want := envIDs([]*eventsv1.Envelope{e1, e2, e3, e4}); !slices.Equal(idsOf(got), want) {
		t.Errorf("feed holds %q, want each event once, in batch order: %q", idsOf(got), want)
	}
	select {
	case ids := <-watched:
		if want := envIDs([]*eventsv1.Envelope{e2, e3, e4}); !slices.Equal(ids, want) {
			t.Errorf("watcher got %q, want %q", ids, want)
		}
	case <-time.After(5 * time.Second):
		t.Error("the watcher did not get the batch")
	}
}

func TestRetention(t *testing.T) {
	c := &clock{now: t0}
	l := openLog(t, c)
	old1, old2 := event(typeAccepted, ""), event(typeHeld, "")
	consume(t, l, old1, old2)
	first, _, _ := l.List(t.Context(), "", nil, 10)
	c.Advance(25 * time.Hour)
	fresh := event(typeInvoice, "")
	consume(t, l, fresh)

	n, err := l.Sweep(c.Now())
	if err != nil || n != 2 {
		t.Fatalf("Sweep = %d, %v; want the 2 events past retention", n, err)
	}
	if n, err := l.Sweep(c.Now()); err != nil || n != 0 {
		t.Errorf("second Sweep = %d, %v; want nothing left to delete", n, err)
	}

	t.Run("a cursor before the oldest retained event is refused", func(t *testing.T) {
		_, _, err := l.List(t.Context(), first[0].GetCursor(), nil, 10)
		var expired *CursorExpiredError
		if !errors.As(err, &expired) {
			t.Fatalf("err = %v, want *CursorExpiredError", err)
		}
		// The oldest cursor continues with the oldest retained event.
		page, _, err := l.List(t.Context(), expired.Oldest, nil, 10)
		if err != nil || !slices.Equal(idsOf(page), []string{fresh.GetId()}) {
			t.Errorf("from the oldest cursor: %q, %v; want the retained event", idsOf(page), err)
		}
	})
	t.Run("the cursor of the last deleted event still works: nothing after it is gone", func(t *testing.T) {
		page, _, err := l.List(t.Context(), first[1].GetCursor(), nil, 10)
		if err != nil || !slices.Equal(idsOf(page), []string{fresh.GetId()}) {
			t.Errorf("%q, %v; want the retained event", idsOf(page), err)
		}
	})
	t.Run("an empty cursor starts at the oldest retained event", func(t *testing.T) {
		page, _, err := l.List(t.Context(), "", nil, 10)
		if err != nil || !slices.Equal(idsOf(page), []string{fresh.GetId()}) {
			t.Errorf("%q, %v", idsOf(page), err)
		}
	})
	t.Run("a watcher behind retention is refused too", func(t *testing.T) {
		err := l.Watch(t.Context(), first[0].GetCursor(), nil, func(*integrationv1.FeedEvent) error { return nil })
		var expired *CursorExpiredError
		if !errors.As(err, &expired) {
			t.Errorf("Watch err = %v, want *CursorExpiredError", err)
		}
	})
	t.Run("the sweep works through a large backlog in batches", func(t *testing.T) {
		for range sweepBatch + 5 {
			consume(t, l, event(typeHeld, ""))
		}
		c.Advance(25 * time.Hour)
		if n, err := l.Sweep(c.Now()); err != nil || n != sweepBatch+6 {
			t.Errorf("Sweep = %d, %v; want %d", n, err, sweepBatch+6)
		}
		page, next, err := l.List(t.Context(), "", nil, 10)
		if err != nil || len(page) != 0 || next != "" {
			t.Errorf("after sweeping everything: %d events, next %q, %v", len(page), next, err)
		}
	})
}

func TestInvalidCursors(t *testing.T) {
	l := openLog(t, &clock{now: t0})
	consume(t, l, event(typeAccepted, ""), event(typeHeld, ""))
	page, _, err := l.List(t.Context(), "", nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	good := page[0].GetCursor()
	other := openLog(t, &clock{now: t0})
	consume(t, other, event(typeAccepted, ""))
	foreign, _, _ := other.List(t.Context(), "", nil, 10)

	flip := []byte(good)
	flip[5] ^= 0x01
	if flip[5] == '-' || flip[5] == '_' {
		flip[5] = 'A'
	}
	tests := []struct{ name, cursor string }{
		{"altered", string(flip)},
		{"truncated", good[:len(good)-2]},
		{"extended", good + "AA"},
		{"not base64", "not a cursor!"},
		{"another feed's", foreign[0].GetCursor()},
		{"beyond the newest event", encodeCursor(l.key, 99)},
		{"unknown version", func() string {
			raw, _ := cursorEncoding.DecodeString(good)
			raw[0] = 2
			return cursorEncoding.EncodeToString(raw)
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ice *InvalidCursorError
			if _, _, err := l.List(t.Context(), tt.cursor, nil, 10); !errors.As(err, &ice) {
				t.Errorf("List(after=%q) err = %v, want *InvalidCursorError", tt.cursor, err)
			}
		})
	}
}

func TestRegionScope(t *testing.T) {
	l := openLog(t, &clock{now: t0})
	eu, us, global := event(typeAccepted, "eu"), event(typeAccepted, "us"), event(typeCustomer, "")
	consume(t, l, eu, us, global)
	tests := []struct {
		name string
		ctx  context.Context
		want []*eventsv1.Envelope
	}{
		{"an unscoped key sees every region", auth.WithPrincipal(t.Context(), auth.Principal{KeyID: "k1"}), []*eventsv1.Envelope{eu, us, global}},
		{"an EU key sees the EU and regionless events", auth.WithPrincipal(t.Context(), auth.Principal{KeyID: "k2", Region: "eu"}), []*eventsv1.Envelope{eu, global}},
		{"internal callers see everything", t.Context(), []*eventsv1.Envelope{eu, us, global}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, _ := listAll(t, tt.ctx, l, "", nil, 10)
			if !slices.Equal(idsOf(got), envIDs(tt.want)) {
				t.Errorf("%q, want %q", idsOf(got), envIDs(tt.want))
			}
		})
	}
}

func TestWatch(t *testing.T) {
	l := openLog(t, &clock{now: t0})
	backlog := []*eventsv1.Envelope{event(typeAccepted, ""), event(typeInvoice, ""), event(typeHeld, "")}
	consume(t, l, backlog...)
	page, _, _ := l.List(t.Context(), "", nil, 10)

	got := make(chan *integrationv1.FeedEvent, 10)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- l.Watch(ctx, page[0].GetCursor(), []string{"millrace.events.v1.Order*"}, func(fe *integrationv1.FeedEvent) error {
			got <- fe
			return nil
		})
	}()
	next := func() *integrationv1.FeedEvent {
		t.Helper()
		select {
		case fe := <-got:
			return fe
		case <-time.After(5 * time.Second):
			t.Fatal("no event from Watch")
			return nil
		}
	}
	if fe := next(); fe.GetEvent().GetId() != backlog[2].GetId() {
		t.Errorf("first watched event = %s, want the matching backlog event %s", fe.GetEvent().GetId(), backlog[2].GetId())
	}
	live := []*eventsv1.Envelope{event(typeInvoice, ""), event(typeHeldLater, ""), event(typeAccepted, "")}
	for _, env := range live {
		consume(t, l, env)
	}
	for _, want := range []*eventsv1.Envelope{live[1], live[2]} {
		if fe := next(); fe.GetEvent().GetId() != want.GetId() {
			t.Errorf("watched %s, want %s", fe.GetEvent().GetId(), want.GetId())
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch ended with %v, want context.Canceled", err)
	}

	t.Run("an empty cursor starts with new events", func(t *testing.T) {
		got := make(chan string, 1)
		done := make(chan error, 1)
		go func() {
			done <- l.Watch(t.Context(), "", nil, func(fe *integrationv1.FeedEvent) error {
				got <- fe.GetEvent().GetId()
				return errors.New("enough")
			})
		}()
		// Whenever the watcher took the head, what it sends first must be
		// one of the events consumed after it started, never the backlog.
		fresh := map[string]bool{}
		deadline := time.After(5 * time.Second)
		for {
			env := event(typeHeld, "")
			fresh[env.GetId()] = true
			consume(t, l, env)
			select {
			case id := <-got:
				if !fresh[id] {
					t.Errorf("first event from an empty cursor = %s, from the backlog", id)
				}
				if err := <-done; err == nil || err.Error() != "enough" {
					t.Errorf("Watch ended with %v, want the send error", err)
				}
				return
			case <-time.After(20 * time.Millisecond):
			case <-deadline:
				t.Fatal("no event from Watch")
			}
		}
	})
}

func TestRecordRoundTrip(t *testing.T) {
	r := record{At: t0, ID: "evt_1", Type: typeHeld, Region: "eu", Env: []byte{1, 2, 3}}
	got, err := decodeRecord(encodeRecord(r))
	if err != nil || !got.At.Equal(r.At) || got.ID != r.ID || got.Type != r.Type || got.Region != r.Region || string(got.Env) != string(r.Env) {
		t.Errorf("round trip = %+v, %v; want %+v", got, err, r)
	}
}

func TestRetentionText(t *testing.T) {
	for d, want := range map[time.Duration]string{24 * time.Hour: "1 day", DefaultRetention: "30 days", 90 * time.Minute: "1h30m0s"} {
		if got := retentionText(d); got != want {
			t.Errorf("retentionText(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestRangeVisitsTheWindowOldestFirst(t *testing.T) {
	db := openDB(t)
	base := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	l, err := NewLog(db, Options{Now: func() time.Time { return base }})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		env := &eventsv1.Envelope{Id: fmt.Sprintf("evt_%d", i), Type: "millrace.events.v1.OrderAccepted", Time: timestamppb.New(base.Add(time.Duration(i) * time.Hour))}
		if err := l.Consume(context.Background(), env); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	err = l.Range(context.Background(), base.Add(time.Hour), base.Add(3*time.Hour), func(env *eventsv1.Envelope) error {
		got = append(got, env.GetId())
		return nil
	})
	if err != nil || strings.Join(got, ",") != "evt_1,evt_2" {
		t.Fatalf("Range = %v, %v; want evt_1,evt_2", got, err)
	}
}
