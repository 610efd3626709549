package millrace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/millrace/millrace/bench/ceilings"
	"github.com/millrace/millrace/bench/scenarios"
	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/money"
	"github.com/millrace/millrace/internal/storage"
	"github.com/millrace/millrace/services/order"
)

// The order scenarios: the durable write every CRM order costs, the
// availability question every quote asks, and (as a one-shot, RunOrderScale)
// GetOrder on a store of a million orders.

// orderWriters is how many clients create orders at once: as many as the
// bolt-batch64 ceiling has writers, so the saga's group commits are judged
// against group commit at the same width.
const orderWriters = ceilings.BoltBatchWriters

func init() {
	// CreateOrder, durable, with the whole saga: the order service saves
	// the order PENDING, prices it with productpricing, places the hard
	// reservation in fulfillment (time-phased ATP over three sites), reserves
	// credit in customer and accepts it, each step persisted (fsync, group
	// commit) before the next; the outbox relay publishes the events. A
	// 3-line basket. One operation is one accepted order.
	//
	// Judged twice, because the harness judges one ceiling per scenario:
	// against bbolt's db.Batch with as many writers (bolt-batch64, target
	// 50 %) and against a single fsynced commit (bolt-single-commit,
	// target 5×: durable orders per second must beat one-commit-at-a-time
	// by far). The bolt-group64 ceiling, the stores' own group commit
	// raw, is printed beside them for what the disk can do at that width.
	for _, s := range []struct {
		name, ceiling string
		target        float64
	}{
		{"create-order-64", ceilings.BoltBatch64Name, 50},
		{"create-order-64-vs-single", ceilings.BoltSingleCommitName, 500},
	} {
		scenarios.Register(scenarios.Scenario{
			Name: s.name, Ceiling: s.ceiling, TargetPct: s.target, Concurrency: orderWriters,
			Setup: setupCreateOrder,
		})
	}

	// CheckAvailability of a 5-line basket whose lines resolve over three
	// sites in two regions: unit conversions on every line, one line split
	// across two sites, one covered by the other region, planned production
	// in the curves. Nothing is written. The request is 123 bytes, the
	// answer ~500 bytes of protobuf: five times the ceiling's 100.
	scenarios.Register(scenarios.Scenario{
		Name: "availability-check-5x3-grpc", Ceiling: ceilings.GRPCEchoName, TargetPct: 40,
		Setup: func(ctx context.Context) (func(context.Context, int) error, func(), error) {
			f, err := startOrderBench(ctx)
			if err != nil {
				return nil, nil, err
			}
			client := fulfillmentv1.NewFulfillmentServiceClient(f.n.conn)
			req := availabilityBasket()
			if err := checkAvailabilityBasket(authed(ctx), client, req); err != nil {
				f.n.close()
				return nil, nil, err
			}
			op := func(ctx context.Context, _ int) error {
				_, err := client.CheckAvailability(authed(ctx), req)
				return err
			}
			return op, f.n.close, nil
		},
	})
}

func setupCreateOrder(ctx context.Context) (func(context.Context, int) error, func(), error) {
	f, err := startOrderBench(ctx)
	if err != nil {
		return nil, nil, err
	}
	client := orderv1.NewOrderServiceClient(f.n.conn)
	req := &orderv1.CreateOrderRequest{Order: &orderv1.Order{
		CustomerId: f.customerID, CurrencyCode: "EUR", ShipToRegion: "eu",
		Lines: []*orderv1.OrderLine{
			orderLine("VALVE-BV25", "2", "CASE"),
			orderLine("CABLE-NYM3", "1", "ROLL"),
			orderLine("RESIN-PP", "3", "BAG"),
		},
	}}
	// No external reference: every call is a new order.
	op := func(ctx context.Context, _ int) error {
		resp, err := client.CreateOrder(authed(ctx), req)
		if err != nil {
			return err
		}
		if o := resp.GetOrder(); o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_ACCEPTED {
			return fmt.Errorf("order %s is %v %v, want ACCEPTED", o.GetId(), o.GetStatus(), o.GetHoldReason())
		}
		return nil
	}
	if err := op(ctx, 0); err != nil {
		f.n.close()
		return nil, nil, fmt.Errorf("first order: %w", err)
	}
	return op, f.n.close, nil
}

func orderLine(sku, value, unit string) *orderv1.OrderLine {
	return &orderv1.OrderLine{Sku: sku, Quantity: &typev1.Quantity{Value: value, Unit: unit}}
}

// orderBench is a node loaded with what orders need: a customer with credit
// no run exhausts, five products with packs, a price list, and three sites
// in two regions.
type orderBench struct {
	n          *node
	customerID string
}

// orderStock is each product's stock at each site, in its base unit, for
// the order scenarios: far more than any run takes (a run at 1,000 orders/s
// for a minute takes 1.4 million EA of VALVE-BV25), so no order is short.
const orderStock = "100000000000"

// orderProducts are the benchmark products, their packs and list prices.
var orderProducts = []struct {
	sku, base, price string
	indivisible      bool
	conversions      []*productpricingv1.UnitConversion
}{
	{"VALVE-BV25", "EA", "42.50", true, []*productpricingv1.UnitConversion{
		{Unit: "CASE", Factor: "12", PerUnit: "EA", Indivisible: true}, {Unit: "PALLET", Factor: "40", PerUnit: "CASE", Indivisible: true}}},
	{"CABLE-NYM3", "M", "0.87", false, []*productpricingv1.UnitConversion{
		{Unit: "ROLL", Factor: "50", PerUnit: "M", Indivisible: true}, {Unit: "KM", Factor: "1000", PerUnit: "M"}}},
	{"RESIN-PP", "KG", "2.4125", false, []*productpricingv1.UnitConversion{
		{Unit: "BAG", Factor: "25", PerUnit: "KG", Indivisible: true}, {Unit: "LB", Factor: "0.45359237", PerUnit: "KG"}}},
	{"PUMP-CP200", "EA", "4800.00", true, nil},
	{"GASKET-7", "EA", "0.12", true, []*productpricingv1.UnitConversion{{Unit: "BOX", Factor: "100", PerUnit: "EA", Indivisible: true}}},
}

// startOrderBench starts a node and loads it through the API.
func startOrderBench(ctx context.Context) (*orderBench, error) {
	n, err := startNode(ctx, 64)
	if err != nil {
		return nil, err
	}
	f := &orderBench{n: n}
	if err := f.load(authed(ctx)); err != nil {
		n.close()
		return nil, err
	}
	return f, nil
}

func (f *orderBench) load(ctx context.Context) error {
	pp := productpricingv1.NewProductPricingServiceClient(f.n.conn)
	ff := fulfillmentv1.NewFulfillmentServiceClient(f.n.conn)
	list := &productpricingv1.PriceList{Name: "EUR list", CurrencyCode: "EUR", ValidFrom: timestamppb.New(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))}
	for _, p := range orderProducts {
		if _, err := pp.CreateProduct(ctx, &productpricingv1.CreateProductRequest{Product: &productpricingv1.Product{
			Sku: p.sku, Name: "Product " + p.sku, BaseUnit: p.base, BaseUnitIndivisible: p.indivisible, Conversions: p.conversions,
		}}); err != nil {
			return fmt.Errorf("create product %s: %w", p.sku, err)
		}
		list.Entries = append(list.Entries, &productpricingv1.PriceEntry{Sku: p.sku, Unit: p.base, UnitPrice: p.price})
	}
	if _, err := pp.CreatePriceList(ctx, &productpricingv1.CreatePriceListRequest{PriceList: list}); err != nil {
		return fmt.Errorf("create price list: %w", err)
	}
	cu, err := customerv1.NewCustomerServiceClient(f.n.conn).CreateCustomer(ctx, &customerv1.CreateCustomerRequest{Customer: &customerv1.Customer{
		DisplayName: "Kessler Maschinenbau GmbH", Region: "eu", CurrencyCode: "EUR",
		CreditLimit: &typev1.Money{CurrencyCode: "EUR", Amount: "100000000000000"},
	}})
	if err != nil {
		return fmt.Errorf("create customer: %w", err)
	}
	f.customerID = cu.GetCustomer().GetId()

	tt := func(region string, days int32) *fulfillmentv1.TransitTime {
		return &fulfillmentv1.TransitTime{Region: region, Days: days}
	}
	sites := []*fulfillmentv1.Site{
		{Id: "plant-lyon", Name: "Lyon plant", Kind: fulfillmentv1.SiteKind_SITE_KIND_PLANT, Region: "eu", TransitTimes: []*fulfillmentv1.TransitTime{tt("eu", 1), tt("na", 9)}},
		{Id: "wh-rotterdam", Name: "Rotterdam warehouse", Kind: fulfillmentv1.SiteKind_SITE_KIND_WAREHOUSE, Region: "eu", TransitTimes: []*fulfillmentv1.TransitTime{tt("eu", 2), tt("na", 8)}},
		{Id: "plant-ohio", Name: "Dayton plant", Kind: fulfillmentv1.SiteKind_SITE_KIND_PLANT, Region: "na", TransitTimes: []*fulfillmentv1.TransitTime{tt("na", 2), tt("eu", 10)}},
	}
	for _, s := range sites {
		if _, err := ff.CreateSite(ctx, &fulfillmentv1.CreateSiteRequest{Site: s}); err != nil {
			return fmt.Errorf("create site %s: %w", s.GetId(), err)
		}
	}
	// The three order SKUs are plentiful everywhere; the availability
	// basket's stock is shaped so that its lines land on different sites.
	stock := map[string]map[string]string{
		"plant-lyon":   {"VALVE-BV25": orderStock, "CABLE-NYM3": orderStock, "RESIN-PP": "100", "GASKET-7": "10000"},
		"wh-rotterdam": {"VALVE-BV25": orderStock, "CABLE-NYM3": orderStock, "RESIN-PP": "100"},
		"plant-ohio":   {"VALVE-BV25": orderStock, "CABLE-NYM3": orderStock, "RESIN-PP": orderStock, "PUMP-CP200": "50"},
	}
	for _, p := range orderProducts {
		for _, s := range sites {
			q, ok := stock[s.GetId()][p.sku]
			if !ok {
				continue
			}
			if _, err := ff.AdjustInventory(ctx, &fulfillmentv1.AdjustInventoryRequest{
				SiteId: s.GetId(), Sku: p.sku, Delta: q, Unit: p.base, Reason: fulfillmentv1.LedgerReason_LEDGER_REASON_PRODUCTION_RECEIPT,
			}); err != nil {
				return fmt.Errorf("stock %s at %s: %w", p.sku, s.GetId(), err)
			}
		}
	}
	// Planned production at Lyon: resin in a week, valves in two.
	day := time.Now().UTC().Truncate(24 * time.Hour)
	for _, pl := range []struct {
		sku, qty, unit string
		days           int
	}{{"RESIN-PP", "500", "KG", 7}, {"VALVE-BV25", "2400", "EA", 14}} {
		if _, err := ff.CreateSupplyPlan(ctx, &fulfillmentv1.CreateSupplyPlanRequest{SupplyPlan: &fulfillmentv1.SupplyPlan{
			SiteId: "plant-lyon", Sku: pl.sku, Quantity: &typev1.Quantity{Value: pl.qty, Unit: pl.unit}, DueTime: timestamppb.New(day.AddDate(0, 0, pl.days)),
		}}); err != nil {
			return fmt.Errorf("plan %s: %w", pl.sku, err)
		}
	}
	return nil
}

// availabilityBasket is the 5-line check: valves and cable from Lyon (a
// day), 150 kg of resin split over Lyon and Rotterdam (each has 100 on
// hand; Lyon's planned 500 would take a week, Ohio ten days), pumps from
// Ohio across the Atlantic, gaskets by the box from Lyon.
func availabilityBasket() *fulfillmentv1.CheckAvailabilityRequest {
	line := func(sku, value, unit string) *fulfillmentv1.AvailabilityLine {
		return &fulfillmentv1.AvailabilityLine{Sku: sku, Quantity: &typev1.Quantity{Value: value, Unit: unit}}
	}
	return &fulfillmentv1.CheckAvailabilityRequest{ShipToRegion: "eu", AllowSplit: true, Lines: []*fulfillmentv1.AvailabilityLine{
		line("VALVE-BV25", "3", "CASE"),
		line("CABLE-NYM3", "2", "ROLL"),
		line("RESIN-PP", "6", "BAG"),
		line("PUMP-CP200", "2", "EA"),
		line("GASKET-7", "5", "BOX"),
	}}
}

// checkAvailabilityBasket asks once and checks that the basket does what
// it is meant to: every line covered, the three sites used, one split.
func checkAvailabilityBasket(ctx context.Context, c fulfillmentv1.FulfillmentServiceClient, req *fulfillmentv1.CheckAvailabilityRequest) error {
	resp, err := c.CheckAvailability(ctx, req)
	if err != nil {
		return fmt.Errorf("check availability: %w", err)
	}
	sites := map[string]bool{}
	split := false
	for _, l := range resp.GetLines() {
		if !l.GetCovered() {
			return fmt.Errorf("availability line %d (%s) is not covered: %s", l.GetIndex(), l.GetSku(), l.GetReason())
		}
		for _, s := range l.GetSources() {
			sites[s.GetSiteId()] = true
		}
		split = split || len(l.GetSources()) > 1
	}
	if len(resp.GetLines()) != 5 || len(sites) != 3 || !split {
		return fmt.Errorf("availability answer uses sites %v (split %v), want 5 lines over 3 sites with a split", sites, split)
	}
	return nil
}

// ---------------------------------------------------------------------------
// GetOrder with a million orders stored.

// RunOrderScale compares GetOrder over gRPC on a node holding cfg.ScaleLarge
// orders with one holding cfg.ScaleSmall, and prints the ratio of their p99
// latencies against ScaleTargetRatio, like RunScale does for customers.
//
// A million orders through the saga of a real node would take hours of
// fsyncs, so each store is prepared by the order service itself, in
// process, on a store opened without fsync: CreateOrder on the service's
// Server with in-process fakes as its peers (pricing, stock and credit
// answer at once), so every order takes the service's own path, with its
// record, saga state, indexes, timeline entries and events, and ends
// ACCEPTED. The outbox is drained as the node's relay would. The store is
// then closed and read once into the page cache (this compares store
// sizes, not a cold disk), a real node (fsync, the whole chain) started on
// it, and both nodes are measured in interleaved rounds with the harness.
func RunOrderScale(ctx context.Context, w io.Writer, cfg LoadConfig) error {
	cfg.defaults()
	sizes := []*scaleSize{{n: cfg.ScaleSmall}, {n: cfg.ScaleLarge}}
	defer closeSizes(sizes)
	for _, s := range sizes {
		s.name = "get-order-" + count(s.n)
		var err error
		if s.dir, err = os.MkdirTemp(cfg.Dir, "millrace-order-scale-*"); err != nil {
			return err
		}
		t0 := time.Now()
		if s.ids, err = prepareOrders(ctx, s.dir, s.n, cfg.Progress); err != nil {
			return fmt.Errorf("prepare %d orders: %w", s.n, err)
		}
		fi, err := os.Stat(filepath.Join(s.dir, "order.db"))
		if err != nil {
			return err
		}
		fmt.Fprintf(cfg.Progress, "prepared %d orders in %.0f s (order.db %.0f MB)\n", s.n, time.Since(t0).Seconds(), float64(fi.Size())/1e6)
		t0 = time.Now()
		if err := readThrough(filepath.Join(s.dir, "order.db")); err != nil {
			return err
		}
		fmt.Fprintf(cfg.Progress, "read order.db into the page cache in %.1f s\n", time.Since(t0).Seconds())
		if s.node, err = startNodeIn(ctx, s.dir, cfg.ScaleConcurrency); err != nil {
			return err
		}
		// Every order must be there, as saved: spot-check a few.
		client := orderv1.NewOrderServiceClient(s.node.conn)
		for _, i := range []int{0, len(s.ids) / 2, len(s.ids) - 1} {
			resp, err := client.GetOrder(authed(ctx), &orderv1.GetOrderRequest{Id: s.ids[i]})
			if err != nil {
				return fmt.Errorf("order %s of the prepared store: %w", s.ids[i], err)
			}
			if resp.GetOrder().GetStatus() != orderv1.OrderStatus_ORDER_STATUS_ACCEPTED {
				return fmt.Errorf("order %s of the prepared store is %v, want ACCEPTED", s.ids[i], resp.GetOrder().GetStatus())
			}
		}
	}
	return measureScale(ctx, w, cfg, sizes, func(ctx context.Context, n *node, id string) error {
		_, err := orderv1.NewOrderServiceClient(n.conn).GetOrder(authed(ctx), &orderv1.GetOrderRequest{Id: id})
		return err
	})
}

// readThrough reads a file once from start to end, so that its pages are
// in the page cache when a node maps it. On a freshly written 2.5 GB store
// the node otherwise took thousands of major page faults in its first tens
// of seconds, and the comparison measured a cold mapping, not the store's
// size (bench/README.md has the numbers).
func readThrough(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}

// orderLoaders is how many CreateOrder calls the preparation keeps in
// flight: enough for each group commit to carry a few hundred orders.
const orderLoaders = 256

// prepareOrders creates an order store in dir holding total sample orders,
// through the order service's own CreateOrder with fake peers, and returns
// their ids in creation order. The store is opened without fsync for speed
// and closed on return.
func prepareOrders(ctx context.Context, dir string, total int, progress io.Writer) (_ []string, err error) {
	db, err := storage.Open(filepath.Join(dir, "order.db"), order.Schema, storage.Options{NoSync: true})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := order.NewServer(db, order.Options{
		Pricing: loaderPricing{}, Inventory: loaderInventory{}, Credit: loaderCredit{}, Log: quiet,
	})
	// The node's relay would publish every OrderStatusChanged and
	// OrderAccepted; draining the outbox here keeps that work out of the
	// measurement. One drain at a time: Flush locks the store's outbox.
	relay := events.NewRelay(db, events.NewLocalBus(), quiet, events.WithBatchSize(10_000))
	var drainMu sync.Mutex
	drain := func() error {
		drainMu.Lock()
		defer drainMu.Unlock()
		for {
			k, err := relay.Flush(ctx)
			if err != nil || k == 0 {
				return err
			}
		}
	}
	actx := auth.WithPrincipal(ctx, auth.Principal{KeyID: "bench-loader", Name: "bench loader", Role: auth.RoleAdmin})

	ids := make([]string, total)
	var (
		next     atomic.Int64
		done     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	start := time.Now()
	for range min(orderLoaders, total) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= total || ctx.Err() != nil {
					return
				}
				resp, err := srv.CreateOrder(actx, &orderv1.CreateOrderRequest{Order: sampleOrder(i)})
				if err == nil && resp.GetOrder().GetStatus() != orderv1.OrderStatus_ORDER_STATUS_ACCEPTED {
					err = fmt.Errorf("sample order %d is %v, want ACCEPTED", i, resp.GetOrder().GetStatus())
				}
				if err == nil {
					ids[i] = resp.GetOrder().GetId()
					if d := done.Add(1); d%20_000 == 0 {
						err = drain()
						fmt.Fprintf(progress, "  %d/%d orders stored, %.0f s\n", d, total, time.Since(start).Seconds())
					}
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
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
	return ids, nil
}

// sampleOrder is the i-th of a deterministic set of orders shaped like a
// CRM's: 20,000 customers in three regions, one to five lines, each with
// the CRM's order number as its external reference (so the reference index
// holds every order too).
func sampleOrder(i int) *orderv1.Order {
	r := orderRegions[i%len(orderRegions)]
	o := &orderv1.Order{
		CustomerId:   fmt.Sprintf("cus_BENCH%011d", (i*7919)%20_000),
		CurrencyCode: r.currency,
		ShipToRegion: r.region,
		ExternalRef:  &typev1.ExternalRef{System: "salesforce", Id: fmt.Sprintf("801B%011d", i)},
	}
	for l := range 1 + i%5 {
		p := orderProducts[(i+l)%len(orderProducts)]
		o.Lines = append(o.Lines, orderLine(p.sku, fmt.Sprint(1+(i+l)%40), p.base))
	}
	return o
}

var orderRegions = []struct{ region, currency string }{{"eu", "EUR"}, {"na", "USD"}, {"apac", "JPY"}}

// The loader's peers: pricing prices every line at its list price,
// fulfillment reserves every line at one site for tomorrow, customer
// approves all credit. They answer at once and keep nothing.
type (
	loaderPricing   struct{}
	loaderInventory struct{}
	loaderCredit    struct{}
)

var loaderPrices = func() map[string]*money.Decimal {
	m := map[string]*money.Decimal{}
	for _, p := range orderProducts {
		m[p.sku] = money.MustParse(p.price)
	}
	return m
}()

func (loaderPricing) Simulate(_ context.Context, _, currency string, _ time.Time, lines []*orderv1.OrderLine) ([]*productpricingv1.PricedLine, error) {
	scale, _ := money.MinorUnits(currency)
	out := make([]*productpricingv1.PricedLine, len(lines))
	for i, l := range lines {
		price := loaderPrices[l.GetSku()]
		total := money.RoundHalfEven(money.Mul(price, money.MustParse(l.GetQuantity().GetValue())), scale)
		out[i] = &productpricingv1.PricedLine{
			Index: int32(i), Sku: l.GetSku(), Quantity: l.GetQuantity(), Status: productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_PRICED,
			UnitPrice: &typev1.Money{CurrencyCode: currency, Amount: money.Format(price)},
			LineTotal: &typev1.Money{CurrencyCode: currency, Amount: money.FormatScale(total, scale)},
		}
	}
	return out, nil
}

func (loaderInventory) Check(_ context.Context, region string, lines []*orderv1.OrderLine, _ bool) ([]*fulfillmentv1.LineAvailability, error) {
	return loaderAvailability(region, lines), nil
}

func (loaderInventory) Reserve(_ context.Context, ref string, kind order.ReservationKind, region string, lines []*orderv1.OrderLine, _ bool, _ time.Time) (*fulfillmentv1.Reservation, []*fulfillmentv1.LineAvailability, error) {
	avail := loaderAvailability(region, lines)
	r := &fulfillmentv1.Reservation{Id: "res_" + ref, Kind: kind, Status: fulfillmentv1.ReservationStatus_RESERVATION_STATUS_ACTIVE,
		ReferenceId: ref, CreateTime: timestamppb.Now()}
	for i, a := range avail {
		r.Lines = append(r.Lines, &fulfillmentv1.ReservedLine{LineIndex: int32(i), Sku: a.GetSku(), SiteId: a.GetSources()[0].GetSiteId(),
			Quantity: a.GetBaseQuantity(), PromisedTime: a.GetPromisedTime()})
	}
	return r, avail, nil
}

func (loaderInventory) Release(context.Context, string) error { return nil }

func loaderAvailability(region string, lines []*orderv1.OrderLine) []*fulfillmentv1.LineAvailability {
	site := map[string]string{"eu": "plant-lyon", "na": "plant-ohio"}[region]
	if site == "" {
		site = "wh-nagoya"
	}
	now := time.Now().UTC()
	out := make([]*fulfillmentv1.LineAvailability, len(lines))
	for i, l := range lines {
		out[i] = &fulfillmentv1.LineAvailability{Index: int32(i), Sku: l.GetSku(), BaseQuantity: l.GetQuantity(), Covered: true,
			Sources:      []*fulfillmentv1.SupplySource{{SiteId: site, Quantity: l.GetQuantity(), AvailableTime: timestamppb.New(now), TransitDays: 1, Kind: "ON_HAND"}},
			PromisedTime: timestamppb.New(now.Add(24 * time.Hour))}
	}
	return out
}

func (loaderCredit) Reserve(context.Context, string, string, *typev1.Money) (order.CreditDecision, error) {
	return order.CreditDecision{Approved: true}, nil
}

func (loaderCredit) Release(context.Context, string, string) error { return nil }
