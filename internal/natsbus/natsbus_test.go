package natsbus_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/events/bustest"
	"github.com/millrace/millrace/internal/ids"
	"github.com/millrace/millrace/internal/natsbus"
)

// runID keeps this run's streams apart from any other run's on a shared
// external server.
var runID = func() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}()

var discard = slog.New(slog.DiscardHandler)

// embedded starts a JetStream server inside the test process.
func embedded(t *testing.T) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("embedded NATS server did not start")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	anchor(t, s.ClientURL())
	return s.ClientURL()
}

// anchor keeps a stream on the server while t runs. Deleting an account's
// last stream makes the server remove the account's store directory in the
// background, racing the next test's stream creation ("could not create
// storage directory"); a stream that stays keeps the directory.
func anchor(t *testing.T, url string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	name := "MILLRACE_TEST_" + runID + "_ANCHOR"
	if _, err := js.CreateOrUpdateStream(t.Context(), jetstream.StreamConfig{Name: name, Subjects: []string{"millrace-test." + runID + ".anchor.>"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteStream(t, url, name) })
}

// external returns the server named by MILLRACE_TEST_NATS_URL, or skips.
func external(t *testing.T) string {
	url := os.Getenv("MILLRACE_TEST_NATS_URL")
	if url == "" {
		t.Skip("set MILLRACE_TEST_NATS_URL (for example nats://127.0.0.1:4222) to run against an external server")
	}
	anchor(t, url)
	return url
}

// testOptions gives each test its own stream and subject space, derived
// from the test name, so that two buses made in one test share a stream the
// way a restarted process does, and nothing else does.
func testOptions(t *testing.T) natsbus.Options {
	h := fnv.New64a()
	h.Write([]byte(t.Name()))
	key := fmt.Sprintf("%s_%x", runID, h.Sum64())
	return natsbus.Options{
		Stream:        "MILLRACE_TEST_" + key,
		Subjects:      "millrace-test." + key + ".>",
		AckWait:       5 * time.Second,
		RetryDelay:    20 * time.Millisecond,
		MaxRetryDelay: 100 * time.Millisecond,
		Log:           discard,
	}
}

// connect opens a bus for t and deletes its stream when t ends.
func connect(t *testing.T, url string, opts natsbus.Options) *natsbus.Bus {
	t.Helper()
	b, err := natsbus.Connect(t.Context(), url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteStream(t, url, opts.Stream) })
	return b
}

func deleteStream(t *testing.T, url, stream string) {
	nc, err := nats.Connect(url)
	if err != nil {
		t.Errorf("delete stream %s: %v", stream, err)
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("delete stream %s: %v", stream, err)
	}
}

func contract(url string) bustest.NewBus {
	return func(t *testing.T) events.Bus { return connect(t, url, testOptions(t)) }
}

func TestContractEmbeddedServer(t *testing.T) {
	bustest.Run(t, contract(embedded(t)), bustest.Durable())
}

func TestContractExternalServer(t *testing.T) {
	url := external(t)
	bustest.Run(t, contract(url), bustest.Durable(), bustest.Timeout(30*time.Second))
}

func newEvent(typ string) *eventsv1.Envelope {
	return &eventsv1.Envelope{Id: ids.New("evt"), Source: "/millrace/test", Type: typ, Subject: "orders/ord-1", Sequence: 1, Time: timestamppb.Now(), SpecVersion: events.SpecVersion}
}

func TestNATS(t *testing.T) {
	servers := map[string]func(*testing.T) string{"embedded": embedded, "external": external}
	for _, name := range []string{"embedded", "external"} {
		t.Run(name, func(t *testing.T) {
			url := servers[name](t)
			t.Run("publish stores one message per event id", func(t *testing.T) { testPublishDedupe(t, url) })
			t.Run("starting again updates the stream", func(t *testing.T) { testIdempotentStart(t, url) })
			t.Run("a message that is not an event does not block a consumer", func(t *testing.T) { testPoisonMessage(t, url) })
			t.Run("bad names and filters are refused", func(t *testing.T) { testRefusals(t, url) })
			t.Run("a consumer's filters change with its subscription", func(t *testing.T) { testRefilter(t, url) })
		})
	}
}

func testPublishDedupe(t *testing.T, url string) {
	opts := testOptions(t)
	b := connect(t, url, opts)
	defer b.Close()
	env := newEvent("millrace.events.v1.OrderAccepted")
	for range 3 { // a relay that republished after a lost acknowledgement
		if err := b.Publish(t.Context(), env); err != nil {
			t.Fatal(err)
		}
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	st, err := js.Stream(t.Context(), opts.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("stream holds %d messages, want 1", n)
	}
	raw, err := st.GetMsg(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := raw.Header.Get(jetstream.MsgIDHeader); got != env.GetId() {
		t.Errorf("Nats-Msg-Id = %q, want the event id %q", got, env.GetId())
	}
	if want := b.Subject(env.GetType()); raw.Subject != want {
		t.Errorf("subject = %q, want %q", raw.Subject, want)
	}
	got := &eventsv1.Envelope{}
	if err := proto.Unmarshal(raw.Data, got); err != nil || !proto.Equal(got, env) {
		t.Errorf("stored envelope = %v (%v), want %v", got, err, env)
	}
}

func testIdempotentStart(t *testing.T, url string) {
	opts := testOptions(t)
	b1 := connect(t, url, opts)
	defer b1.Close()
	opts.MaxAge = 48 * time.Hour
	b2 := connect(t, url, opts)
	defer b2.Close()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	st, err := js.Stream(t.Context(), opts.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxAge; got != 48*time.Hour {
		t.Errorf("MaxAge after the second start = %s, want 48h", got)
	}
	if got := st.CachedInfo().Config.Duplicates; got != natsbus.DefaultDuplicateWindow {
		t.Errorf("duplicate window = %s, want %s", got, natsbus.DefaultDuplicateWindow)
	}
}

func testPoisonMessage(t *testing.T, url string) {
	opts := testOptions(t)
	b := connect(t, url, opts)
	defer b.Close()
	var (
		mu  sync.Mutex
		got []string
	)
	sub, err := b.Subscribe("poisoned", nil, func(_ context.Context, env *eventsv1.Envelope) error {
		mu.Lock()
		got = append(got, env.GetId())
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.Publish(t.Context(), b.Subject("millrace.events.v1.Garbage"), []byte{0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	env := newEvent("millrace.events.v1.OrderAccepted")
	if err := b.Publish(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the event behind a malformed message never arrived")
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != env.GetId() {
		t.Errorf("handler got %q, want only %s", got, env.GetId())
	}
}

func testRefusals(t *testing.T, url string) {
	b := connect(t, url, testOptions(t))
	defer b.Close()
	h := func(context.Context, *eventsv1.Envelope) error { return nil }
	for _, tt := range []struct {
		name    string
		filters []string
	}{
		{"feed.v1", nil},
		{"has space", nil},
		{"", nil},
		{"ok", []string{"millrace..OrderAccepted"}},
		{"ok", []string{"millrace.events.v1.Order>"}},
	} {
		if sub, err := b.Subscribe(tt.name, tt.filters, h); err == nil {
			sub.Stop()
			t.Errorf("Subscribe(%q, %q) succeeded, want an error", tt.name, tt.filters)
		}
	}
	if err := b.Publish(t.Context(), newEvent("millrace.events.v1.Order>")); err == nil {
		t.Error("Publish of a type that is no subject succeeded")
	}
	for _, opts := range []natsbus.Options{{Stream: "has.dot"}, {Subjects: "millrace.events"}, {Subjects: "millrace.*.>"}} {
		if b, err := natsbus.Connect(t.Context(), url, opts); err == nil {
			b.Close()
			t.Errorf("Connect with %+v succeeded, want an error", opts)
		}
	}
}

func testRefilter(t *testing.T, url string) {
	b := connect(t, url, testOptions(t))
	defer b.Close()
	got := make(chan string, 10)
	h := func(_ context.Context, env *eventsv1.Envelope) error { got <- env.GetType(); return nil }
	sub, err := b.Subscribe("refiltered", []string{"millrace.events.v1.OrderHeld"}, h)
	if err != nil {
		t.Fatal(err)
	}
	sub.Stop()
	sub, err = b.Subscribe("refiltered", []string{"millrace.events.v1.Invoice*"}, h)
	if err != nil {
		t.Fatalf("subscribing again with other filters: %v", err)
	}
	defer sub.Stop()
	for _, typ := range []string{"millrace.events.v1.OrderHeld", "millrace.events.v1.InvoicePosted"} {
		if err := b.Publish(t.Context(), newEvent(typ)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case typ := <-got:
		if typ != "millrace.events.v1.InvoicePosted" {
			t.Errorf("got %s, want only the new filter's events", typ)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no event under the new filter")
	}
}

// A consumer made again (a subscription stopped holding a batch) and then
// made again before it acknowledged anything resumes after what it
// handled, not at the start of the stream: a 2.9 server reports no ack
// floor for such a consumer.
func TestConsumerMadeAgainTwiceResumesAfterWhatItHandled(t *testing.T) {
	servers := map[string]func(*testing.T) string{"embedded": embedded, "external": external}
	for _, name := range []string{"embedded", "external"} {
		t.Run(name, func(t *testing.T) {
			url := servers[name](t)
			b := connect(t, url, testOptions(t))
			defer b.Close()
			var evs []*eventsv1.Envelope
			for range 6 {
				evs = append(evs, newEvent("bustest.v1.OrderAccepted"))
			}
			publish := func(envs []*eventsv1.Envelope) {
				for _, env := range envs {
					if err := b.Publish(t.Context(), env); err != nil {
						t.Fatal(err)
					}
				}
			}
			got := make(chan string, 100)
			record := func(_ context.Context, envs []*eventsv1.Envelope) error {
				for _, env := range envs {
					got <- env.GetId()
				}
				return nil
			}
			receive := func(n int) []string {
				var ids []string
				for len(ids) < n {
					select {
					case id := <-got:
						ids = append(ids, id)
					case <-time.After(10 * time.Second):
						t.Fatalf("got %q, want %d events", ids, n)
					}
				}
				return ids
			}

			publish(evs[:3])
			sub, err := b.SubscribeBatch("made-again", nil, 3, record)
			if err != nil {
				t.Fatal(err)
			}
			receive(3)
			sub.Stop()

			publish(evs[3:])
			for range 2 {
				held := make(chan struct{}, 1)
				sub, err := b.SubscribeBatch("made-again", nil, 3, func(ctx context.Context, _ []*eventsv1.Envelope) error {
					select {
					case held <- struct{}{}:
					default:
					}
					<-ctx.Done()
					return ctx.Err()
				})
				if err != nil {
					t.Fatal(err)
				}
				select {
				case <-held:
				case <-time.After(10 * time.Second):
					t.Fatal("the holding subscription got no batch")
				}
				sub.Stop()
			}

			sub, err = b.SubscribeBatch("made-again", nil, 3, record)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Stop()
			ids := receive(3)
			select {
			case id := <-got:
				ids = append(ids, id)
			case <-time.After(300 * time.Millisecond):
			}
			want := []string{evs[3].GetId(), evs[4].GetId(), evs[5].GetId()}
			if fmt.Sprint(ids) != fmt.Sprint(want) {
				t.Fatalf("after two stops holding a batch the consumer delivered %q, want %q", ids, want)
			}
		})
	}
}
