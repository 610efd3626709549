package order

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/idempotency"
	"github.com/millrace/millrace/internal/storage"
)

// store keeps the order domain in one bbolt file (see schema.go). Each
// domain operation is one transaction: a record, its index entries, its
// timeline entries, its queued compensations and its events are written
// together or not at all.
type store struct {
	db      *storage.DB
	notify  func()
	metrics *metrics // counts the status changes of each commit; may be nil
}

// storeTx is one transaction; it implements txn.
type storeTx struct {
	ctx     context.Context
	tx      *bbolt.Tx
	emitted int
	changes []statusChange // the timeline entries written, for the metrics
}

func (s *store) view(ctx context.Context, fn func(txn) error) error {
	return s.db.View(func(tx *bbolt.Tx) error { return fn(&storeTx{ctx: ctx, tx: tx}) })
}

// update uses group commit: concurrent writers (fifty CreateOrder calls
// with one external reference, say) share one fsync, and each still sees
// the others' writes, which is what makes the unique index decide.
func (s *store) update(ctx context.Context, fn func(txn) error) error {
	write, t := s.run(ctx, fn)
	err := s.db.BatchEmit(s.notify, write)
	s.committed(err, *t)
	return err
}

// updateSolo is update in a transaction of its own, for a lone writer (an
// event consumer handles one event at a time) that would only wait for
// company in a group commit.
func (s *store) updateSolo(ctx context.Context, fn func(txn) error) error {
	write, t := s.run(ctx, fn)
	err := s.db.UpdateEmit(s.notify, write)
	s.committed(err, *t)
	return err
}

// run adapts fn to a storage write. The second result points to the
// transaction of the write's last run, the one that committed when the
// write returns no error (a group commit runs a function again when the
// group is retried without another's failed one).
func (s *store) run(ctx context.Context, fn func(txn) error) (storage.WriteFunc, **storeTx) {
	last := new(*storeTx)
	return func(tx *bbolt.Tx) (bool, error) {
		t := &storeTx{ctx: ctx, tx: tx}
		*last = t
		err := fn(t)
		return t.emitted > 0, err
	}, last
}

// committed reports the status changes of a write that committed.
func (s *store) committed(err error, t *storeTx) {
	if err == nil && t != nil && len(t.changes) > 0 {
		s.metrics.committed(t.changes)
	}
}

// ---------------------------------------------------------------------------
// Orders.

func (t *storeTx) order(id string) (*orderRecord, error) {
	if id == "" {
		return nil, nil
	}
	v := t.tx.Bucket(bucketOrders).Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	rec := &orderRecord{o: &orderv1.Order{}}
	if err := storage.UnmarshalProto(v, rec.o); err != nil {
		return nil, fmt.Errorf("decode order %s: %w", id, err)
	}
	if sv := t.tx.Bucket(bucketOrderState).Get([]byte(id)); sv != nil {
		if err := json.Unmarshal(sv, &rec.st); err != nil {
			return nil, fmt.Errorf("decode state of order %s: %w", id, err)
		}
	}
	return rec, nil
}

func (t *storeTx) orderByRef(system, refID string) (string, error) {
	pk, ok := ixOrderRef.Lookup(t.tx, refKey(system, refID))
	if !ok {
		return "", nil
	}
	return string(pk), nil
}

func (t *storeTx) attach(id string) error { return idempotency.Attach(t.ctx, t.tx, id) }

// orderIndexKeys are the list-index keys of an order.
type orderIndexKeys struct {
	created, customer, status, customerStatus []byte
}

func orderKeys(o *orderv1.Order) orderIndexKeys {
	c := timePart(o.GetCreateTime().AsTime())
	return orderIndexKeys{
		created:        storage.Key(c),
		customer:       storage.Key([]byte(o.GetCustomerId()), c),
		status:         storage.Key([]byte(statusKey(o.GetStatus())), c),
		customerStatus: storage.Key([]byte(o.GetCustomerId()), []byte(statusKey(o.GetStatus())), c),
	}
}

// due reports whether the background must drive an order.
func due(rec *orderRecord) bool {
	if rec.st.Step == "" {
		return false
	}
	s := rec.o.GetStatus()
	return s == statusPending || (s == statusOnHold && rec.o.GetHoldReason() == holdCreditPending)
}

func (t *storeTx) putOrder(old, rec *orderRecord) error {
	o := rec.o
	pk := []byte(o.GetId())
	if o.GetId() == "" || o.GetCreateTime() == nil {
		return errors.New("order store: an order needs an id and a create time")
	}
	b, err := storage.MarshalProto(o)
	if err != nil {
		return fmt.Errorf("encode order %s: %w", o.GetId(), err)
	}
	sb, err := json.Marshal(rec.st)
	if err != nil {
		return fmt.Errorf("encode state of order %s: %w", o.GetId(), err)
	}

	var oldRef, newRef []byte
	if r := o.GetExternalRef(); r != nil {
		newRef = refKey(r.GetSystem(), r.GetId())
	}
	if old != nil {
		if r := old.o.GetExternalRef(); r != nil {
			oldRef = refKey(r.GetSystem(), r.GetId())
		}
	}
	if err := storage.UpdateIndex(t.tx, ixOrderRef, oldRef, newRef, pk); err != nil {
		var uv *storage.UniqueViolationError
		if errors.As(err, &uv) {
			return &refTakenError{Field: "order.external_ref", System: o.GetExternalRef().GetSystem(), RefID: o.GetExternalRef().GetId(), Holder: string(uv.Holder)}
		}
		return err
	}

	nk := orderKeys(o)
	var ok orderIndexKeys
	if old != nil {
		ok = orderKeys(old.o)
	}
	for _, u := range []struct {
		ix       storage.Index
		from, to []byte
	}{
		{ixOrderCreated, ok.created, nk.created},
		{ixOrderCustomer, ok.customer, nk.customer},
		{ixOrderStatus, ok.status, nk.status},
		{ixOrderCustomerStatus, ok.customerStatus, nk.customerStatus},
	} {
		if err := storage.UpdateIndex(t.tx, u.ix, u.from, u.to, pk); err != nil {
			return err
		}
	}

	dueSet := t.tx.Bucket(bucketOrdersDue)
	if due(rec) {
		err = dueSet.Put(pk, nil)
	} else {
		err = dueSet.Delete(pk)
	}
	if err != nil {
		return err
	}
	if err := t.tx.Bucket(bucketOrders).Put(pk, b); err != nil {
		return err
	}
	return t.tx.Bucket(bucketOrderState).Put(pk, sb)
}

func (t *storeTx) dueOrders() ([]string, error) {
	var out []string
	err := t.tx.Bucket(bucketOrdersDue).ForEach(func(k, _ []byte) error {
		out = append(out, string(k))
		return nil
	})
	return out, err
}

func orderIndex(kind listKind) storage.Index {
	switch kind {
	case listByCustomer:
		return ixOrderCustomer
	case listByStatus:
		return ixOrderStatus
	case listByCustomerStatus:
		return ixOrderCustomerStatus
	}
	return ixOrderCreated
}

func quoteIndex(kind listKind) storage.Index {
	switch kind {
	case listByCustomer:
		return ixQuoteCustomer
	case listByStatus:
		return ixQuoteStatus
	case listByCustomerStatus:
		return ixQuoteCustomerStatus
	}
	return ixQuoteCreated
}

// scanRange walks the entries of one list range: the index keys that start
// with q.parts, from q.from (or just after q.after) up to q.before.
func scanRange(tx *bbolt.Tx, ix storage.Index, q scanQuery, fn func(head, pk []byte) (bool, error)) error {
	prefix := storage.KeyStrings(q.parts...)
	var afterKey, afterPK []byte
	switch {
	case q.after != nil:
		afterKey, afterPK = q.after.Key, []byte(q.after.PK)
		if !bytes.HasPrefix(afterKey, prefix) {
			return errors.New("order store: page position outside the listed range")
		}
	case !q.from.IsZero():
		// An empty primary key sorts before every real one, so this seeks
		// to the first entry created at or after q.from.
		afterKey, afterPK = append(bytes.Clone(prefix), storage.Key(timePart(q.from))...), []byte{}
	}
	var end []byte
	if !q.before.IsZero() {
		end = timePart(q.before)
	}
	var ferr error
	err := ix.ScanAfter(tx, prefix, afterKey, afterPK, 0, func(head, pk []byte) bool {
		if end != nil {
			parts, err := storage.SplitKey(head)
			if err != nil || len(parts) == 0 {
				ferr = fmt.Errorf("order store: corrupt index key %q", head)
				return false
			}
			if bytes.Compare(parts[len(parts)-1], end) >= 0 {
				return false
			}
		}
		more, err := fn(head, pk)
		if err != nil {
			ferr = err
			return false
		}
		return more
	})
	if err != nil {
		return err
	}
	return ferr
}

func (t *storeTx) scanOrders(q scanQuery, fn func(*orderRecord, position) bool) error {
	return scanRange(t.tx, orderIndex(q.kind), q, func(head, pk []byte) (bool, error) {
		rec, err := t.order(string(pk))
		if err != nil || rec == nil {
			return err == nil, err
		}
		return fn(rec, position{Key: head, PK: string(pk)}), nil
	})
}

func (t *storeTx) appendTimeline(orderID string, e *orderv1.TimelineEntry) error {
	b := t.tx.Bucket(bucketTimeline)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	v, err := storage.MarshalProto(e)
	if err != nil {
		return fmt.Errorf("encode timeline entry of order %s: %w", orderID, err)
	}
	if err := b.Put(storage.Key([]byte(orderID), storage.Uint64Key(seq)), v); err != nil {
		return err
	}
	t.changes = append(t.changes, statusChange{from: e.GetFromStatus(), to: e.GetToStatus(), hold: e.GetHoldReason()})
	return nil
}

func (t *storeTx) timeline(orderID string) ([]*orderv1.TimelineEntry, error) {
	prefix := storage.Key([]byte(orderID))
	var out []*orderv1.TimelineEntry
	c := t.tx.Bucket(bucketTimeline).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		e := &orderv1.TimelineEntry{}
		if err := storage.UnmarshalProto(v, e); err != nil {
			return nil, fmt.Errorf("decode timeline entry of order %s: %w", orderID, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// ---------------------------------------------------------------------------
// Quotes.

func (t *storeTx) quote(id string) (*quoteRecord, error) {
	if id == "" {
		return nil, nil
	}
	v := t.tx.Bucket(bucketQuotes).Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	q := &orderv1.Quote{}
	if err := storage.UnmarshalProto(v, q); err != nil {
		return nil, fmt.Errorf("decode quote %s: %w", id, err)
	}
	return &quoteRecord{q: q}, nil
}

func (t *storeTx) quoteByRef(system, refID string) (string, error) {
	pk, ok := ixQuoteRef.Lookup(t.tx, refKey(system, refID))
	if !ok {
		return "", nil
	}
	return string(pk), nil
}

type quoteIndexKeys struct {
	created, customer, status, customerStatus, expiry []byte
}

func quoteKeys(q *orderv1.Quote) quoteIndexKeys {
	c := timePart(q.GetCreateTime().AsTime())
	k := quoteIndexKeys{
		created:        storage.Key(c),
		customer:       storage.Key([]byte(q.GetCustomerId()), c),
		status:         storage.Key([]byte(quoteStatusKey(q.GetStatus())), c),
		customerStatus: storage.Key([]byte(q.GetCustomerId()), []byte(quoteStatusKey(q.GetStatus())), c),
	}
	if quoteOpen(q.GetStatus()) {
		k.expiry = storage.Key(timePart(q.GetValidUntil().AsTime()))
	}
	return k
}

func (t *storeTx) putQuote(old, rec *quoteRecord) error {
	q := rec.q
	pk := []byte(q.GetId())
	if q.GetId() == "" || q.GetCreateTime() == nil {
		return errors.New("order store: a quote needs an id and a create time")
	}
	b, err := storage.MarshalProto(q)
	if err != nil {
		return fmt.Errorf("encode quote %s: %w", q.GetId(), err)
	}
	var oldRef, newRef []byte
	if r := q.GetExternalRef(); r != nil {
		newRef = refKey(r.GetSystem(), r.GetId())
	}
	var ok quoteIndexKeys
	if old != nil {
		ok = quoteKeys(old.q)
		if r := old.q.GetExternalRef(); r != nil {
			oldRef = refKey(r.GetSystem(), r.GetId())
		}
	}
	if err := storage.UpdateIndex(t.tx, ixQuoteRef, oldRef, newRef, pk); err != nil {
		var uv *storage.UniqueViolationError
		if errors.As(err, &uv) {
			return &refTakenError{Field: "quote.external_ref", System: q.GetExternalRef().GetSystem(), RefID: q.GetExternalRef().GetId(), Holder: string(uv.Holder)}
		}
		return err
	}
	nk := quoteKeys(q)
	for _, u := range []struct {
		ix       storage.Index
		from, to []byte
	}{
		{ixQuoteCreated, ok.created, nk.created},
		{ixQuoteCustomer, ok.customer, nk.customer},
		{ixQuoteStatus, ok.status, nk.status},
		{ixQuoteCustomerStatus, ok.customerStatus, nk.customerStatus},
		{ixQuoteExpiry, ok.expiry, nk.expiry},
	} {
		if err := storage.UpdateIndex(t.tx, u.ix, u.from, u.to, pk); err != nil {
			return err
		}
	}
	return t.tx.Bucket(bucketQuotes).Put(pk, b)
}

func (t *storeTx) scanQuotes(q scanQuery, fn func(*quoteRecord, position) bool) error {
	return scanRange(t.tx, quoteIndex(q.kind), q, func(head, pk []byte) (bool, error) {
		rec, err := t.quote(string(pk))
		if err != nil || rec == nil {
			return err == nil, err
		}
		return fn(rec, position{Key: head, PK: string(pk)}), nil
	})
}

func (t *storeTx) expiringQuotes(now time.Time, limit int) ([]string, error) {
	var out []string
	err := scanRange(t.tx, ixQuoteExpiry, scanQuery{before: now.Add(time.Nanosecond)}, func(_, pk []byte) (bool, error) {
		out = append(out, string(pk))
		return len(out) < limit, nil
	})
	return out, err
}

// ---------------------------------------------------------------------------
// Compensations, events, de-duplication.

func compKey(c compensation) []byte { return storage.KeyStrings(c.Kind, c.target()) }

func (t *storeTx) owe(c compensation) error {
	v, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return t.tx.Bucket(bucketCompensations).Put(compKey(c), v)
}

func (t *storeTx) owed() ([]compensation, error) {
	var out []compensation
	err := t.tx.Bucket(bucketCompensations).ForEach(func(k, v []byte) error {
		var c compensation
		if err := json.Unmarshal(v, &c); err != nil {
			return fmt.Errorf("decode compensation %q: %w", k, err)
		}
		out = append(out, c)
		return nil
	})
	return out, err
}

func (t *storeTx) settle(c compensation) error {
	return t.tx.Bucket(bucketCompensations).Delete(compKey(c))
}

func (t *storeTx) emit(subject, region string, msg proto.Message) (string, error) {
	return t.emitAt(subject, region, 0, msg)
}

func (t *storeTx) eventSeq(subject string) uint64 { return storage.AggregateSeq(t.tx, subject) }

func (t *storeTx) emitAt(subject, region string, seq uint64, msg proto.Message) (string, error) {
	env, err := events.Append(t.ctx, t.tx, events.Draft{Service: "order", Subject: subject, Region: region, Data: msg, Sequence: seq})
	if err != nil {
		return "", err
	}
	t.emitted++
	return env.GetId(), nil
}

func (t *storeTx) processed(consumer, eventID string, at time.Time) (bool, error) {
	return storage.MarkProcessed(t.tx, consumer, eventID, at)
}
