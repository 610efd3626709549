package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/anypb"

	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		in   string
		want time.Duration
	}{
		{"empty", "", 0},
		{"seconds", "120", 2 * time.Minute},
		{"padded", " 7 ", 7 * time.Second},
		{"zero", "0", 0},
		{"negative", "-5", 0},
		{"http date", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"past date", now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"garbage", "soon", 0},
		{"absurd", "99999999999999", 365 * 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseRetryAfter(tt.in, now); got != tt.want {
				t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestDelay(t *testing.T) {
	db, _ := tempStore(t)
	opts := testOptions()
	opts.ScheduleScale = 1
	opts.MaxRetryAfter = time.Hour
	d := newDispatcher(t, db, opts)
	d.jitter = func(max time.Duration) time.Duration { return max / 2 }
	tests := []struct {
		name       string
		n          int
		retryAfter time.Duration
		want       time.Duration
	}{
		{"first retry", 1, 0, 2500 * time.Millisecond},
		{"last retry", 7, 0, 5 * time.Hour},
		{"retry-after longer", 1, time.Minute, time.Minute},
		{"retry-after shorter", 3, time.Minute, 15 * time.Minute},
		{"retry-after capped", 1, 48 * time.Hour, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := d.delay(tt.n, tt.retryAfter); got != tt.want {
				t.Errorf("delay(%d, %v) = %v, want %v", tt.n, tt.retryAfter, got, tt.want)
			}
		})
	}
	// Full jitter: draws span [0, step].
	d2 := newDispatcher(t, db, opts)
	lo, hi := time.Hour, time.Duration(0)
	for range 2000 {
		w := d2.delay(1, 0)
		lo, hi = min(lo, w), max(hi, w)
	}
	if lo > 500*time.Millisecond || hi < 4500*time.Millisecond || hi > 5*time.Second {
		t.Errorf("2000 draws for a 5s step spanned [%v, %v]", lo, hi)
	}
}

func TestNewRejectsABadKey(t *testing.T) {
	db, _ := tempStore(t)
	if _, err := New(db, Options{SecretKey: []byte("short")}); err == nil {
		t.Fatal("New accepted a 5-byte key")
	}
}

// A store opened with another secret key cannot sign: the attempt fails
// and says why, and no secret leaks into the error.
func TestWrongSecretKeyCannotSign(t *testing.T) {
	db, _ := tempStore(t)
	d := newDispatcher(t, db, testOptions())
	rc := newReceiver(t, nil)
	sub, _ := createSub(t, d, rc.url())
	opts := testOptions()
	opts.SecretKey = bytes.Repeat([]byte{7}, 32)
	other := newDispatcher(t, db, opts)
	dl, err := other.SendTestEvent(context.Background(), sub.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if a := dl.GetAttempts()[0]; a.GetError() != "the signing secret could not be opened" || rc.requestCount() != 0 {
		t.Fatalf("attempt with the wrong key: %v", a)
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "webhook.key")
	k1, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) != SecretKeySize || !bytes.Equal(k1, k2) {
		t.Fatalf("keys %x and %x", k1, k2)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	if err := os.WriteFile(path, []byte("dG9vIHNob3J0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(path); err == nil {
		t.Fatal("a short key was accepted")
	}
}

// An event whose message this build does not know is still delivered, with
// data as protojson renders an unresolvable Any.
func TestCloudEventOfUnknownType(t *testing.T) {
	e := event("x/1", 1)
	e.Data = &anypb.Any{TypeUrl: "type.googleapis.com/vendor.v9.Future", Value: []byte{1, 2, 3}}
	b, err := cloudEventJSON(e)
	if err != nil {
		t.Fatal(err)
	}
	var ce struct {
		Data map[string]string `json:"data"`
	}
	if err := json.Unmarshal(b, &ce); err != nil || ce.Data["@type"] != "type.googleapis.com/vendor.v9.Future" || ce.Data["value"] != "AQID" {
		t.Fatalf("body %s (%v)", b, err)
	}
}

func TestMetrics(t *testing.T) {
	db, _ := tempStore(t)
	reg := prometheus.NewRegistry()
	opts := testOptions()
	opts.Registerer = reg
	d := newDispatcher(t, db, opts)
	rc := newReceiver(t, func(_ *http.Request, _ string, attempt int) answer {
		if attempt == 1 {
			return answer{code: http.StatusInternalServerError}
		}
		return answer{code: http.StatusOK}
	})
	sub, secret := createSub(t, d, rc.url())
	rc.setSecrets(secret)
	want := makeEvents(subjects("orders", 2), 2)
	consumeAll(t, d, want...)
	start(t, d)
	eventually(t, 3*time.Second, "delivered", func() bool { return getSubT(t, d, sub.GetId()).GetBacklog() == 0 })

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			switch {
			case m.GetCounter() != nil:
				got[key] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				got[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	for key, v := range map[string]float64{
		"millrace_webhook_delivery_attempts_total{result=success}":                       4,
		"millrace_webhook_delivery_attempts_total{result=server_error}":                  4,
		"millrace_webhook_delivery_attempt_duration_seconds{result=success}":             4,
		"millrace_webhook_deliveries_enqueued_total":                                     4,
		"millrace_webhook_event_ack_seconds{type=millrace.events.v1.CreditLimitChanged}": 4,
		"millrace_webhook_dead_letters_total":                                            0,
		"millrace_webhook_subscriptions_disabled_total":                                  0,
	} {
		if got[key] != v {
			t.Errorf("%s = %v, want %v", key, got[key], v)
		}
	}
}

// The sweep removes finished deliveries past retention, keeps pending ones
// and dead letters, and forgets the event so a very late redelivery is
// delivered again.
func TestSweepRemovesFinishedDeliveries(t *testing.T) {
	db, _ := tempStore(t)
	d := newDispatcher(t, db, testOptions())
	rc := newReceiver(t, nil)
	okSub, secret := createSub(t, d, rc.url(), "millrace.events.v1.CreditLimitChanged")
	rc.setSecrets(secret)
	stuck, _ := createSub(t, d, rc.url(), "millrace.events.v1.Credit*")
	if _, err := d.UpdateSubscription(context.Background(), &integrationv1.Subscription{Id: stuck.GetId(), Status: integrationv1.SubscriptionStatus_SUBSCRIPTION_STATUS_PAUSED}); err != nil {
		t.Fatal(err)
	}
	e := event("customers/cus_1", 1)
	consumeAll(t, d, e)
	stop := start(t, d)
	eventually(t, 3*time.Second, "delivered", func() bool { return getSubT(t, d, okSub.GetId()).GetBacklog() == 0 })
	stop()

	n, err := d.sweep(context.Background(), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("swept %d, want 1", n)
	}
	if got := deliveries(t, d, okSub.GetId(), 0); len(got) != 0 {
		t.Fatalf("%d deliveries left on the delivered subscription", len(got))
	}
	if got := deliveries(t, d, stuck.GetId(), integrationv1.DeliveryStatus_DELIVERY_STATUS_PENDING); len(got) != 1 {
		t.Fatalf("%d pending deliveries left, want 1", len(got))
	}
	consumeAll(t, d, e)
	if got := deliveries(t, d, okSub.GetId(), 0); len(got) != 1 {
		t.Fatalf("a redelivery after retention made %d deliveries, want 1", len(got))
	}
	if got := deliveries(t, d, stuck.GetId(), 0); len(got) != 1 {
		t.Fatalf("a redelivery of a pending event made %d deliveries, want 1", len(got))
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	f.Add("120")
	f.Add("-1")
	f.Add("9223372036854775807")
	f.Fuzz(func(t *testing.T, v string) {
		if got := parseRetryAfter(v, time.Unix(1445412480, 0)); got < 0 || got > maxRetryAfter {
			t.Fatalf("parseRetryAfter(%q) = %v", v, got)
		}
	})
}
