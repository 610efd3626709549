package fulfillment

import (
	"encoding/json"
	"slices"
	"testing"

	"go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/apierr"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/storage"
)

func TestCreateSiteFailures(t *testing.T) {
	naKey := erpKey
	naKey.Region = "na"
	site := func(id, region string, transit ...*fulfillmentv1.TransitTime) *fulfillmentv1.Site {
		return &fulfillmentv1.Site{Id: id, Name: id, Kind: fulfillmentv1.SiteKind_SITE_KIND_PLANT, Region: region, TransitTimes: transit}
	}
	tests := []struct {
		name   string
		p      auth.Principal
		site   *fulfillmentv1.Site
		code   codes.Code
		reason string
		field  string
	}{
		{"id taken", erpKey, site("plant-lyon", "eu"), codes.AlreadyExists, ReasonSiteExists, "site.id"},
		{"id taken, seen from another region", naKey, site("plant-lyon", "na"), codes.AlreadyExists, ReasonSiteExists, "site.id"},
		{"a region twice in the transit table", erpKey,
			site("plant-x", "eu", &fulfillmentv1.TransitTime{Region: "na", Days: 3}, &fulfillmentv1.TransitTime{Region: "na", Days: 4}),
			codes.InvalidArgument, apierr.ReasonInvalidArgument, "site.transit_times[1].region"},
		{"no kind", erpKey, &fulfillmentv1.Site{Id: "x", Name: "x", Region: "eu"}, codes.InvalidArgument, apierr.ReasonInvalidArgument, "site.kind"},
		{"outside the key's region", naKey, site("plant-x", "eu"), codes.PermissionDenied, ReasonRegionOutOfScope, "site.region"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.site("plant-lyon", "eu")
			before := f.snapshot()
			_, err := f.core().createSite(f.ctx, tt.p, tt.site)
			wantErr(t, domainErr(err), tt.code, tt.reason, tt.field)
			f.assertUnchanged(before)
		})
	}
}

func TestSitesByRegionAndScope(t *testing.T) {
	f := newFixture(t)
	threeSites(f)
	f.site("wh-antwerp", "eu")
	naKey := erpKey
	naKey.Region = "na"

	list := func(p auth.Principal, region string, size int32) []string {
		t.Helper()
		var ids []string
		req := &fulfillmentv1.ListSitesRequest{Region: region, PageSize: size}
		for range 10 {
			resp, err := f.core().listSites(f.ctx, p, req)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range resp.GetSites() {
				ids = append(ids, s.GetId())
			}
			if resp.GetNextPageToken() == "" {
				return ids
			}
			req.PageToken = resp.GetNextPageToken()
		}
		t.Fatal("paging does not end")
		return nil
	}
	tests := []struct {
		name   string
		p      auth.Principal
		region string
		size   int32
		want   []string
	}{
		{"all, in id order", erpKey, "", 0, []string{"plant-lyon", "plant-ohio", "wh-antwerp", "wh-rotterdam"}},
		{"all, one per page", erpKey, "", 1, []string{"plant-lyon", "plant-ohio", "wh-antwerp", "wh-rotterdam"}},
		{"one region, paged", erpKey, "eu", 2, []string{"plant-lyon", "wh-antwerp", "wh-rotterdam"}},
		{"a region-scoped key sees its region only", naKey, "", 0, []string{"plant-ohio"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := list(tt.p, tt.region, tt.size); !slices.Equal(got, tt.want) {
				t.Errorf("sites %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("another region's site is not found", func(t *testing.T) {
		_, err := f.core().getSite(f.ctx, naKey, "plant-lyon")
		wantErr(t, domainErr(err), codes.NotFound, apierr.ReasonNotFound, "")
	})
	t.Run("a page token for other filters is refused", func(t *testing.T) {
		resp, err := f.core().listSites(f.ctx, erpKey, &fulfillmentv1.ListSitesRequest{PageSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.core().listSites(f.ctx, erpKey, &fulfillmentv1.ListSitesRequest{Region: "eu", PageToken: resp.GetNextPageToken()})
		wantErr(t, domainErr(err), codes.InvalidArgument, apierr.ReasonInvalidArgument, "page_token")
	})
}

func TestAdjustInventoryFailuresWriteNothing(t *testing.T) {
	adj := func(site, sku, delta, unit string, reason fulfillmentv1.LedgerReason) *fulfillmentv1.AdjustInventoryRequest {
		return &fulfillmentv1.AdjustInventoryRequest{SiteId: site, Sku: sku, Delta: delta, Unit: unit, Reason: reason}
	}
	const (
		adjustment = fulfillmentv1.LedgerReason_LEDGER_REASON_ADJUSTMENT
		receipt    = fulfillmentv1.LedgerReason_LEDGER_REASON_PRODUCTION_RECEIPT
	)
	naKey := erpKey
	naKey.Region = "na"
	tests := []struct {
		name   string
		p      auth.Principal
		down   bool
		req    *fulfillmentv1.AdjustInventoryRequest
		code   codes.Code
		reason string
		field  string
	}{
		{"on hand would go negative", erpKey, false, adj("plant-lyon", "VALVE-100", "-11", "EA", adjustment),
			codes.FailedPrecondition, ReasonInsufficientStock, "delta"},
		{"on hand would go negative in another unit", erpKey, false, adj("plant-lyon", "VALVE-100", "-1", "CASE", adjustment),
			codes.FailedPrecondition, ReasonInsufficientStock, "delta"},
		{"zero", erpKey, false, adj("plant-lyon", "VALVE-100", "0", "EA", adjustment), codes.InvalidArgument, apierr.ReasonInvalidArgument, "delta"},
		{"a negative production receipt", erpKey, false, adj("plant-lyon", "VALVE-100", "-1", "EA", receipt),
			codes.InvalidArgument, apierr.ReasonInvalidArgument, "delta"},
		{"half an indivisible each", erpKey, false, adj("plant-lyon", "VALVE-100", "1.5", "EA", adjustment),
			codes.InvalidArgument, LineNotConvertible, "delta"},
		{"unknown unit", erpKey, false, adj("plant-lyon", "VALVE-100", "1", "DOZEN", adjustment), codes.InvalidArgument, LineUnknownUnit, "unit"},
		{"unknown product", erpKey, false, adj("plant-lyon", "NOPE-1", "1", "EA", adjustment), codes.InvalidArgument, LineUnknownProduct, "sku"},
		{"unknown site", erpKey, false, adj("plant-nowhere", "VALVE-100", "1", "EA", adjustment), codes.NotFound, apierr.ReasonNotFound, ""},
		{"a site of another region", naKey, false, adj("plant-lyon", "VALVE-100", "1", "EA", adjustment), codes.NotFound, apierr.ReasonNotFound, ""},
		{"no reason", erpKey, false, adj("plant-lyon", "VALVE-100", "1", "EA", fulfillmentv1.LedgerReason_LEDGER_REASON_SHIPMENT),
			codes.InvalidArgument, apierr.ReasonInvalidArgument, "reason"},
		{"productpricing down", erpKey, true, adj("plant-lyon", "VALVE-100", "1", "EA", adjustment), codes.Unavailable, apierr.ReasonUnavailable, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			threeSites(f)
			f.receive("plant-lyon", "VALVE-100", "10", "EA")
			f.catalog.down.Store(tt.down)
			before := f.snapshot()
			_, err := f.core().adjustInventory(f.ctx, tt.p, tt.req)
			wantErr(t, domainErr(err), tt.code, tt.reason, tt.field)
			f.assertUnchanged(before)
		})
	}
}

// Every movement is a ledger entry written with its balance and its
// InventoryChanged event in one transaction.
func TestAdjustInventoryLedgerBalanceAndEvent(t *testing.T) {
	f := newFixture(t)
	threeSites(f)
	steps := []struct {
		name           string
		delta, unit    string
		reason         fulfillmentv1.LedgerReason
		onHand, ledger string
	}{
		{"production receipt in cases", "2", "CASE", fulfillmentv1.LedgerReason_LEDGER_REASON_PRODUCTION_RECEIPT, "24", "24"},
		{"count correction down", "-4", "EA", fulfillmentv1.LedgerReason_LEDGER_REASON_ADJUSTMENT, "20", "-4"},
		{"down to exactly zero", "-20", "EA", fulfillmentv1.LedgerReason_LEDGER_REASON_ADJUSTMENT, "0", "-20"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			n, notified := len(f.outbox()), f.notified.Load()
			resp, err := f.core().adjustInventory(f.ctx, f.p, &fulfillmentv1.AdjustInventoryRequest{
				SiteId: "plant-lyon", Sku: "VALVE-100", Delta: st.delta, Unit: st.unit, Reason: st.reason, Note: st.name,
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.GetBalance().GetOnHand(); got.GetValue() != st.onHand || got.GetUnit() != "EA" {
				t.Errorf("on hand %v, want %s EA", got, st.onHand)
			}
			// The ledger entry, found through the item's index.
			var e ledgerEntry
			err = f.db.View(func(tx *bbolt.Tx) error {
				found := false
				_ = ixLedgerByItem.Scan(tx, itemKey("plant-lyon", "VALVE-100"), nil, 0, func(_, pk []byte) bool {
					found = found || string(pk) == resp.GetLedgerEntryId()
					return true
				})
				if !found {
					t.Errorf("ledger entry %s not in the item index", resp.GetLedgerEntryId())
				}
				return json.Unmarshal(tx.Bucket(bucketLedger).Get([]byte(resp.GetLedgerEntryId())), &e)
			})
			if err != nil {
				t.Fatal(err)
			}
			if e.Reason != st.reason || e.OnHandDelta != st.ledger || e.OnHandAfter != st.onHand || e.Note != st.name || e.Actor != "key_erp" {
				t.Errorf("ledger entry %+v", e)
			}
			evs := f.eventsSince(n)
			if len(evs) != 1 || evs[0].GetType() != "millrace.events.v1.InventoryChanged" ||
				evs[0].GetSubject() != "inventory/plant-lyon:VALVE-100" || evs[0].GetRegion() != "eu" || evs[0].GetSource() != "/millrace/fulfillment" {
				t.Fatalf("events %v", evs)
			}
			ic := unpack[*eventsv1.InventoryChanged](t, evs[0])
			if ic.GetReason() != st.reason || ic.GetBalance().GetOnHand().GetValue() != st.onHand {
				t.Errorf("InventoryChanged %v", ic)
			}
			if f.notified.Load() != notified+1 {
				t.Errorf("Notify called %d times, want once", f.notified.Load()-notified)
			}
		})
	}
}

func TestListInventoryAcrossSites(t *testing.T) {
	f := newFixture(t)
	threeSites(f)
	f.receive("plant-lyon", "VALVE-100", "10", "EA")
	f.receive("plant-ohio", "VALVE-100", "30", "EA")
	f.receive("wh-rotterdam", "VALVE-100", "20", "EA")
	f.receive("plant-lyon", "RESIN-5", "5", "KG")
	naKey := erpKey
	naKey.Region = "na"

	list := func(p auth.Principal, req *fulfillmentv1.ListInventoryRequest) []string {
		t.Helper()
		var got []string
		for range 10 {
			resp, err := f.core().listInventory(f.ctx, p, req)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range resp.GetBalances() {
				got = append(got, b.GetSiteId()+"/"+b.GetSku()+"="+b.GetOnHand().GetValue())
			}
			if resp.GetNextPageToken() == "" {
				return got
			}
			req.PageToken = resp.GetNextPageToken()
		}
		t.Fatal("paging does not end")
		return nil
	}
	tests := []struct {
		name string
		p    auth.Principal
		req  *fulfillmentv1.ListInventoryRequest
		want []string
	}{
		{"one SKU at every site", erpKey, &fulfillmentv1.ListInventoryRequest{Sku: "VALVE-100"},
			[]string{"plant-lyon/VALVE-100=10", "plant-ohio/VALVE-100=30", "wh-rotterdam/VALVE-100=20"}},
		{"one SKU, a page per balance", erpKey, &fulfillmentv1.ListInventoryRequest{Sku: "VALVE-100", PageSize: 1},
			[]string{"plant-lyon/VALVE-100=10", "plant-ohio/VALVE-100=30", "wh-rotterdam/VALVE-100=20"}},
		{"one site", erpKey, &fulfillmentv1.ListInventoryRequest{SiteId: "plant-lyon", PageSize: 1},
			[]string{"plant-lyon/RESIN-5=5", "plant-lyon/VALVE-100=10"}},
		{"everything", erpKey, &fulfillmentv1.ListInventoryRequest{PageSize: 3},
			[]string{"plant-lyon/RESIN-5=5", "plant-lyon/VALVE-100=10", "plant-ohio/VALVE-100=30", "wh-rotterdam/VALVE-100=20"}},
		{"a region-scoped key", naKey, &fulfillmentv1.ListInventoryRequest{Sku: "VALVE-100"}, []string{"plant-ohio/VALVE-100=30"}},
		{"a SKU nobody holds", erpKey, &fulfillmentv1.ListInventoryRequest{Sku: "GASKET-7"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := list(tt.p, tt.req); !slices.Equal(got, tt.want) {
				t.Errorf("balances %v, want %v", got, tt.want)
			}
		})
	}
}

// The SKU index is what ListInventory by SKU reads: a balance written is
// indexed in the same transaction.
func TestBalanceIndexedBySKU(t *testing.T) {
	f := newFixture(t)
	threeSites(f)
	f.receive("plant-ohio", "RESIN-5", "1", "KG")
	var sites []string
	_ = f.db.View(func(tx *bbolt.Tx) error {
		return ixBalancesBySKU.Scan(tx, storage.KeyStrings("RESIN-5"), nil, 0, func(_, pk []byte) bool {
			sites = append(sites, string(pk))
			return true
		})
	})
	if !slices.Equal(sites, []string{"plant-ohio"}) {
		t.Errorf("index %v", sites)
	}
}

func TestSupplyPlans(t *testing.T) {
	f := newFixture(t)
	threeSites(f)
	a := f.plan("plant-lyon", "VALVE-100", "2", "CASE", day(9))
	b := f.plan("plant-ohio", "VALVE-100", "5", "EA", day(3))
	c := f.plan("plant-lyon", "RESIN-5", "1", "BAG", day(5))
	if a.GetQuantity().GetValue() != "24" || a.GetQuantity().GetUnit() != "EA" || !a.GetDueTime().AsTime().Equal(day(9)) {
		t.Errorf("plan %v, want 24 EA due day 9", a)
	}
	list := func(req *fulfillmentv1.ListSupplyPlansRequest) []string {
		t.Helper()
		var got []string
		for range 10 {
			resp, err := f.core().listSupplyPlans(f.ctx, f.p, req)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range resp.GetSupplyPlans() {
				got = append(got, p.GetId())
			}
			if resp.GetNextPageToken() == "" {
				return got
			}
			req.PageToken = resp.GetNextPageToken()
		}
		t.Fatal("paging does not end")
		return nil
	}
	tests := []struct {
		name string
		req  *fulfillmentv1.ListSupplyPlansRequest
		want []string
	}{
		{"all by due date, a page each", &fulfillmentv1.ListSupplyPlansRequest{PageSize: 1}, []string{b.GetId(), c.GetId(), a.GetId()}},
		{"one SKU", &fulfillmentv1.ListSupplyPlansRequest{Sku: "VALVE-100"}, []string{b.GetId(), a.GetId()}},
		{"one site", &fulfillmentv1.ListSupplyPlansRequest{SiteId: "plant-lyon", PageSize: 1}, []string{c.GetId(), a.GetId()}},
		{"one item", &fulfillmentv1.ListSupplyPlansRequest{SiteId: "plant-lyon", Sku: "VALVE-100"}, []string{a.GetId()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := list(tt.req); !slices.Equal(got, tt.want) {
				t.Errorf("plans %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("failures write nothing", func(t *testing.T) {
		plan := func(site, sku, qty, unit string) *fulfillmentv1.SupplyPlan {
			return &fulfillmentv1.SupplyPlan{SiteId: site, Sku: sku, Quantity: &typev1.Quantity{Value: qty, Unit: unit}, DueTime: ts(day(1))}
		}
		noDue := plan("plant-lyon", "VALVE-100", "1", "EA")
		noDue.DueTime = nil
		fails := []struct {
			name   string
			plan   *fulfillmentv1.SupplyPlan
			code   codes.Code
			reason string
			field  string
		}{
			{"unknown site", plan("plant-x", "VALVE-100", "1", "EA"), codes.NotFound, apierr.ReasonNotFound, ""},
			{"unknown product", plan("plant-lyon", "NOPE-1", "1", "EA"), codes.InvalidArgument, LineUnknownProduct, "supply_plan.sku"},
			{"unknown unit", plan("plant-lyon", "VALVE-100", "1", "KG"), codes.InvalidArgument, LineUnknownUnit, "supply_plan.quantity.unit"},
			{"half a case", plan("plant-lyon", "VALVE-100", "0.5", "CASE"), codes.InvalidArgument, LineNotConvertible, "supply_plan.quantity.value"},
			{"zero", plan("plant-lyon", "VALVE-100", "0", "EA"), codes.InvalidArgument, apierr.ReasonInvalidArgument, "supply_plan.quantity.value"},
			{"no due date", noDue, codes.InvalidArgument, apierr.ReasonInvalidArgument, "supply_plan.due_time"},
		}
		for _, tt := range fails {
			t.Run(tt.name, func(t *testing.T) {
				before := f.snapshot()
				_, err := f.core().createSupplyPlan(f.ctx, f.p, tt.plan)
				wantErr(t, domainErr(err), tt.code, tt.reason, tt.field)
				f.assertUnchanged(before)
			})
		}
	})
}
