package customer

import (
	"context"
	"encoding/json"
	"fmt"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/idempotency"
	"github.com/millrace/millrace/internal/storage"
)

// store keeps the customer domain in one bbolt file (see schema.go). Each
// domain operation is one transaction; an account, its index entries and
// its events are written together or not at all.
type store struct {
	db     *storage.DB
	notify func()
}

// storeTx is one transaction; it implements txn.
type storeTx struct {
	ctx     context.Context
	tx      *bbolt.Tx
	emitted int
}

func (s *store) view(ctx context.Context, fn func(txn) error) error {
	return s.db.View(func(tx *bbolt.Tx) error { return fn(&storeTx{ctx: ctx, tx: tx}) })
}

// update uses group commit: concurrent writers share one fsync.
func (s *store) update(ctx context.Context, fn func(txn) error) error {
	return s.db.BatchEmit(s.notify, s.run(ctx, fn))
}

// updateBulk is update in a transaction of its own, for a batch upsert
// that would only wait for company in a group commit.
func (s *store) updateBulk(ctx context.Context, fn func(txn) error) error {
	return s.db.UpdateEmit(s.notify, s.run(ctx, fn))
}

func (s *store) run(ctx context.Context, fn func(txn) error) storage.WriteFunc {
	return func(tx *bbolt.Tx) (bool, error) {
		t := &storeTx{ctx: ctx, tx: tx}
		err := fn(t)
		return t.emitted > 0, err
	}
}

func (t *storeTx) attach(id string) error { return idempotency.Attach(t.ctx, t.tx, id) }

func (t *storeTx) customer(id string) (*customerv1.Customer, error) {
	if id == "" {
		return nil, nil
	}
	v := t.tx.Bucket(bucketCustomers).Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	return decodeCustomer(id, v)
}

func decodeCustomer(id string, v []byte) (*customerv1.Customer, error) {
	c := &customerv1.Customer{}
	if err := storage.UnmarshalProto(v, c); err != nil {
		return nil, fmt.Errorf("decode customer %s: %w", id, err)
	}
	return c, nil
}

func refKey(system, refID string) []byte { return storage.KeyStrings(system, refID) }

func (t *storeTx) refHolder(system, refID string) (string, error) {
	pk, ok := ixRef.Lookup(t.tx, refKey(system, refID))
	if !ok {
		return "", nil
	}
	return string(pk), nil
}

func (t *storeTx) childIDs(parentID, afterID string, fn func(id string) bool) error {
	var after []byte
	if afterID != "" {
		after = []byte(afterID)
	}
	return ixParent.Scan(t.tx, storage.KeyStrings(parentID), after, 0, func(_, pk []byte) bool { return fn(string(pk)) })
}

func (t *storeTx) scan(ix listIndex, key []string, afterID string, fn func(*customerv1.Customer) bool) error {
	if ix == listAll {
		c := t.tx.Bucket(bucketCustomers).Cursor()
		k, v := c.First()
		if afterID != "" {
			k, v = c.Seek([]byte(afterID))
			if k != nil && string(k) == afterID {
				k, v = c.Next()
			}
		}
		for ; k != nil; k, v = c.Next() {
			cu, err := decodeCustomer(string(k), v)
			if err != nil {
				return err
			}
			if !fn(cu) {
				return nil
			}
		}
		return nil
	}
	var index storage.Index
	switch ix {
	case listByParent:
		index = ixParent
	case listByRegion:
		index = ixRegion
	case listByStatus:
		index = ixStatus
	case listByRegionStatus:
		index = ixRegionStatus
	default:
		return fmt.Errorf("customer store: unknown list index %d", ix)
	}
	var after []byte
	if afterID != "" {
		after = []byte(afterID)
	}
	var loadErr error
	err := index.Scan(t.tx, storage.KeyStrings(key...), after, 0, func(_, pk []byte) bool {
		c, err := t.customer(string(pk))
		if err != nil {
			loadErr = err
			return false
		}
		if c == nil {
			loadErr = fmt.Errorf("customer store: index %s points at missing customer %s", index.Bucket, pk)
			return false
		}
		return fn(c)
	})
	if err != nil {
		return err
	}
	return loadErr
}

// indexKeys are the non-unique index keys of an account; nil where an
// account has no entry (a root has no parent).
type indexKeys struct{ parent, region, status, regionStatus []byte }

func keysOf(c *customerv1.Customer) indexKeys {
	if c == nil {
		return indexKeys{}
	}
	k := indexKeys{
		region:       storage.KeyStrings(c.GetRegion()),
		status:       storage.KeyStrings(statusKey(c.GetStatus())),
		regionStatus: storage.KeyStrings(c.GetRegion(), statusKey(c.GetStatus())),
	}
	if c.GetParentId() != "" {
		k.parent = storage.KeyStrings(c.GetParentId())
	}
	return k
}

func (t *storeTx) putCustomer(old, c *customerv1.Customer) error {
	if c.GetId() == "" {
		return fmt.Errorf("customer store: put without an id")
	}
	pk := []byte(c.GetId())
	b, err := storage.MarshalProto(c)
	if err != nil {
		return fmt.Errorf("encode customer %s: %w", c.GetId(), err)
	}
	if err := t.tx.Bucket(bucketCustomers).Put(pk, b); err != nil {
		return err
	}
	// Claim new references before dropping old ones, so a violation fails
	// the write with the old entries still in place.
	for _, r := range c.GetExternalRefs() {
		if old == nil || !hasRef(old, r) {
			if err := ixRef.Put(t.tx, refKey(r.GetSystem(), r.GetId()), pk); err != nil {
				return err
			}
		}
	}
	for _, r := range old.GetExternalRefs() {
		if !hasRef(c, r) {
			if err := ixRef.Delete(t.tx, refKey(r.GetSystem(), r.GetId()), pk); err != nil {
				return err
			}
		}
	}
	before, after := keysOf(old), keysOf(c)
	for _, u := range []struct {
		ix       storage.Index
		from, to []byte
	}{
		{ixParent, before.parent, after.parent},
		{ixRegion, before.region, after.region},
		{ixStatus, before.status, after.status},
		{ixRegionStatus, before.regionStatus, after.regionStatus},
	} {
		if err := storage.UpdateIndex(t.tx, u.ix, u.from, u.to, pk); err != nil {
			return err
		}
	}
	return nil
}

func (t *storeTx) emit(c *customerv1.Customer, event proto.Message) error {
	_, err := events.Append(t.ctx, t.tx, events.Draft{
		Service: "customer",
		Subject: events.Subject("customers", c.GetId()),
		Region:  c.GetRegion(),
		Data:    event,
	})
	if err != nil {
		return err
	}
	t.emitted++
	return nil
}

func (t *storeTx) exposure(accountID string) (*typev1.Money, error) {
	v := t.tx.Bucket(bucketExposure).Get([]byte(accountID))
	if v == nil {
		return nil, nil
	}
	m := &typev1.Money{}
	if err := storage.UnmarshalProto(v, m); err != nil {
		return nil, fmt.Errorf("decode exposure of %s: %w", accountID, err)
	}
	return m, nil
}

func (t *storeTx) setExposure(accountID string, m *typev1.Money) error {
	b := t.tx.Bucket(bucketExposure)
	if m == nil {
		return b.Delete([]byte(accountID))
	}
	v, err := storage.MarshalProto(m)
	if err != nil {
		return err
	}
	return b.Put([]byte(accountID), v)
}

func (t *storeTx) reservation(orderID string) (*reservation, error) {
	v := t.tx.Bucket(bucketReservations).Get([]byte(orderID))
	if v == nil {
		return nil, nil
	}
	r := &reservation{}
	if err := json.Unmarshal(v, r); err != nil {
		return nil, fmt.Errorf("decode reservation %s: %w", orderID, err)
	}
	return r, nil
}

func (t *storeTx) putReservation(r *reservation) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := t.tx.Bucket(bucketReservations).Put([]byte(r.OrderID), v); err != nil {
		return err
	}
	return ixReservationsByCustomer.Put(t.tx, storage.KeyStrings(r.CustomerID), []byte(r.OrderID))
}

func (t *storeTx) deleteReservation(r *reservation) error {
	if err := t.tx.Bucket(bucketReservations).Delete([]byte(r.OrderID)); err != nil {
		return err
	}
	return ixReservationsByCustomer.Delete(t.tx, storage.KeyStrings(r.CustomerID), []byte(r.OrderID))
}

func (t *storeTx) reservationsOf(customerID string, fn func(*reservation) bool) error {
	var loadErr error
	err := ixReservationsByCustomer.Scan(t.tx, storage.KeyStrings(customerID), nil, 0, func(_, pk []byte) bool {
		r, err := t.reservation(string(pk))
		if err != nil || r == nil {
			loadErr = err
			return err == nil
		}
		return fn(r)
	})
	if err != nil {
		return err
	}
	return loadErr
}
