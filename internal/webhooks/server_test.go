package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	"github.com/millrace/millrace/internal/apierr"
	"github.com/millrace/millrace/internal/webhooks/verify"
)

// serve runs the SubscriptionService of d on a bufconn and returns a client.
func serve(t *testing.T, d *Dispatcher) integrationv1.SubscriptionServiceClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	integrationv1.RegisterSubscriptionServiceServer(srv, NewServer(d))
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
	})
	return integrationv1.NewSubscriptionServiceClient(conn)
}

// wantError checks a status code, reason and (for invalid input) field.
func wantError(t *testing.T, err error, code codes.Code, reason, field string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Fatalf("code = %v (%v), want %v", st.Code(), err, code)
	}
	if got := apierr.Reason(err); got != reason {
		t.Fatalf("reason = %q, want %q", got, reason)
	}
	if field == "" {
		return
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetField() == field {
					return
				}
			}
		}
	}
	t.Fatalf("no field violation on %s in %v", field, st.Details())
}

// fakeSource is the event feed: events in commit order with their times.
type fakeSource struct{ events []*eventsv1.Envelope }

func (f *fakeSource) Range(_ context.Context, start, end time.Time, visit func(*eventsv1.Envelope) error) error {
	for _, e := range f.events {
		if t := e.GetTime().AsTime(); !t.Before(start) && t.Before(end) {
			if err := visit(e); err != nil {
				return err
			}
		}
	}
	return nil
}

func TestServerSubscriptionLifecycle(t *testing.T) {
	ctx := context.Background()
	db, _ := tempStore(t)
	d := newDispatcher(t, db, testOptions())
	c := serve(t, d)
	rc := newReceiver(t, nil)

	created, err := c.CreateSubscription(ctx, &integrationv1.CreateSubscriptionRequest{Subscription: &integrationv1.Subscription{
		Url: rc.url(), EventTypes: []string{"millrace.events.v1.Order*"}, Description: "Salesforce prod",
	}})
	if err != nil {
		t.Fatal(err)
	}
	sub, secret := created.GetSubscription(), created.GetSecret()
	rc.setSecrets(secret)
	raw, err := verify.DecodeSecret(secret)
	if !strings.HasPrefix(secret, "whsec_") || err != nil || len(raw) != 32 {
		t.Fatalf("secret %q: want whsec_ and 32 bytes of base64", secret)
	}
	if sub.GetStatus() != integrationv1.SubscriptionStatus_SUBSCRIPTION_STATUS_ACTIVE || !strings.HasPrefix(sub.GetId(), "sub_") || sub.GetCreateTime() == nil {
		t.Fatalf("created %v", sub)
	}

	got, err := c.GetSubscription(ctx, &integrationv1.GetSubscriptionRequest{Id: sub.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetSubscription().GetUrl() != rc.url() || got.GetSubscription().GetDescription() != "Salesforce prod" {
		t.Fatalf("got %v", got)
	}

	// The secret is at rest only sealed: neither it nor its key bytes
	// appear in the store.
	if err := db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketSubs).Get([]byte(sub.GetId()))
		for _, needle := range [][]byte{[]byte(secret), []byte(secret[len("whsec_"):]), raw} {
			if bytes.Contains(v, needle) {
				t.Errorf("the stored subscription contains its secret")
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	upd, err := c.UpdateSubscription(ctx, &integrationv1.UpdateSubscriptionRequest{Subscription: &integrationv1.Subscription{
		Id: sub.GetId(), EventTypes: []string{"millrace.events.v1.Credit*"}, Status: integrationv1.SubscriptionStatus_SUBSCRIPTION_STATUS_PAUSED,
	}})
	if err != nil {
		t.Fatal(err)
	}
	if u := upd.GetSubscription(); u.GetStatus() != integrationv1.SubscriptionStatus_SUBSCRIPTION_STATUS_PAUSED || u.GetUrl() != rc.url() ||
		u.GetDescription() != "Salesforce prod" || u.GetEventTypes()[0] != "millrace.events.v1.Credit*" {
		t.Fatalf("updated %v; empty fields must stay unchanged", u)
	}

	test, err := c.SendTestEvent(ctx, &integrationv1.SendTestEventRequest{Id: sub.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	dl := test.GetDelivery()
	if dl.GetStatus() != integrationv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED || len(dl.GetAttempts()) != 1 ||
		dl.GetAttempts()[0].GetStatusCode() != 200 || dl.GetEventType() != TestEventType {
		t.Fatalf("test delivery to a paused subscription: %v", dl)
	}
	var ce struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	rc.mu.Lock()
	body := rc.bodies[0]
	rc.mu.Unlock()
	if err := json.Unmarshal(body, &ce); err != nil || ce.Type != TestEventType || ce.Data["subscriptionId"] != sub.GetId() {
		t.Fatalf("test event body %s", body)
	}

	rot, err := c.RotateSubscriptionSecret(ctx, &integrationv1.RotateSubscriptionSecretRequest{Id: sub.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if rot.GetSecret() == secret || !strings.HasPrefix(rot.GetSecret(), "whsec_") {
		t.Fatalf("rotated secret %q", rot.GetSecret())
	}
	if left := time.Until(rot.GetPreviousSecretExpireTime().AsTime()); left < 23*time.Hour || left > 24*time.Hour {
		t.Fatalf("previous secret expires in %v, want 24h", left)
	}

	if _, err := c.DeleteSubscription(ctx, &integrationv1.DeleteSubscriptionRequest{Id: sub.GetId()}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetSubscription(ctx, &integrationv1.GetSubscriptionRequest{Id: sub.GetId()})
	wantError(t, err, codes.NotFound, apierr.ReasonNotFound, "")
	_, err = c.ListDeliveries(ctx, &integrationv1.ListDeliveriesRequest{SubscriptionId: sub.GetId()})
	wantError(t, err, codes.NotFound, apierr.ReasonNotFound, "")
	if err := db.View(func(tx *bbolt.Tx) error {
		for _, b := range Buckets {
			if n := tx.Bucket(b).Stats().KeyN; n != 0 {
				t.Errorf("bucket %s holds %d keys after the only subscription was deleted", b, n)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestServerErrorsNameFields(t *testing.T) {
	ctx := context.Background()
	db, _ := tempStore(t)
	opts := testOptions()
	opts.AllowPrivate = false
	opts.Resolver = newFakeResolver(map[string][]string{"crm.example": {"93.184.216.34"}})
	d := newDispatcher(t, db, opts)
	c := serve(t, d)
	ok, err := c.CreateSubscription(ctx, &integrationv1.CreateSubscriptionRequest{Subscription: &integrationv1.Subscription{Url: "https://crm.example/h"}})
	if err != nil {
		t.Fatal(err)
	}
	id := ok.GetSubscription().GetId()
	tests := []struct {
		name   string
		call   func() error
		code   codes.Code
		reason string
		field  string
	}{
		{"private URL", func() error {
			_, err := c.CreateSubscription(ctx, &integrationv1.CreateSubscriptionRequest{Subscription: &integrationv1.Subscription{Url: "http://127.0.0.1:8080/h"}})
			return err
		}, codes.InvalidArgument, apierr.ReasonInvalidArgument, "subscription.url"},
		{"no subscription", func() error {
			_, err := c.CreateSubscription(ctx, &integrationv1.CreateSubscriptionRequest{})
			return err
		}, codes.InvalidArgument, apierr.ReasonInvalidArgument, "subscription"},
		{"bad event type", func() error {
			_, err := c.CreateSubscription(ctx, &integrationv1.CreateSubscriptionRequest{Subscription: &integrationv1.Subscription{Url: "https://crm.example/h", EventTypes: []string{"ok.Type", "bad type*"}}})
			return err
		}, codes.InvalidArgument, apierr.ReasonInvalidArgument, "subscription.event_types[1]"},
		{"created disabled", func() error {
			_, err := c.CreateSubscription(ctx, &integrationv1.CreateSubscriptionRequest{Subscription: &integrationv1.Subscription{Url: "https://crm.example/h", Status: integrationv1.SubscriptionStatus_SUBSCRIPTION_STATUS_DISABLED}})
			return err
		}, codes.InvalidArgument, apierr.ReasonInvalidArgument, "subscription.status"},
		{"update without id", func() error {
			_, err := c.UpdateSubscription(ctx, &integrationv1.UpdateSubscriptionRequest{Subscription: &integrationv1.Subscription{Description: "x"}})
			return err
		}, codes.InvalidArgument, apierr.ReasonInvalidArgument, "subscription.id"},
		{"update to private URL", func() error {
			_, err := c.UpdateSubscription(ctx, &integrationv1.UpdateSubscriptionRequest{Subscription: &integrationv1.Subscription{Id: id, Url: "http://[::1]/"}})
			return err
		}, codes.InvalidArgument, apierr.ReasonInvalidArgument, "subscription.url"},
		{"update unknown", func() error {
			_, err := c.UpdateSubscription(ctx, &integrationv1.UpdateSubscriptionRequest{Subscription: &integrationv1.Subscription{Id: "sub_nope", Description: "x"}})
			return err
		}, codes.NotFound, apierr.ReasonNotFound, ""},
		{"bad page token", func() error {
			_, err := c.ListSubscriptions(ctx, &integrationv1.ListSubscriptionsRequest{PageToken: "%%%"})
			return err
		}, codes.InvalidArgument, apierr.ReasonInvalidArgument, "page_token"},
		{"rotate unknown", func() error {
			_, err := c.RotateSubscriptionSecret(ctx, &integrationv1.RotateSubscriptionSecretRequest{Id: "sub_nope"})
			return err
		}, codes.NotFound, apierr.ReasonNotFound, ""},
		{"test unknown", func() error {
			_, err := c.SendTestEvent(ctx, &integrationv1.SendTestEventRequest{Id: "sub_nope"})
			return err
		}, codes.NotFound, apierr.ReasonNotFound, ""},
		{"dead letters of unknown subscription", func() error {
			_, err := c.ListDeadLetters(ctx, &integrationv1.ListDeadLettersRequest{SubscriptionId: "sub_nope"})
			return err
		}, codes.NotFound, apierr.ReasonNotFound, ""},
		{"replay unknown dead letter", func() error {
			_, err := c.ReplayDeadLetter(ctx, &integrationv1.ReplayDeadLetterRequest{Id: "dlt_nope"})
			return err
		}, codes.NotFound, apierr.ReasonNotFound, ""},
		{"replay without the feed", func() error {
			_, err := c.ReplaySubscription(ctx, &integrationv1.ReplaySubscriptionRequest{Id: id, StartTime: timestamppb.Now()})
			return err
		}, codes.FailedPrecondition, ReasonReplayUnavailable, ""},
		{"delete unknown", func() error {
			_, err := c.DeleteSubscription(ctx, &integrationv1.DeleteSubscriptionRequest{Id: "sub_nope"})
			return err
		}, codes.NotFound, apierr.ReasonNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, tt.call(), tt.code, tt.reason, tt.field)
		})
	}
}

func TestServerListsPage(t *testing.T) {
	ctx := context.Background()
	db, _ := tempStore(t)
	d := newDispatcher(t, db, testOptions())
	c := serve(t, d)
	var ids []string
	for range 5 {
		s, _ := createSub(t, d, "http://127.0.0.1:1/h")
		ids = append(ids, s.GetId())
	}
	var listed []string
	token := ""
	for {
		resp, err := c.ListSubscriptions(ctx, &integrationv1.ListSubscriptionsRequest{PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range resp.GetSubscriptions() {
			listed = append(listed, s.GetId())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if strings.Join(listed, ",") != strings.Join(ids, ",") {
		t.Fatalf("listed %v, want %v", listed, ids)
	}

	// Deliveries: newest first, paged, filtered by status.
	evs := makeEvents(subjects("orders", 1), 5)
	consumeAll(t, d, evs...)
	var seen []string
	token = ""
	for {
		resp, err := c.ListDeliveries(ctx, &integrationv1.ListDeliveriesRequest{SubscriptionId: ids[0], PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, dl := range resp.GetDeliveries() {
			seen = append(seen, dl.GetEventId())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if len(seen) != 5 {
		t.Fatalf("listed %d deliveries, want 5", len(seen))
	}
	for i, e := range evs {
		if seen[len(seen)-1-i] != e.GetId() {
			t.Fatalf("deliveries not newest first: %v", seen)
		}
	}
	resp, err := c.ListDeliveries(ctx, &integrationv1.ListDeliveriesRequest{SubscriptionId: ids[0], Status: integrationv1.DeliveryStatus_DELIVERY_STATUS_PENDING, PageSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetDeliveries()) != 3 || resp.GetNextPageToken() == "" || resp.GetDeliveries()[0].GetEventId() != evs[4].GetId() {
		t.Fatalf("pending page: %v", resp)
	}
	resp, err = c.ListDeliveries(ctx, &integrationv1.ListDeliveriesRequest{SubscriptionId: ids[0], Status: integrationv1.DeliveryStatus_DELIVERY_STATUS_PENDING, PageSize: 3, PageToken: resp.GetNextPageToken()})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetDeliveries()) != 2 || resp.GetNextPageToken() != "" || resp.GetDeliveries()[1].GetEventId() != evs[0].GetId() {
		t.Fatalf("second pending page: %v", resp)
	}
	resp, err = c.ListDeliveries(ctx, &integrationv1.ListDeliveriesRequest{SubscriptionId: ids[0], Status: integrationv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED})
	if err != nil || len(resp.GetDeliveries()) != 0 {
		t.Fatalf("succeeded: %v %v", resp, err)
	}
}

// ReplaySubscription re-sends a time range as new deliveries, skips events
// still pending and respects the filters.
func TestReplaySubscriptionRange(t *testing.T) {
	ctx := context.Background()
	db, _ := tempStore(t)
	src := &fakeSource{}
	opts := testOptions()
	opts.Events = src
	d := newDispatcher(t, db, opts)
	c := serve(t, d)
	rc := newReceiver(t, nil)
	sub, secret := createSub(t, d, rc.url(), "millrace.events.v1.Credit*")
	rc.setSecrets(secret)

	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	evs := makeEvents(subjects("customers", 2), 3)
	for i, e := range evs {
		e.Time = timestamppb.New(base.Add(time.Duration(i) * time.Minute))
	}
	other := event("orders/ord_1", 1)
	other.Type = "millrace.events.v1.OrderAccepted"
	other.Time = timestamppb.New(base.Add(90 * time.Second))
	src.events = append(append(src.events, evs...), other)
	consumeAll(t, d, evs...)
	start(t, d)
	eventually(t, 3*time.Second, "first delivery", func() bool { return len(rc.processedEvents()) == len(evs) })
	eventually(t, 3*time.Second, "backlog drained", func() bool { return getSubT(t, d, sub.GetId()).GetBacklog() == 0 })

	// Minutes 1 to 3 (end exclusive): events 1, 2 and 3 of evs.
	resp, err := c.ReplaySubscription(ctx, &integrationv1.ReplaySubscriptionRequest{
		Id: sub.GetId(), StartTime: timestamppb.New(base.Add(time.Minute)), EndTime: timestamppb.New(base.Add(4 * time.Minute)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetQueued() != 3 {
		t.Fatalf("queued %d, want 3", resp.GetQueued())
	}
	eventually(t, 3*time.Second, "replay delivered", func() bool { return len(rc.processedEvents()) == len(evs)+3 })
	eventually(t, 3*time.Second, "backlog drained", func() bool { return getSubT(t, d, sub.GetId()).GetBacklog() == 0 })
	replayed := map[string]bool{}
	for _, r := range rc.processedEvents()[len(evs):] {
		replayed[r.id] = true
	}
	for _, e := range evs[1:4] {
		if !replayed[e.GetId()] {
			t.Errorf("event %s was not replayed", e.GetId())
		}
	}

	_, err = c.ReplaySubscription(ctx, &integrationv1.ReplaySubscriptionRequest{Id: sub.GetId(), StartTime: timestamppb.Now(), EndTime: timestamppb.New(time.Now().Add(-time.Hour))})
	wantError(t, err, codes.InvalidArgument, apierr.ReasonInvalidArgument, "end_time")

	// Events still pending for the subscription are not queued twice.
	pause := &integrationv1.Subscription{Id: sub.GetId(), Status: integrationv1.SubscriptionStatus_SUBSCRIPTION_STATUS_PAUSED}
	if _, err := d.UpdateSubscription(ctx, pause); err != nil {
		t.Fatal(err)
	}
	n1, err := d.ReplaySubscription(ctx, sub.GetId(), base, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	n2, err := d.ReplaySubscription(ctx, sub.GetId(), base, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if n1 != int64(len(evs)) || n2 != 0 {
		t.Fatalf("replays queued %d then %d, want %d then 0", n1, n2, len(evs))
	}
}

// A receiver answering 410 Gone or 500 to the test event gets a DEAD test
// delivery, with no dead letter and no effect on the subscription's health.
func TestSendTestEventFailureLeavesHealthAlone(t *testing.T) {
	db, _ := tempStore(t)
	d := newDispatcher(t, db, testOptions())
	rc := newReceiver(t, func(*http.Request, string, int) answer { return answer{code: http.StatusGone} })
	sub, _ := createSub(t, d, rc.url())
	dl, err := d.SendTestEvent(context.Background(), sub.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if dl.GetStatus() != integrationv1.DeliveryStatus_DELIVERY_STATUS_DEAD || dl.GetAttempts()[0].GetStatusCode() != 410 {
		t.Fatalf("delivery %v", dl)
	}
	if s := getSubT(t, d, sub.GetId()); s.GetConsecutiveFailures() != 0 || s.GetBacklog() != 0 {
		t.Fatalf("subscription health changed by a test event: %v", s)
	}
	if n := len(deadLetters(t, d, "")); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
	listed := deliveries(t, d, sub.GetId(), integrationv1.DeliveryStatus_DELIVERY_STATUS_DEAD)
	if len(listed) != 1 || listed[0].GetId() != dl.GetId() {
		t.Fatalf("listed %v", listed)
	}
}
