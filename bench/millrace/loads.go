package millrace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/millrace/millrace/bench/harness"
	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/storage"
	"github.com/millrace/millrace/services/customer"
)

// The one-shot measurements. The harness is closed-loop over a duration;
// these measure a fixed amount of work (a bulk load) or compare two stores
// of different size, so they run on their own and print their own lines.

// LoadConfig configures the one-shot measurements.
type LoadConfig struct {
	// Dir is where the data dirs go; empty means the system temp dir. It
	// must be a real disk: the nodes measured fsync every commit.
	Dir string
	// Progress receives progress lines; nil discards them.
	Progress io.Writer

	// BulkCustomers, BulkClients: the REST bulk load. Zero means 100,000
	// customers from 4 concurrent clients.
	BulkCustomers int
	BulkClients   int

	// ScaleSmall, ScaleLarge: the store sizes the GetCustomer scale check
	// compares. Zero means 10,000 and 1,000,000.
	ScaleSmall int
	ScaleLarge int
	// ScaleRounds × ScaleDuration is how long each size is measured, in
	// interleaved rounds so that both see the same neighbours. Zero means
	// 3 rounds of 5 s, each after a 1 s warm-up, from ScaleConcurrency
	// (zero: 4) workers.
	ScaleRounds      int
	ScaleDuration    time.Duration
	ScaleConcurrency int
}

func (c *LoadConfig) defaults() {
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	c.BulkCustomers = orDefault(c.BulkCustomers, 100_000)
	c.BulkClients = orDefault(c.BulkClients, 4)
	c.ScaleSmall = orDefault(c.ScaleSmall, 10_000)
	c.ScaleLarge = orDefault(c.ScaleLarge, 1_000_000)
	c.ScaleRounds = orDefault(c.ScaleRounds, 3)
	c.ScaleConcurrency = orDefault(c.ScaleConcurrency, 4)
	if c.ScaleDuration <= 0 {
		c.ScaleDuration = 5 * time.Second
	}
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// Targets of the one-shot measurements.
const (
	// BulkTarget is the longest loading 100,000 customers through REST
	// batchUpsert may take.
	BulkTarget = 60 * time.Second
	// ScaleTargetRatio bounds GetCustomer's p99 with the large store over
	// its p99 with the small one.
	ScaleTargetRatio = 1.5
)

// RunLoads loads cfg.BulkCustomers customers into a fresh node through
// POST /v1/customers:batchUpsert, 1,000 per call from cfg.BulkClients
// concurrent clients, and prints how long it took against BulkTarget. The
// request bodies are encoded before the clock starts; the time runs from
// the first call to the last answer, and every item must come back
// UPSERT_RESULT_CREATED.
func RunLoads(ctx context.Context, w io.Writer, cfg LoadConfig) error {
	cfg.defaults()
	dir, err := os.MkdirTemp(cfg.Dir, "millrace-bulk-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	n, err := startNodeIn(ctx, dir, cfg.BulkClients)
	if err != nil {
		return err
	}
	defer n.close()
	n.http.Timeout = 5 * time.Minute // calls queue behind each other's commits

	calls := (cfg.BulkCustomers + batchSize - 1) / batchSize
	bodies := make([][]byte, calls)
	for i := range bodies {
		start := i * batchSize
		if bodies[i], err = protojson.Marshal(sampleBatch(start, min(batchSize, cfg.BulkCustomers-start))); err != nil {
			return err
		}
	}
	fmt.Fprintf(cfg.Progress, "batch-upsert-100k-rest: %d calls of up to %d customers (%.1f MB of JSON) from %d clients…\n",
		calls, batchSize, float64(totalLen(bodies))/1e6, cfg.BulkClients)

	var (
		next      atomic.Int64
		done      atomic.Int64
		mu        sync.Mutex
		latencies []time.Duration
		firstErr  error
		wg        sync.WaitGroup
	)
	created := []byte(`"UPSERT_RESULT_CREATED"`)
	start := time.Now()
	for range cfg.BulkClients {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= calls || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				got, err := n.postRead(ctx, "/v1/customers:batchUpsert", bodies[i])
				d := time.Since(t0)
				want := min(batchSize, cfg.BulkCustomers-i*batchSize)
				if err == nil && bytes.Count(got, created) != want {
					err = fmt.Errorf("call %d: %d of %d items created: %.300s", i, bytes.Count(got, created), want, got)
				}
				mu.Lock()
				latencies = append(latencies, d)
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				if err != nil {
					return
				}
				if c := done.Add(1); c%10 == 0 {
					fmt.Fprintf(cfg.Progress, "  %d/%d calls, %.1f s\n", c, calls, time.Since(start).Seconds())
				}
			}
		})
	}
	wg.Wait()
	total := time.Since(start)
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	stored, err := countCustomers(ctx, customerv1.NewCustomerServiceClient(n.conn))
	if err != nil {
		return err
	}
	if stored != cfg.BulkCustomers {
		return fmt.Errorf("%d customers stored after the load, want %d", stored, cfg.BulkCustomers)
	}
	slices.Sort(latencies)
	verdict := harness.VerdictPass
	if total > BulkTarget {
		verdict = harness.VerdictBelow
	}
	fmt.Fprintf(w, "%-24s %9s %9s %9s %9s %9s %8s %8s\n", "one-shot", "items", "calls", "clients", "seconds", "items/s", "target", "verdict")
	fmt.Fprintf(w, "%-24s %9d %9d %9d %9.1f %9.0f %7.0fs %8s\n", "batch-upsert-100k-rest", cfg.BulkCustomers, calls, cfg.BulkClients,
		total.Seconds(), float64(cfg.BulkCustomers)/total.Seconds(), BulkTarget.Seconds(), verdict)
	fmt.Fprintf(w, "  per call: p50 %s, p90 %s, max %s (calls queue for the store's single writer)\n",
		round(quantile(latencies, 0.5)), round(quantile(latencies, 0.9)), round(latencies[len(latencies)-1]))
	return nil
}

// RunScale compares GetCustomer over gRPC on a node holding cfg.ScaleLarge
// customers with one holding cfg.ScaleSmall, and prints the ratio of their
// p99 latencies against ScaleTargetRatio.
//
// Loading a million customers through the API would take most of an hour
// of fsyncs, so each store is prepared by the customer service itself,
// in process, on a store opened without fsync: BatchUpsertCustomers with an
// admin principal, 1,000 per call, the outbox drained as the node's relay
// would. The store is then closed, a real node (fsync, the whole chain)
// started on it, and both nodes are measured in interleaved rounds with the
// harness, so a burst of outside load hits both sizes alike.
func RunScale(ctx context.Context, w io.Writer, cfg LoadConfig) error {
	cfg.defaults()
	sizes := []*scaleSize{{n: cfg.ScaleSmall}, {n: cfg.ScaleLarge}}
	defer closeSizes(sizes)
	for _, s := range sizes {
		s.name = fmt.Sprintf("get-customer-%s", count(s.n))
		var err error
		if s.dir, err = os.MkdirTemp(cfg.Dir, "millrace-scale-*"); err != nil {
			return err
		}
		t0 := time.Now()
		if s.ids, err = prepareCustomers(ctx, s.dir, s.n, cfg.Progress); err != nil {
			return fmt.Errorf("prepare %d customers: %w", s.n, err)
		}
		fi, err := os.Stat(filepath.Join(s.dir, "customer.db"))
		if err != nil {
			return err
		}
		fmt.Fprintf(cfg.Progress, "prepared %d customers in %.0f s (customer.db %.0f MB)\n", s.n, time.Since(t0).Seconds(), float64(fi.Size())/1e6)
		if s.node, err = startNodeIn(ctx, s.dir, cfg.ScaleConcurrency); err != nil {
			return err
		}
	}
	return measureScale(ctx, w, cfg, sizes, func(ctx context.Context, n *node, id string) error {
		_, err := customerv1.NewCustomerServiceClient(n.conn).GetCustomer(authed(ctx), &customerv1.GetCustomerRequest{Id: id})
		return err
	})
}

// prepareCustomers creates a customer store in dir holding total sample
// customers, through the customer service's own handler, and returns their
// ids. The store is opened without fsync for speed and closed on return.
func prepareCustomers(ctx context.Context, dir string, total int, progress io.Writer) (_ []string, err error) {
	db, err := storage.Open(filepath.Join(dir, "customer.db"), customer.Schema, storage.Options{NoSync: true})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	srv := customer.NewServer(db, customer.Options{})
	// The node's relay would publish every CustomerCreated; draining the
	// outbox here keeps that work out of the measurement.
	relay := events.NewRelay(db, events.NewLocalBus(), slog.New(slog.NewTextHandler(io.Discard, nil)), events.WithBatchSize(10_000))
	drain := func() error {
		for {
			k, err := relay.Flush(ctx)
			if err != nil || k == 0 {
				return err
			}
		}
	}
	actx := auth.WithPrincipal(ctx, auth.Principal{KeyID: "bench-loader", Name: "bench loader", Role: auth.RoleAdmin})

	// Two loaders: one validates and encodes its batch while the other
	// holds the store's write lock.
	const loaders = 2
	batches := (total + batchSize - 1) / batchSize
	ids := make([][]string, batches)
	var (
		next     atomic.Int64
		done     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	start := time.Now()
	for range loaders {
		wg.Go(func() {
			for {
				b := int(next.Add(1) - 1)
				if b >= batches || ctx.Err() != nil {
					return
				}
				from := b * batchSize
				resp, err := srv.BatchUpsertCustomers(actx, sampleBatch(from, min(batchSize, total-from)))
				if err == nil {
					ids[b], err = createdIDs(from, resp)
				}
				if err == nil && b%50 == 49 {
					err = drain()
				}
				if err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
					return
				}
				if d := done.Add(1); d%100 == 0 {
					fmt.Fprintf(progress, "  %d/%d customers stored, %.0f s\n", d*batchSize, total, time.Since(start).Seconds())
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := drain(); err != nil {
		return nil, err
	}
	return slices.Concat(ids...), nil
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// countCustomers pages through every customer.
func countCustomers(ctx context.Context, client customerv1.CustomerServiceClient) (int, error) {
	total, token := 0, ""
	for {
		resp, err := client.ListCustomers(authed(ctx), &customerv1.ListCustomersRequest{PageSize: 500, PageToken: token})
		if err != nil {
			return 0, err
		}
		total += len(resp.GetCustomers())
		if token = resp.GetNextPageToken(); token == "" {
			return total, nil
		}
	}
}

// postRead performs an authenticated REST POST and returns the body of a
// 200 answer.
func (n *node) postRead(ctx context.Context, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+adminKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("POST %s: HTTP %d: %.300s", path, resp.StatusCode, b)
	}
	return b, nil
}

func totalLen(bs [][]byte) int {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	return n
}

// quantile of sorted durations, nearest rank.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// round keeps three significant digits, as the report table does.
func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// count writes 10000 as "10k" and 1000000 as "1m".
func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dm", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}
