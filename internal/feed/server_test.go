package feed_test

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/feed"
	"github.com/millrace/millrace/internal/ids"
	"github.com/millrace/millrace/internal/storage"
)

// fakeClock lets a test move the feed past its retention.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// serve starts the EventService of a fresh feed behind a real gRPC
// connection and returns a client.
func serve(t *testing.T, c *fakeClock) (*feed.Log, integrationv1.EventServiceClient) {
	t.Helper()
	db, err := storage.Open(filepath.Join(t.TempDir(), "integration.db"),
		storage.Schema{Name: "integration", Version: 1, Buckets: feed.Buckets}, storage.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	log, err := feed.NewLog(db, feed.Options{Retention: 24 * time.Hour, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	integrationv1.RegisterEventServiceServer(srv, feed.NewServer(log))
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///feed",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
	})
	return log, integrationv1.NewEventServiceClient(conn)
}

func newEvent(typ string) *eventsv1.Envelope {
	return &eventsv1.Envelope{Id: ids.New("evt"), Source: "/millrace/order", Type: typ, Subject: "orders/ord-1", Sequence: 1, Time: timestamppb.Now(), SpecVersion: events.SpecVersion}
}

func consume(t *testing.T, log *feed.Log, envs ...*eventsv1.Envelope) {
	t.Helper()
	for _, env := range envs {
		if err := log.Consume(t.Context(), env); err != nil {
			t.Fatal(err)
		}
	}
}

// errorInfo returns the reason and metadata a client sees on err.
func errorInfo(err error) (*errdetails.ErrorInfo, *errdetails.BadRequest) {
	var (
		info *errdetails.ErrorInfo
		br   *errdetails.BadRequest
	)
	for _, d := range status.Convert(err).Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			info = d
		case *errdetails.BadRequest:
			br = d
		}
	}
	return info, br
}

func TestListEvents(t *testing.T) {
	c := &fakeClock{now: time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)}
	log, client := serve(t, c)
	var envs []*eventsv1.Envelope
	for i := range 150 {
		typ := "millrace.events.v1.OrderAccepted"
		if i%2 == 1 {
			typ = "millrace.events.v1.InvoicePosted"
		}
		envs = append(envs, newEvent(typ))
	}
	consume(t, log, envs...)

	t.Run("page size 0 means 100", func(t *testing.T) {
		resp, err := client.ListEvents(t.Context(), &integrationv1.ListEventsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetEvents()) != feed.DefaultPageSize || resp.GetNextCursor() != resp.GetEvents()[99].GetCursor() {
			t.Errorf("got %d events, next %q", len(resp.GetEvents()), resp.GetNextCursor())
		}
	})
	t.Run("pages follow cursors with a type filter", func(t *testing.T) {
		var got []string
		after := ""
		for {
			resp, err := client.ListEvents(t.Context(), &integrationv1.ListEventsRequest{After: after, Types: []string{"millrace.events.v1.Invoice*"}, PageSize: 20})
			if err != nil {
				t.Fatal(err)
			}
			for _, fe := range resp.GetEvents() {
				got = append(got, fe.GetEvent().GetId())
			}
			if resp.GetNextCursor() == after {
				break
			}
			after = resp.GetNextCursor()
		}
		var want []string
		for i := 1; i < len(envs); i += 2 {
			want = append(want, envs[i].GetId())
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("got %d invoice events, want %d in order", len(got), len(want))
		}
	})
	t.Run("invalid requests name the field", func(t *testing.T) {
		resp, _ := client.ListEvents(t.Context(), &integrationv1.ListEventsRequest{PageSize: 1})
		good := resp.GetEvents()[0].GetCursor()
		tampered := []byte(good)
		tampered[3] = map[bool]byte{true: 'B', false: 'A'}[tampered[3] == 'A']
		tests := []struct {
			name  string
			req   *integrationv1.ListEventsRequest
			field string
		}{
			{"tampered cursor", &integrationv1.ListEventsRequest{After: string(tampered)}, "after"},
			{"garbage cursor", &integrationv1.ListEventsRequest{After: "%%%"}, "after"},
			{"page too large", &integrationv1.ListEventsRequest{PageSize: 1001}, "page_size"},
			{"negative page", &integrationv1.ListEventsRequest{PageSize: -1}, "page_size"},
			{"bad type filter", &integrationv1.ListEventsRequest{Types: []string{"ok.Type", "a*b"}}, "types[1]"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := client.ListEvents(t.Context(), tt.req)
				if status.Code(err) != codes.InvalidArgument {
					t.Fatalf("code = %v (%v), want InvalidArgument", status.Code(err), err)
				}
				_, br := errorInfo(err)
				if br == nil || len(br.GetFieldViolations()) != 1 || br.GetFieldViolations()[0].GetField() != tt.field {
					t.Errorf("field violations = %v, want %s", br.GetFieldViolations(), tt.field)
				}
			})
		}
	})
	t.Run("a cursor past retention names the oldest cursor", func(t *testing.T) {
		resp, err := client.ListEvents(t.Context(), &integrationv1.ListEventsRequest{PageSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		stale := resp.GetEvents()[0].GetCursor()
		c.Advance(25 * time.Hour)
		kept := newEvent("millrace.events.v1.OrderHeld")
		consume(t, log, kept)
		if n, err := log.Sweep(c.Now()); err != nil || n != len(envs) {
			t.Fatalf("Sweep = %d, %v", n, err)
		}

		_, err = client.ListEvents(t.Context(), &integrationv1.ListEventsRequest{After: stale})
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("code = %v (%v), want FailedPrecondition", status.Code(err), err)
		}
		info, _ := errorInfo(err)
		oldest := info.GetMetadata()["oldest_cursor"]
		if info.GetReason() != feed.ReasonCursorExpired || oldest == "" || info.GetMetadata()["field"] != "after" {
			t.Fatalf("ErrorInfo = %v, want reason %s with the oldest cursor", info, feed.ReasonCursorExpired)
		}
		if msg := status.Convert(err).Message(); !strings.Contains(msg, oldest) || !strings.Contains(msg, "1 day") {
			t.Errorf("message %q does not name the oldest cursor and the retention", msg)
		}
		resp, err = client.ListEvents(t.Context(), &integrationv1.ListEventsRequest{After: oldest})
		if err != nil || len(resp.GetEvents()) != 1 || resp.GetEvents()[0].GetEvent().GetId() != kept.GetId() {
			t.Errorf("from the oldest cursor: %v, %v; want the retained event", resp.GetEvents(), err)
		}
	})
}

func TestWatchEvents(t *testing.T) {
	c := &fakeClock{now: time.Now()}
	log, client := serve(t, c)
	backlog := []*eventsv1.Envelope{newEvent("millrace.events.v1.OrderAccepted"), newEvent("millrace.events.v1.OrderHeld")}
	consume(t, log, backlog...)
	first, err := client.ListEvents(t.Context(), &integrationv1.ListEventsRequest{PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream, err := client.WatchEvents(ctx, &integrationv1.WatchEventsRequest{After: first.GetNextCursor(), Types: []string{"millrace.events.v1.Order*"}})
	if err != nil {
		t.Fatal(err)
	}
	recv := func() *eventsv1.Envelope {
		t.Helper()
		msg, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		return msg.GetEvent().GetEvent()
	}
	if got := recv(); got.GetId() != backlog[1].GetId() {
		t.Errorf("first streamed event = %s, want the backlog's %s", got.GetId(), backlog[1].GetId())
	}
	live := []*eventsv1.Envelope{newEvent("millrace.events.v1.InvoicePosted"), newEvent("millrace.events.v1.OrderReleased")}
	consume(t, log, live...)
	if got := recv(); got.GetId() != live[1].GetId() {
		t.Errorf("streamed %s, want the new matching event %s", got.GetId(), live[1].GetId())
	}
	cancel()
	if _, err := stream.Recv(); status.Code(err) != codes.Canceled && !errors.Is(err, io.EOF) {
		t.Errorf("after cancel: %v, want Canceled", err)
	}

	t.Run("a tampered cursor ends the stream at once", func(t *testing.T) {
		stream, err := client.WatchEvents(t.Context(), &integrationv1.WatchEventsRequest{After: "AAAAAAAAAAAAAAAAAAAAAAA"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); status.Code(err) != codes.InvalidArgument {
			t.Errorf("Recv: %v, want InvalidArgument", err)
		}
	})
}
