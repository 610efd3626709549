package storage

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"go.etcd.io/bbolt"
)

// MaxGroupSize bounds how many Batch callers share one transaction.
const MaxGroupSize = 1000

// groupCommitter is the group commit behind DB.Batch. Callers queue their
// functions; one committer goroutine runs everything queued in a single
// read-write transaction and fsync, and while that commit is on disk the
// next callers queue up for the following one. A lone writer therefore
// waits for one commit, not for a collection timer, and under load every
// fsync carries all the writers that arrived during the previous one (and,
// after one pass of the scheduler before each group, those about to).
type groupCommitter struct {
	db *DB

	mu      sync.Mutex
	queue   []*groupCall
	running bool
}

type groupCall struct {
	fn   func(*bbolt.Tx) error
	done chan error
}

// errRunAlone tells a caller whose function failed inside a shared
// transaction to run it again in a transaction of its own, so that it gets
// its own error and the others are not held back by it.
var errRunAlone = errors.New("storage: run the function in a transaction of its own")

func (g *groupCommitter) do(fn func(*bbolt.Tx) error) error {
	c := &groupCall{fn: fn, done: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, c)
	if !g.running {
		g.running = true
		go g.run()
	}
	g.mu.Unlock()
	if err := <-c.done; err != errRunAlone {
		return err
	}
	return g.db.update(fn)
}

// run commits groups until the queue is empty.
func (g *groupCommitter) run() {
	for {
		// Before collecting a group, let the goroutines that are ready to
		// run go first. Writers come in bursts (the callers a commit of
		// another store has just released, on their way to this one), and
		// one pass of the scheduler lets the burst queue up and share this
		// commit instead of waiting for the next: a linger that costs no
		// time when nobody else is runnable. In alternating runs of
		// create-order-64 it gave 3–36 % more orders/s (bench/README.md).
		runtime.Gosched()
		g.mu.Lock()
		n := min(len(g.queue), MaxGroupSize)
		if n == 0 {
			g.running = false
			g.mu.Unlock()
			return
		}
		calls := g.queue[:n:n]
		g.queue = append([]*groupCall(nil), g.queue[n:]...)
		g.mu.Unlock()
		g.commit(calls)
	}
}

// commit runs calls in one transaction. A function that fails (or panics)
// rolls the transaction back; it is told to run alone and the others are
// run again without it.
func (g *groupCommitter) commit(calls []*groupCall) {
	for len(calls) > 0 {
		failed := -1
		start := time.Now()
		err := g.db.bolt.Update(func(tx *bbolt.Tx) error {
			g.db.beginWrite(tx)
			for i, c := range calls {
				if err := callSafely(c.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			if err == nil {
				g.db.committed(len(calls), start)
			}
			for _, c := range calls {
				c.done <- err
			}
			return
		}
		calls[failed].done <- errRunAlone
		calls = append(calls[:failed:failed], calls[failed+1:]...)
	}
}

// callSafely turns a panic in fn into an error, so that one bad function
// cannot take the committer down with everyone's calls in it; the caller
// then runs it alone and the panic surfaces in its own goroutine.
func callSafely(fn func(*bbolt.Tx) error, tx *bbolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in a batched write: %v", p)
		}
	}()
	return fn(tx)
}
