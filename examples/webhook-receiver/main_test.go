package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	"github.com/millrace/millrace/internal/storage"
	"github.com/millrace/millrace/internal/webhooks"
	"github.com/millrace/millrace/internal/webhooks/verify"
)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func request(t *testing.T, id string, ts time.Time, body string, secrets ...string) *http.Request {
	t.Helper()
	sig, err := verify.SignAll(secrets, id, ts, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/hooks/millrace", strings.NewReader(body))
	r.Header.Set(verify.HeaderID, id)
	r.Header.Set(verify.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	r.Header.Set(verify.HeaderSignature, sig)
	return r
}

func body(subject string, seq int) string {
	return fmt.Sprintf(`{"specversion":"1.0","id":"evt_%s_%d","type":"millrace.events.v1.OrderAccepted","source":"/millrace/order","subject":%q,"sequence":%d,"data":{"order":{"id":"ord_1"}}}`, subject, seq, subject, seq)
}

func TestReceiver(t *testing.T) {
	now := time.Now()
	var applied []string
	fail := false
	h := &Receiver{Secrets: []string{secret}, Log: slog.New(slog.DiscardHandler), Apply: func(_ context.Context, ev Event) error {
		if fail {
			return errors.New("CRM is down")
		}
		applied = append(applied, ev.ID)
		return nil
	}}
	serve := func(r *http.Request) int {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	steps := []struct {
		name string
		req  *http.Request
		fail bool
		code int
	}{
		{"first delivery", request(t, "dlv_1", now, body("orders/1", 1), secret), false, 204},
		{"retry of the same webhook-id", request(t, "dlv_1", now.Add(time.Minute), body("orders/1", 1), secret), false, 204},
		{"bad signature", request(t, "dlv_2", now, body("orders/1", 2), "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24tdGVzdHM="), false, 401},
		{"stale timestamp", request(t, "dlv_2", now.Add(-10*time.Minute), body("orders/1", 2), secret), false, 401},
		{"CRM down", request(t, "dlv_2", now, body("orders/1", 2), secret), true, 500},
		{"retried after the CRM is back", request(t, "dlv_2", now, body("orders/1", 2), secret), false, 204},
		{"replay of an older update", request(t, "dlv_9", now, body("orders/1", 1), secret), false, 204},
		{"signed with old and new secret during rotation", request(t, "dlv_3", now, body("orders/2", 1), "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24tdGVzdHM=", secret), false, 204},
	}
	for _, s := range steps {
		fail = s.fail
		if got := serve(s.req); got != s.code {
			t.Fatalf("%s: %d, want %d", s.name, got, s.code)
		}
	}
	if got := strings.Join(applied, ","); got != "evt_orders/1_1,evt_orders/1_2,evt_orders/2_1" {
		t.Fatalf("applied %s", got)
	}
}

// The example receiver accepts what Millrace really sends.
func TestReceiverWithMillrace(t *testing.T) {
	db, err := storage.Open(filepath.Join(t.TempDir(), "integration.db"), storage.Schema{Name: "integration", Version: 1, Buckets: webhooks.Buckets}, storage.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	d, err := webhooks.New(db, webhooks.Options{SecretKey: make([]byte, webhooks.SecretKeySize), AllowPrivate: true, ScheduleScale: 0.00001})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		applied []Event
	)
	h := &Receiver{Log: slog.New(slog.DiscardHandler), Apply: func(_ context.Context, ev Event) error {
		mu.Lock()
		defer mu.Unlock()
		applied = append(applied, ev)
		return nil
	}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	sub, secret, err := d.CreateSubscription(context.Background(), &integrationv1.Subscription{Url: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	h.Secrets = []string{secret}
	data, _ := anypb.New(&eventsv1.OrderAccepted{Order: &orderv1.Order{Id: "ord_1"}})
	for seq := uint64(1); seq <= 3; seq++ {
		env := &eventsv1.Envelope{Id: fmt.Sprintf("evt_%d", seq), Source: "/millrace/order", Type: "millrace.events.v1.OrderAccepted",
			Subject: "orders/ord_1", Time: timestamppb.Now(), SpecVersion: "1.0", Sequence: seq, Data: data}
		if err := d.Consume(context.Background(), env); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := d.GetSubscription(context.Background(), sub.GetId())
		if err != nil {
			t.Fatal(err)
		}
		if got.GetBacklog() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backlog %d after 5s", got.GetBacklog())
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(applied) != 3 {
		t.Fatalf("applied %d events, want 3", len(applied))
	}
	for i, ev := range applied {
		if ev.Sequence != uint64(i+1) || ev.Type != "millrace.events.v1.OrderAccepted" || !strings.Contains(string(ev.Data), `"id":"ord_1"`) {
			t.Errorf("event %d: %+v %s", i, ev, ev.Data)
		}
	}
}
