package webhooks

import (
	"context"
	"time"

	"go.etcd.io/bbolt"

	"github.com/millrace/millrace/internal/ids"
)

// sweepEvery is how often Run removes finished deliveries past retention.
const sweepEvery = time.Hour

// sweepChunk bounds the deliveries one sweep transaction looks at, so a
// sweep never holds the store's write lock for long.
const sweepChunk = 512

func (d *Dispatcher) runSweeper(ctx context.Context) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := d.sweep(ctx, time.Now().Add(-d.opts.Retention))
			if err != nil {
				d.log.Error("webhook delivery sweep failed", "err", err)
			} else if n > 0 {
				d.log.Debug("webhook deliveries past retention removed", "count", n)
			}
		}
	}
}

// sweep removes deliveries created before cutoff that are finished:
// succeeded, or failed test deliveries. Pending deliveries and dead letters
// stay until they are resolved. Delivery ids sort by creation time, so the
// sweep reads the deliveries bucket from its start and stops at the first
// younger id, without an index of its own.
func (d *Dispatcher) sweep(ctx context.Context, cutoff time.Time) (int, error) {
	removed := 0
	var after []byte
	for ctx.Err() == nil {
		var n int
		var done bool
		err := d.db.Update(func(tx *bbolt.Tx) error {
			n, done = 0, false
			var victims []*delivery
			c := tx.Bucket(bucketDeliveries).Cursor()
			k, _ := c.First()
			if after != nil {
				k, _ = c.Seek(after)
				if k != nil && string(k) == string(after) {
					k, _ = c.Next()
				}
			}
			seen := 0
			for ; k != nil; k, _ = c.Next() {
				if t, err := ids.Time(string(k)); err != nil || !t.Before(cutoff) {
					done = true
					break
				}
				if seen == sweepChunk {
					break
				}
				seen++
				after = append(after[:0], k...)
				dl, err := getDelivery(tx, string(k))
				if err != nil {
					return err
				}
				if dl.pb.GetStatus() == succeeded || (dl.test && dl.pb.GetStatus() == dead) {
					victims = append(victims, dl)
				}
			}
			if k == nil {
				done = true
			}
			for _, dl := range victims {
				if err := deleteDelivery(tx, dl); err != nil {
					return err
				}
			}
			n = len(victims)
			return nil
		})
		if err != nil {
			return removed, err
		}
		removed += n
		if done {
			break
		}
	}
	return removed, nil
}
