package fulfillment

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/apierr"
)

// Every RPC of the contract is implemented: none answers Unimplemented.
func TestEveryMethodIsImplemented(t *testing.T) {
	f := newFixture(t)
	c := f.grpcClient()
	ctx := context.Background()
	v := reflect.ValueOf(c)
	ty := v.Type()
	for i := range ty.NumMethod() {
		m := ty.Method(i)
		t.Run(m.Name, func(t *testing.T) {
			req := reflect.New(v.Method(i).Type().In(1).Elem()) // the request message, empty
			out := v.Method(i).Call([]reflect.Value{reflect.ValueOf(ctx), req})
			err, _ := out[1].Interface().(error)
			if status.Code(err) == codes.Unimplemented || status.Code(err) == codes.Internal {
				t.Errorf("%s answered %v", m.Name, err)
			}
		})
	}
}

// The whole life of an order through a real gRPC connection: errors keep
// their codes, reasons and fields across the wire.
func TestServerOrderToCash(t *testing.T) {
	f := newFixture(t)
	c := f.grpcClient()
	ctx := context.Background()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	site := &fulfillmentv1.Site{Id: "plant-lyon", Name: "Lyon", Kind: fulfillmentv1.SiteKind_SITE_KIND_PLANT, Region: "eu",
		TransitTimes: []*fulfillmentv1.TransitTime{{Region: "eu", Days: 2}}}
	must(c.CreateSite(ctx, &fulfillmentv1.CreateSiteRequest{Site: site}))
	_, err := c.CreateSite(ctx, &fulfillmentv1.CreateSiteRequest{Site: site})
	wantErr(t, err, codes.AlreadyExists, ReasonSiteExists, "site.id")

	must(c.AdjustInventory(ctx, &fulfillmentv1.AdjustInventoryRequest{SiteId: "plant-lyon", Sku: "VALVE-100", Delta: "3", Unit: "CASE",
		Reason: fulfillmentv1.LedgerReason_LEDGER_REASON_PRODUCTION_RECEIPT}))
	_, err = c.AdjustInventory(ctx, &fulfillmentv1.AdjustInventoryRequest{SiteId: "plant-lyon", Sku: "VALVE-100", Delta: "-37", Unit: "EA",
		Reason: fulfillmentv1.LedgerReason_LEDGER_REASON_ADJUSTMENT})
	wantErr(t, err, codes.FailedPrecondition, ReasonInsufficientStock, "delta")
	_, err = c.AdjustInventory(ctx, &fulfillmentv1.AdjustInventoryRequest{SiteId: "plant-lyon", Sku: "VALVE-100", Delta: "1", Unit: "DOZEN",
		Reason: fulfillmentv1.LedgerReason_LEDGER_REASON_ADJUSTMENT})
	wantErr(t, err, codes.InvalidArgument, LineUnknownUnit, "unit")

	avail, err := c.CheckAvailability(ctx, &fulfillmentv1.CheckAvailabilityRequest{ShipToRegion: "eu", Lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "2", "CASE")}})
	if err != nil || !avail.GetLines()[0].GetCovered() || !avail.GetLines()[0].GetPromisedTime().AsTime().Equal(day(2)) || !avail.GetCheckTime().AsTime().Equal(t0) {
		t.Fatalf("availability %v, %v", avail, err)
	}
	f.orders.put("ord_1", "cus_1", "eu", "EUR", [3]string{"VALVE-100", "CASE", "99.95"})
	res, err := c.CreateReservation(ctx, &fulfillmentv1.CreateReservationRequest{Kind: hard, ReferenceId: "ord_1", ShipToRegion: "eu",
		Lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "2", "CASE")}})
	if err != nil || res.GetReservation() == nil {
		t.Fatalf("reservation %v, %v", res, err)
	}
	created, err := c.CreateShipment(ctx, &fulfillmentv1.CreateShipmentRequest{Shipment: &fulfillmentv1.Shipment{OrderId: "ord_1", SiteId: "plant-lyon",
		Lines: []*fulfillmentv1.ShipmentLine{sline(0, "VALVE-100", "2", "CASE")}}})
	if err != nil {
		t.Fatal(err)
	}
	sh := created.GetShipment()
	confirmed, err := c.ConfirmShipment(ctx, &fulfillmentv1.ConfirmShipmentRequest{Id: sh.GetId(), Carrier: "DHL", TrackingNumber: "JD1"})
	if err != nil {
		t.Fatal(err)
	}
	conf := confirmed.GetShipment()
	got, err := c.GetShipment(ctx, &fulfillmentv1.GetShipmentRequest{Id: sh.GetId()})
	if err != nil || !proto.Equal(got.GetShipment(), conf) {
		t.Errorf("GetShipment %v, %v; want %v", got, err, conf)
	}
	inv, err := c.GetInvoice(ctx, &fulfillmentv1.GetInvoiceRequest{Id: conf.GetInvoiceId()})
	if err != nil || inv.GetInvoice().GetGrossTotal().GetAmount() != "239.88" { // 199.90 + 39.98
		t.Fatalf("invoice %v, %v", inv, err)
	}
	_, err = c.RecordPayment(ctx, &fulfillmentv1.RecordPaymentRequest{Id: conf.GetInvoiceId(), Amount: &typev1.Money{CurrencyCode: "EUR", Amount: "300"}})
	wantErr(t, err, codes.InvalidArgument, ReasonOverpayment, "amount")
	_, err = c.RecordPayment(ctx, &fulfillmentv1.RecordPaymentRequest{Id: conf.GetInvoiceId(), Amount: &typev1.Money{CurrencyCode: "USD", Amount: "1"}})
	wantErr(t, err, codes.InvalidArgument, ReasonCurrencyMismatch, "amount.currency_code")
	paid, err := c.RecordPayment(ctx, &fulfillmentv1.RecordPaymentRequest{Id: conf.GetInvoiceId(), Amount: &typev1.Money{CurrencyCode: "EUR", Amount: "239.88"}})
	if err != nil || paid.GetInvoice().GetStatus() != fulfillmentv1.InvoiceStatus_INVOICE_STATUS_PAID {
		t.Fatalf("payment %v, %v", paid, err)
	}
	_, err = c.CreateReturn(ctx, &fulfillmentv1.CreateReturnRequest{Return: &fulfillmentv1.Return{OrderId: "ord_1",
		Lines: []*fulfillmentv1.ReturnLine{{OrderLineIndex: 0, Sku: "VALVE-100", Quantity: &typev1.Quantity{Value: "25", Unit: "EA"}}}}})
	wantErr(t, err, codes.FailedPrecondition, ReasonExceedsShipped, "return.lines[0].quantity")
	rmaResp, err := c.CreateReturn(ctx, &fulfillmentv1.CreateReturnRequest{Return: &fulfillmentv1.Return{OrderId: "ord_1",
		Lines: []*fulfillmentv1.ReturnLine{{OrderLineIndex: 0, Sku: "VALVE-100", Quantity: &typev1.Quantity{Value: "1", Unit: "CASE"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	rma := rmaResp.GetReturn()
	recvResp, err := c.ReceiveReturn(ctx, &fulfillmentv1.ReceiveReturnRequest{Id: rma.GetId(), SiteId: "plant-lyon", Disposition: fulfillmentv1.Disposition_DISPOSITION_RESTOCK})
	if recv := recvResp.GetReturn(); err != nil || recv.GetCreditMemo().GetAmount().GetAmount() != "119.94" { // 99.95 + 19.99
		t.Fatalf("received %v, %v", recv, err)
	}
	bal, err := c.ListInventory(ctx, &fulfillmentv1.ListInventoryRequest{Sku: "VALVE-100"})
	if err != nil || len(bal.GetBalances()) != 1 || bal.GetBalances()[0].GetOnHand().GetValue() != "24" {
		t.Errorf("inventory %v, %v", bal, err)
	}

	t.Run("a region-scoped key", func(t *testing.T) {
		na := inRegion(ctx, "na")
		_, err := c.GetSite(na, &fulfillmentv1.GetSiteRequest{Id: "plant-lyon"})
		wantErr(t, err, codes.NotFound, apierr.ReasonNotFound, "")
		_, err = c.GetInvoice(na, &fulfillmentv1.GetInvoiceRequest{Id: conf.GetInvoiceId()})
		wantErr(t, err, codes.NotFound, apierr.ReasonNotFound, "")
		_, err = c.CreateReservation(na, &fulfillmentv1.CreateReservationRequest{Kind: hard, ReferenceId: "ord_2", ShipToRegion: "eu",
			Lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "1", "EA")}})
		wantErr(t, err, codes.PermissionDenied, ReasonRegionOutOfScope, "ship_to_region")
		list, err := c.ListShipments(na, &fulfillmentv1.ListShipmentsRequest{})
		if err != nil || len(list.GetShipments()) != 0 {
			t.Errorf("an NA key lists EU shipments: %v, %v", list, err)
		}
	})
	t.Run("the order service down is a 503 that writes nothing", func(t *testing.T) {
		f.orders.put("ord_3", "cus_1", "eu", "EUR", [3]string{"VALVE-100", "EA", "1"})
		if _, err := c.CreateReservation(ctx, &fulfillmentv1.CreateReservationRequest{Kind: hard, ReferenceId: "ord_3", ShipToRegion: "eu",
			Lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "1", "EA")}}); err != nil {
			t.Fatal(err)
		}
		sh, err := c.CreateShipment(ctx, &fulfillmentv1.CreateShipmentRequest{Shipment: &fulfillmentv1.Shipment{OrderId: "ord_3", SiteId: "plant-lyon",
			Lines: []*fulfillmentv1.ShipmentLine{sline(0, "VALVE-100", "1", "EA")}}})
		if err != nil {
			t.Fatal(err)
		}
		f.orders.down.Store(true)
		defer f.orders.down.Store(false)
		before := f.snapshot()
		_, err = c.ConfirmShipment(ctx, &fulfillmentv1.ConfirmShipmentRequest{Id: sh.GetShipment().GetId(), Carrier: "DHL", TrackingNumber: "JD3"})
		wantErr(t, err, codes.Unavailable, apierr.ReasonUnavailable, "")
		f.assertUnchanged(before)
	})
}

// Many clients racing for the last units through the real server never
// reserve more than is there: reservations are decided and written in one
// serialised transaction.
func TestConcurrentReservationsNeverOversell(t *testing.T) {
	tests := []struct {
		name       string
		stock      string
		each       string
		sameRef    bool
		wantWins   int
		wantReserv string
	}{
		{"50 orders for the last 20 units", "20", "1", false, 20, "20"},
		{"50 orders of 3 for 20 units", "20", "3", false, 6, "18"},
		{"50 retries of one order", "20", "7", true, 50, "7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			threeSites(f)
			f.receive("plant-lyon", "VALVE-100", tt.stock, "EA")
			c := f.grpcClient()
			const clients = 50
			var (
				wg   sync.WaitGroup
				mu   sync.Mutex
				wins = map[string]int{} // reservation id → times returned
				fail error
			)
			start := make(chan struct{})
			for i := range clients {
				wg.Go(func() {
					<-start
					ref := fmt.Sprintf("ord_%02d", i)
					if tt.sameRef {
						ref = "ord_same"
					}
					resp, err := c.CreateReservation(context.Background(), &fulfillmentv1.CreateReservationRequest{
						Kind: hard, ReferenceId: ref, ShipToRegion: "eu", Lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", tt.each, "EA")},
					})
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err != nil:
						fail = err
					case resp.GetReservation() != nil:
						wins[resp.GetReservation().GetId()]++
					case resp.GetLines()[0].GetReason() != LineShort:
						fail = fmt.Errorf("a refused reservation says %q", resp.GetLines()[0].GetReason())
					}
				})
			}
			close(start)
			wg.Wait()
			if fail != nil {
				t.Fatal(fail)
			}
			total := 0
			for _, n := range wins {
				total += n
			}
			if total != tt.wantWins {
				t.Errorf("%d calls got a reservation, want %d", total, tt.wantWins)
			}
			if tt.sameRef && len(wins) != 1 {
				t.Errorf("%d reservations for one order, want 1", len(wins))
			}
			b := f.balance("plant-lyon", "VALVE-100")
			if b[1] != tt.wantReserv {
				t.Errorf("reserved %s, want %s", b[1], tt.wantReserv)
			}
		})
	}
}
