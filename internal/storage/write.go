package storage

import "go.etcd.io/bbolt"

// WriteFunc is one write transaction of a service: it reports whether it
// appended events to the outbox.
type WriteFunc func(tx *bbolt.Tx) (emitted bool, err error)

// BatchEmit runs fn with group commit (concurrent writers share one fsync)
// and, after a commit in which fn appended events, calls notify (the outbox
// relay's wake-up; may be nil). bbolt may run fn more than once when another
// function of the batch fails, so only the run that committed counts.
func (db *DB) BatchEmit(notify func(), fn WriteFunc) error {
	var emitted bool
	err := db.Batch(func(tx *bbolt.Tx) error {
		var err error
		emitted, err = fn(tx)
		return err
	})
	if err == nil && emitted && notify != nil {
		notify()
	}
	return err
}

// UpdateEmit is BatchEmit in a transaction of its own, for a lone writer
// (an event consumer, a bulk load) that would only wait for company in a
// group commit.
func (db *DB) UpdateEmit(notify func(), fn WriteFunc) error {
	var emitted bool
	err := db.Update(func(tx *bbolt.Tx) error {
		var err error
		emitted, err = fn(tx)
		return err
	})
	if err == nil && emitted && notify != nil {
		notify()
	}
	return err
}
