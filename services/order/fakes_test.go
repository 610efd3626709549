package order

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/money"
)

// The fakes below are the peers' logic, small enough to read: each is used
// directly as a port, and wrapped in a real gRPC server (peers_test.go)
// when a test needs the peer to be a process that can be stopped. They
// count calls by order id, so a test can assert that a retried step never
// took anything twice.

var errFakeDown = errors.New("fake peer is down")

// fakePricing prices every unit of a SKU at one price, whatever the unit.
type fakePricing struct {
	mu     sync.Mutex
	prices map[string]string                           // SKU → unit price
	status map[string]productpricingv1.LinePriceStatus // SKUs that cannot be priced
	down   bool
	calls  int
}

func newFakePricing() *fakePricing {
	return &fakePricing{
		prices: map[string]string{"VALVE-100": "12.50", "PUMP-200": "240.00", "GASKET-7": "0.125"},
		status: map[string]productpricingv1.LinePriceStatus{
			"OLD-1":   productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_DISCONTINUED,
			"NOPRICE": productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_NO_PRICE,
		},
	}
}

func (f *fakePricing) setPrice(sku, price string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.prices[sku] = price
}

func (f *fakePricing) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakePricing) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

func (f *fakePricing) Simulate(_ context.Context, customerID, currency string, _ time.Time, lines []*orderv1.OrderLine) ([]*productpricingv1.PricedLine, error) {
	resp, err := f.simulate(&productpricingv1.SimulatePricesRequest{CustomerId: customerID, CurrencyCode: currency, Lines: simLines(lines)})
	if st, ok := status.FromError(err); ok && err != nil {
		// What the adapter makes of a status the peer answers with.
		return nil, &PeerError{Peer: "productpricing", Status: st}
	}
	if err != nil {
		return nil, err
	}
	return resp.GetLines(), nil
}

func simLines(lines []*orderv1.OrderLine) []*productpricingv1.SimulationLine {
	out := make([]*productpricingv1.SimulationLine, len(lines))
	for i, l := range lines {
		out[i] = &productpricingv1.SimulationLine{Sku: l.GetSku(), Quantity: proto.Clone(l.GetQuantity()).(*typev1.Quantity)}
	}
	return out
}

func (f *fakePricing) simulate(req *productpricingv1.SimulatePricesRequest) (*productpricingv1.SimulatePricesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.down {
		return nil, &PeerUnavailableError{Peer: "productpricing", Err: errFakeDown}
	}
	if req.GetCustomerId() == "cus_UNKNOWN" {
		st, _ := status.New(codes.InvalidArgument, "invalid customer_id: no customer has id cus_UNKNOWN").WithDetails(
			&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "customer_id", Description: "no customer has id cus_UNKNOWN"}}})
		return nil, st.Err()
	}
	resp := &productpricingv1.SimulatePricesResponse{}
	total := money.Zero()
	for i, l := range req.GetLines() {
		pl := &productpricingv1.PricedLine{Index: int32(i), Sku: l.GetSku(), Quantity: l.GetQuantity()}
		price, ok := f.prices[l.GetSku()]
		switch st, bad := f.status[l.GetSku()]; {
		case bad:
			pl.Status, pl.Reason = st, map[productpricingv1.LinePriceStatus]string{
				productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_DISCONTINUED: "DISCONTINUED",
				productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_NO_PRICE:     "NO_PRICE",
			}[st]
		case !ok:
			pl.Status, pl.Reason = productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_INVALID, "UNKNOWN_PRODUCT"
		default:
			lt := money.RoundHalfEven(money.Mul(money.MustParse(price), money.MustParse(l.GetQuantity().GetValue())), 2)
			pl.Status = productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_PRICED
			pl.UnitPrice = &typev1.Money{CurrencyCode: req.GetCurrencyCode(), Amount: price}
			pl.LineTotal = &typev1.Money{CurrencyCode: req.GetCurrencyCode(), Amount: money.FormatScale(lt, 2)}
			total = money.Add(total, lt)
		}
		resp.Lines = append(resp.Lines, pl)
	}
	resp.Total = &typev1.Money{CurrencyCode: req.GetCurrencyCode(), Amount: money.FormatScale(total, 2)}
	return resp, nil
}

// fakeInventory holds stock per SKU in EA; a CASE is 12 EA.
type fakeInventory struct {
	mu           sync.Mutex
	stock        map[string]*money.Decimal
	reservations map[string]*fulfillmentv1.Reservation // by reference id
	byID         map[string]*fulfillmentv1.Reservation
	reserveCalls map[string]int // by reference id
	created      map[string]int // reservations actually placed, by reference id
	released     map[string]int // releases that freed stock, by reservation id
	down         bool
	seq          int
}

func newFakeInventory() *fakeInventory {
	return &fakeInventory{
		stock: map[string]*money.Decimal{
			"VALVE-100": money.MustParse("1000"),
			"PUMP-200":  money.MustParse("10"),
			"GASKET-7":  money.MustParse("100000"),
		},
		reservations: map[string]*fulfillmentv1.Reservation{},
		byID:         map[string]*fulfillmentv1.Reservation{},
		reserveCalls: map[string]int{},
		created:      map[string]int{},
		released:     map[string]int{},
	}
}

func (f *fakeInventory) setStock(sku, qty string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stock[sku] = money.MustParse(qty)
}

func (f *fakeInventory) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

func (f *fakeInventory) counts(ref string) (calls, created int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reserveCalls[ref], f.created[ref]
}

// active returns the active reservation of a reference, nil when none.
func (f *fakeInventory) active(ref string) *fulfillmentv1.Reservation {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.reservations[ref]
	if r == nil || r.GetStatus() != fulfillmentv1.ReservationStatus_RESERVATION_STATUS_ACTIVE {
		return nil
	}
	return proto.Clone(r).(*fulfillmentv1.Reservation)
}

func (f *fakeInventory) releasedCount(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.released[id]
}

func baseOf(q *typev1.Quantity) *money.Decimal {
	d := money.MustParse(q.GetValue())
	if q.GetUnit() == "CASE" {
		return money.Mul(d, money.MustParse("12"))
	}
	return d
}

var promised = time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)

// answer computes the per-line availability of lines.
func (f *fakeInventory) answer(lines []*fulfillmentv1.AvailabilityLine) ([]*fulfillmentv1.LineAvailability, bool) {
	all := true
	var out []*fulfillmentv1.LineAvailability
	need := map[string]*money.Decimal{}
	for i, l := range lines {
		b := baseOf(l.GetQuantity())
		la := &fulfillmentv1.LineAvailability{Index: int32(i), Sku: l.GetSku(), BaseQuantity: &typev1.Quantity{Value: money.Format(b), Unit: "EA"}}
		have, ok := f.stock[l.GetSku()]
		if need[l.GetSku()] == nil {
			need[l.GetSku()] = money.Zero()
		}
		need[l.GetSku()] = money.Add(need[l.GetSku()], b)
		switch {
		case !ok:
			la.Reason = "UNKNOWN_PRODUCT"
		case money.Cmp(have, need[l.GetSku()]) < 0:
			la.Reason = "SHORT"
		default:
			la.Covered = true
			la.PromisedTime = timestamppb.New(promised)
			la.Sources = []*fulfillmentv1.SupplySource{{SiteId: "site_EU1", Quantity: la.GetBaseQuantity(), Kind: "ON_HAND"}}
		}
		all = all && la.Covered
		out = append(out, la)
	}
	return out, all
}

func (f *fakeInventory) Check(_ context.Context, _ string, lines []*orderv1.OrderLine, _ bool) ([]*fulfillmentv1.LineAvailability, error) {
	resp, err := f.check(&fulfillmentv1.CheckAvailabilityRequest{Lines: availabilityLines(lines)})
	return resp.GetLines(), err
}

func (f *fakeInventory) check(req *fulfillmentv1.CheckAvailabilityRequest) (*fulfillmentv1.CheckAvailabilityResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, &PeerUnavailableError{Peer: "fulfillment", Err: errFakeDown}
	}
	lines, _ := f.answer(req.GetLines())
	return &fulfillmentv1.CheckAvailabilityResponse{Lines: lines}, nil
}

func (f *fakeInventory) Reserve(_ context.Context, ref string, kind ReservationKind, region string, lines []*orderv1.OrderLine, split bool, expire time.Time) (*fulfillmentv1.Reservation, []*fulfillmentv1.LineAvailability, error) {
	req := &fulfillmentv1.CreateReservationRequest{Kind: kind, ReferenceId: ref, ShipToRegion: region, Lines: availabilityLines(lines), AllowSplit: split}
	if !expire.IsZero() {
		req.ExpireTime = timestamppb.New(expire)
	}
	resp, err := f.reserve(req)
	return resp.GetReservation(), resp.GetLines(), err
}

func (f *fakeInventory) reserve(req *fulfillmentv1.CreateReservationRequest) (*fulfillmentv1.CreateReservationResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, &PeerUnavailableError{Peer: "fulfillment", Err: errFakeDown}
	}
	ref := req.GetReferenceId()
	f.reserveCalls[ref]++
	if r := f.reservations[ref]; r != nil {
		// Idempotent by reference: the existing reservation.
		return &fulfillmentv1.CreateReservationResponse{Reservation: proto.Clone(r).(*fulfillmentv1.Reservation)}, nil
	}
	lines, all := f.answer(req.GetLines())
	if !all {
		return &fulfillmentv1.CreateReservationResponse{Lines: lines}, nil
	}
	f.seq++
	r := &fulfillmentv1.Reservation{
		Id: fmt.Sprintf("res_%d", f.seq), Kind: req.GetKind(), Status: fulfillmentv1.ReservationStatus_RESERVATION_STATUS_ACTIVE,
		ReferenceId: ref, ExpireTime: req.GetExpireTime(),
	}
	for i, l := range req.GetLines() {
		b := baseOf(l.GetQuantity())
		f.stock[l.GetSku()] = money.Sub(f.stock[l.GetSku()], b)
		r.Lines = append(r.Lines, &fulfillmentv1.ReservedLine{LineIndex: int32(i), Sku: l.GetSku(), SiteId: "site_EU1",
			Quantity: &typev1.Quantity{Value: money.Format(b), Unit: "EA"}, PromisedTime: timestamppb.New(promised)})
	}
	f.reservations[ref] = r
	f.byID[r.Id] = r
	f.created[ref]++
	return &fulfillmentv1.CreateReservationResponse{Reservation: proto.Clone(r).(*fulfillmentv1.Reservation), Lines: lines}, nil
}

func (f *fakeInventory) Release(_ context.Context, id string) error {
	_, err := f.release(id)
	var pe *PeerError
	if errors.As(err, &pe) {
		return nil
	}
	return err
}

func (f *fakeInventory) release(id string) (*fulfillmentv1.Reservation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, &PeerUnavailableError{Peer: "fulfillment", Err: errFakeDown}
	}
	r := f.byID[id]
	if r == nil {
		return nil, &PeerError{Peer: "fulfillment", Status: status.New(codes.NotFound, "no reservation "+id)}
	}
	if r.Status == fulfillmentv1.ReservationStatus_RESERVATION_STATUS_ACTIVE {
		r.Status = fulfillmentv1.ReservationStatus_RESERVATION_STATUS_RELEASED
		for _, l := range r.GetLines() {
			f.stock[l.GetSku()] = money.Add(f.stock[l.GetSku()], money.MustParse(l.GetQuantity().GetValue()))
		}
		f.released[id]++
	}
	return proto.Clone(r).(*fulfillmentv1.Reservation), nil
}

// fakeCredit keeps one limit per customer in EUR.
type fakeCredit struct {
	mu           sync.Mutex
	limits       map[string]*money.Decimal
	reserved     map[string]*money.Decimal // by order id
	customerOf   map[string]string         // by order id
	reserveCalls map[string]int            // by order id
	created      map[string]int            // approvals that took credit, by order id
	releases     map[string]int            // releases that freed credit, by order id
	down         bool
}

func newFakeCredit() *fakeCredit {
	return &fakeCredit{
		limits: map[string]*money.Decimal{
			"cus_ACME":  money.MustParse("100000"),
			"cus_SMALL": money.MustParse("100"),
		},
		reserved:     map[string]*money.Decimal{},
		customerOf:   map[string]string{},
		reserveCalls: map[string]int{},
		created:      map[string]int{},
		releases:     map[string]int{},
	}
}

func (f *fakeCredit) setLimit(customer, limit string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.limits[customer] = money.MustParse(limit)
}

func (f *fakeCredit) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

func (f *fakeCredit) counts(orderID string) (calls, created, released int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reserveCalls[orderID], f.created[orderID], f.releases[orderID]
}

func (f *fakeCredit) holds(orderID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reserved[orderID] != nil
}

func (f *fakeCredit) Reserve(_ context.Context, customerID, orderID string, amount *typev1.Money) (CreditDecision, error) {
	resp, err := f.reserve(&customerv1.ReserveCreditRequest{CustomerId: customerID, OrderId: orderID, Amount: amount})
	if err != nil {
		return CreditDecision{}, err
	}
	return CreditDecision{Approved: resp.GetDecision() == customerv1.CreditDecision_CREDIT_DECISION_APPROVED, Reason: resp.GetReason()}, nil
}

func (f *fakeCredit) reserve(req *customerv1.ReserveCreditRequest) (*customerv1.ReserveCreditResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, &PeerUnavailableError{Peer: "customer", Err: errFakeDown}
	}
	f.reserveCalls[req.GetOrderId()]++
	approved := &customerv1.ReserveCreditResponse{Decision: customerv1.CreditDecision_CREDIT_DECISION_APPROVED}
	if f.reserved[req.GetOrderId()] != nil {
		return approved, nil
	}
	limit, ok := f.limits[req.GetCustomerId()]
	if !ok {
		return &customerv1.ReserveCreditResponse{Decision: customerv1.CreditDecision_CREDIT_DECISION_DECLINED, Reason: "NO_CREDIT_LIMIT"}, nil
	}
	exposure := money.Zero()
	for id, a := range f.reserved {
		if f.customerOf[id] == req.GetCustomerId() {
			exposure = money.Add(exposure, a)
		}
	}
	amt := money.MustParse(req.GetAmount().GetAmount())
	if money.Cmp(money.Add(exposure, amt), limit) > 0 {
		return &customerv1.ReserveCreditResponse{Decision: customerv1.CreditDecision_CREDIT_DECISION_DECLINED, Reason: "CREDIT_LIMIT_EXCEEDED"}, nil
	}
	f.reserved[req.GetOrderId()] = amt
	f.customerOf[req.GetOrderId()] = req.GetCustomerId()
	f.created[req.GetOrderId()]++
	return approved, nil
}

func (f *fakeCredit) Release(_ context.Context, _, orderID string) error {
	_, err := f.release(orderID)
	return err
}

func (f *fakeCredit) release(orderID string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return false, &PeerUnavailableError{Peer: "customer", Err: errFakeDown}
	}
	if f.reserved[orderID] == nil {
		return false, nil
	}
	delete(f.reserved, orderID)
	f.releases[orderID]++
	return true, nil
}
