package natsbus_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/feed"
	"github.com/millrace/millrace/internal/storage"
)

// TestOutboxToFeed runs the mesh-mode path end to end: a service's outbox,
// its relay, the NATS bus, and the feed subscribed as the consumer "feed".
func TestOutboxToFeed(t *testing.T) {
	url := embedded(t)
	open := func(name string, s storage.Schema) *storage.DB {
		db, err := storage.Open(filepath.Join(t.TempDir(), name+".db"), s, storage.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		return db
	}
	orders := open("order", storage.Schema{Name: "order", Version: 1})
	integration := open("integration", storage.Schema{Name: "integration", Version: 1, Buckets: feed.Buckets})
	log, err := feed.NewLog(integration, feed.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bus := connect(t, url, testOptions(t))
	defer bus.Close()
	sub, err := bus.Subscribe("feed", nil, log.Consume)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()

	var (
		want      []string
		committed []*eventsv1.Envelope
	)
	for i := range 40 {
		err := orders.Update(func(tx *bbolt.Tx) error {
			env, err := events.Append(t.Context(), tx, events.Draft{Service: "order", Subject: events.Subject("orders", "ord-1"), Data: &eventsv1.OrderStatusChanged{OrderId: "ord-1"}})
			if err == nil {
				want = append(want, env.GetId())
				committed = append(committed, env)
			}
			return err
		})
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	relay := events.NewRelay(orders, bus, discard, events.WithBatchSize(16))
	for {
		n, err := relay.Flush(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	// A relay that crashed before marking its batch publishes it again: the
	// stream drops the copies by Nats-Msg-Id, the feed by event id.
	for _, env := range committed {
		if err := bus.Publish(t.Context(), env); err != nil {
			t.Fatal(err)
		}
	}

	deadline := time.Now().Add(15 * time.Second)
	for {
		page, _, err := log.List(context.Background(), "", []string{"millrace.events.v1.OrderStatusChanged"}, 1000)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, fe := range page {
			got = append(got, fe.GetEvent().GetId())
		}
		if slices.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("feed holds %d events, want the %d committed, once each, in commit order", len(got), len(want))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
