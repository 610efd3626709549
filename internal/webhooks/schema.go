package webhooks

import (
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	"github.com/millrace/millrace/internal/storage"
)

// Buckets the webhooks keep in the integration store. The store's Schema
// must list them all (append Buckets to its Buckets).
var (
	// bucketSubs holds subscriptions by id: a subRecord in JSON.
	bucketSubs = []byte("webhook_subscriptions")
	// bucketDeliveries holds deliveries by id (ids sort by creation time):
	// a deliveryRecord in JSON.
	bucketDeliveries = []byte("webhook_deliveries")
	// bucketBySub indexes deliveries by Key(subscription, delivery), for
	// ListDeliveries newest first.
	bucketBySub = []byte("webhook_deliveries_by_sub")
	// bucketByStatus indexes deliveries by Key(subscription, status,
	// delivery), for ListDeliveries filtered by status.
	bucketByStatus = []byte("webhook_deliveries_by_status")
	// bucketByEvent maps Key(subscription, event) to the latest delivery of
	// that event, which makes Consume idempotent.
	bucketByEvent = []byte("webhook_deliveries_by_event")
	// bucketQueue holds the pending deliveries in delivery order:
	// Key(subscription, subject, Uint64Key(position)) → delivery id. The
	// first entry of a (subscription, subject) prefix is the only one that
	// may be attempted, which is what keeps one aggregate's events in order.
	bucketQueue = []byte("webhook_queue")
	// bucketDeadLetters holds dead letters by id: an integrationv1.DeadLetter
	// whose Delivery carries only the ids (the delivery itself is read from
	// bucketDeliveries, so a listing shows its current attempts).
	bucketDeadLetters = []byte("webhook_dead_letters")
	// bucketDeadBySub indexes dead letters by Key(subscription, dead letter).
	bucketDeadBySub = []byte("webhook_dead_letters_by_sub")
)

// Buckets lists every bucket the webhooks use, for the integration store's
// Schema.
var Buckets = [][]byte{
	bucketSubs,
	bucketDeliveries,
	bucketBySub,
	bucketByStatus,
	bucketByEvent,
	bucketQueue,
	bucketDeadLetters,
	bucketDeadBySub,
}

// subscription is a stored subscription with what the contract does not
// show: its sealed signing secrets and how long it has been failing.
type subscription struct {
	pb           *integrationv1.Subscription
	secret       []byte    // current signing secret, sealed (see secrets.go)
	prevSecret   []byte    // previous secret during a rotation, sealed
	prevExpire   time.Time // until when prevSecret still signs
	failingSince time.Time // first failed attempt since the last success; zero when healthy
}

type subRecord struct {
	Sub          []byte    `json:"sub"`
	Secret       []byte    `json:"secret"`
	PrevSecret   []byte    `json:"prev_secret,omitempty"`
	PrevExpire   time.Time `json:"prev_expire,omitzero"`
	FailingSince time.Time `json:"failing_since,omitzero"`
}

// delivery is one event on its way to one subscription.
type delivery struct {
	pb         *integrationv1.Delivery
	event      *eventsv1.Envelope
	lane       string // ordering key: the event's subject
	queue      uint64 // position in bucketQueue while pending
	series     int    // index in pb.Attempts where the current retry series began
	deadLetter string // id of its dead letter while dead
	test       bool   // a SendTestEvent delivery: never queued or retried
}

type deliveryRecord struct {
	Delivery   []byte `json:"delivery"`
	Event      []byte `json:"event"`
	Lane       string `json:"lane"`
	Queue      uint64 `json:"queue,omitempty"`
	Series     int    `json:"series,omitempty"`
	DeadLetter string `json:"dead_letter,omitempty"`
	Test       bool   `json:"test,omitempty"`
}

func getSub(tx *bbolt.Tx, id string) (*subscription, error) {
	v := tx.Bucket(bucketSubs).Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	return decodeSub(v)
}

func decodeSub(v []byte) (*subscription, error) {
	var r subRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decode subscription: %w", err)
	}
	pb := &integrationv1.Subscription{}
	if err := storage.UnmarshalProto(r.Sub, pb); err != nil {
		return nil, fmt.Errorf("decode subscription: %w", err)
	}
	return &subscription{pb: pb, secret: r.Secret, prevSecret: r.PrevSecret, prevExpire: r.PrevExpire, failingSince: r.FailingSince}, nil
}

func putSub(tx *bbolt.Tx, s *subscription) error {
	b, err := storage.MarshalProto(s.pb)
	if err != nil {
		return err
	}
	v, err := json.Marshal(subRecord{Sub: b, Secret: s.secret, PrevSecret: s.prevSecret, PrevExpire: s.prevExpire, FailingSince: s.failingSince})
	if err != nil {
		return err
	}
	return tx.Bucket(bucketSubs).Put([]byte(s.pb.GetId()), v)
}

// allSubs reads every subscription. There are tens, not thousands, so
// Consume reads them in its transaction rather than keeping a cache that
// could disagree with the store.
func allSubs(tx *bbolt.Tx) ([]*subscription, error) {
	var out []*subscription
	err := tx.Bucket(bucketSubs).ForEach(func(_, v []byte) error {
		s, err := decodeSub(v)
		if err != nil {
			return err
		}
		out = append(out, s)
		return nil
	})
	return out, err
}

func getDelivery(tx *bbolt.Tx, id string) (*delivery, error) {
	v := tx.Bucket(bucketDeliveries).Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	var r deliveryRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decode delivery %s: %w", id, err)
	}
	d := &delivery{pb: &integrationv1.Delivery{}, event: &eventsv1.Envelope{}, lane: r.Lane, queue: r.Queue, series: r.Series, deadLetter: r.DeadLetter, test: r.Test}
	if err := storage.UnmarshalProto(r.Delivery, d.pb); err != nil {
		return nil, fmt.Errorf("decode delivery %s: %w", id, err)
	}
	if err := storage.UnmarshalProto(r.Event, d.event); err != nil {
		return nil, fmt.Errorf("decode delivery %s: %w", id, err)
	}
	return d, nil
}

func putDelivery(tx *bbolt.Tx, d *delivery) error {
	db, err := storage.MarshalProto(d.pb)
	if err != nil {
		return err
	}
	eb, err := storage.MarshalProto(d.event)
	if err != nil {
		return err
	}
	v, err := json.Marshal(deliveryRecord{Delivery: db, Event: eb, Lane: d.lane, Queue: d.queue, Series: d.series, DeadLetter: d.deadLetter, Test: d.test})
	if err != nil {
		return err
	}
	return tx.Bucket(bucketDeliveries).Put([]byte(d.pb.GetId()), v)
}

// statusKey is the bucketByStatus key of a delivery.
func statusKey(subID string, st integrationv1.DeliveryStatus, id string) []byte {
	return storage.KeyStrings(subID, st.String(), id)
}

func queueKey(subID, lane string, pos uint64) []byte {
	return storage.Key([]byte(subID), []byte(lane), storage.Uint64Key(pos))
}

// insertDelivery writes a new delivery and its index entries. A pending
// delivery also joins the end of its lane's queue.
func insertDelivery(tx *bbolt.Tx, d *delivery) error {
	id, subID := d.pb.GetId(), d.pb.GetSubscriptionId()
	if err := tx.Bucket(bucketBySub).Put(storage.KeyStrings(subID, id), nil); err != nil {
		return err
	}
	if err := tx.Bucket(bucketByStatus).Put(statusKey(subID, d.pb.GetStatus(), id), nil); err != nil {
		return err
	}
	if d.pb.GetStatus() == integrationv1.DeliveryStatus_DELIVERY_STATUS_PENDING {
		if err := enqueue(tx, d); err != nil {
			return err
		}
	}
	return putDelivery(tx, d)
}

// enqueue puts a pending delivery at the end of its lane.
func enqueue(tx *bbolt.Tx, d *delivery) error {
	q := tx.Bucket(bucketQueue)
	pos, err := q.NextSequence()
	if err != nil {
		return err
	}
	d.queue = pos
	return q.Put(queueKey(d.pb.GetSubscriptionId(), d.lane, pos), []byte(d.pb.GetId()))
}

// setStatus moves a delivery to another status, keeping the status index
// and the queue in step. The caller writes the delivery afterwards.
func setStatus(tx *bbolt.Tx, d *delivery, st integrationv1.DeliveryStatus) error {
	old := d.pb.GetStatus()
	if old == st {
		return nil
	}
	id, subID := d.pb.GetId(), d.pb.GetSubscriptionId()
	bs := tx.Bucket(bucketByStatus)
	if err := bs.Delete(statusKey(subID, old, id)); err != nil {
		return err
	}
	if err := bs.Put(statusKey(subID, st, id), nil); err != nil {
		return err
	}
	pending := integrationv1.DeliveryStatus_DELIVERY_STATUS_PENDING
	switch {
	case old == pending && !d.test:
		if err := tx.Bucket(bucketQueue).Delete(queueKey(subID, d.lane, d.queue)); err != nil {
			return err
		}
		d.queue = 0
	case st == pending:
		if err := enqueue(tx, d); err != nil {
			return err
		}
	}
	d.pb.Status = st
	return nil
}

// deleteDelivery removes a delivery and every index entry that names it.
func deleteDelivery(tx *bbolt.Tx, d *delivery) error {
	id, subID := d.pb.GetId(), d.pb.GetSubscriptionId()
	if d.pb.GetStatus() == integrationv1.DeliveryStatus_DELIVERY_STATUS_PENDING && !d.test {
		if err := tx.Bucket(bucketQueue).Delete(queueKey(subID, d.lane, d.queue)); err != nil {
			return err
		}
	}
	if err := tx.Bucket(bucketByStatus).Delete(statusKey(subID, d.pb.GetStatus(), id)); err != nil {
		return err
	}
	if err := tx.Bucket(bucketBySub).Delete(storage.KeyStrings(subID, id)); err != nil {
		return err
	}
	be := tx.Bucket(bucketByEvent)
	ek := storage.KeyStrings(subID, d.pb.GetEventId())
	if string(be.Get(ek)) == id {
		if err := be.Delete(ek); err != nil {
			return err
		}
	}
	if d.deadLetter != "" {
		if err := deleteDeadLetter(tx, subID, d.deadLetter); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketDeliveries).Delete([]byte(id))
}

func deleteDeadLetter(tx *bbolt.Tx, subID, id string) error {
	if err := tx.Bucket(bucketDeadBySub).Delete(storage.KeyStrings(subID, id)); err != nil {
		return err
	}
	return tx.Bucket(bucketDeadLetters).Delete([]byte(id))
}

// laneHead returns the first pending delivery of a lane, or "".
func laneHead(tx *bbolt.Tx, subID, lane string) string {
	prefix := storage.KeyStrings(subID, lane)
	k, v := tx.Bucket(bucketQueue).Cursor().Seek(prefix)
	if k == nil || !hasPrefix(k, prefix) {
		return ""
	}
	return string(v)
}

func hasPrefix(k, prefix []byte) bool {
	return len(k) >= len(prefix) && string(k[:len(prefix)]) == string(prefix)
}
