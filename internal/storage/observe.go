package storage

import "time"

// Observer hears how a store's writes go, for the operations metrics: a
// store whose commits slow down (a disk under load, a neighbour syncing)
// shows it there before callers time out.
type Observer interface {
	// Committed reports one write transaction that committed: how many
	// writes it carried (more than one under group commit) and how long it
	// held the store's writer, from its start until durable.
	Committed(store string, writes int, held time.Duration)
	// Waited reports how long one write took from the call until it was
	// durable or had failed, queueing for a group commit included.
	Waited(store string, d time.Duration)
}

// SetObserver makes o hear about every write of db from now on; nil stops
// it. It may be called while the store is in use.
func (db *DB) SetObserver(o Observer) {
	if o == nil {
		db.observer.Store(nil)
		return
	}
	db.observer.Store(&o)
}

// observing returns the observer, nil when there is none.
func (db *DB) observing() Observer {
	if p := db.observer.Load(); p != nil {
		return *p
	}
	return nil
}

// observed runs a write and reports how long it waited.
func (db *DB) observed(write func() error) error {
	o := db.observing()
	if o == nil {
		return write()
	}
	start := time.Now()
	err := write()
	o.Waited(db.schema.Name, time.Since(start))
	return err
}

// committed reports a commit of writes functions that began at start.
func (db *DB) committed(writes int, start time.Time) {
	if o := db.observing(); o != nil {
		o.Committed(db.schema.Name, writes, time.Since(start))
	}
}
