package fulfillment

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"

	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/ids"
	"github.com/millrace/millrace/internal/money"
	"github.com/millrace/millrace/internal/reqctx"
)

// Page bounds of the lists, as the contract states them.
const (
	sitesPageDefault, sitesPageMax         = 100, 500
	inventoryPageDefault, inventoryPageMax = 100, 1000
	plansPageDefault, plansPageMax         = 100, 500
	recordsPageDefault, recordsPageMax     = 50, 500
)

// ---------------------------------------------------------------------------
// Sites.

func (k *core) createSite(ctx context.Context, p auth.Principal, in *fulfillmentv1.Site) (*fulfillmentv1.Site, error) {
	if in == nil {
		return nil, invalid("site", "is required")
	}
	ch := &checker{}
	if in.GetId() == "" {
		ch.add("site.id", "is required")
	}
	if in.GetName() == "" {
		ch.add("site.name", "is required")
	}
	if in.GetKind() == fulfillmentv1.SiteKind_SITE_KIND_UNSPECIFIED {
		ch.add("site.kind", "is required")
	}
	if in.GetRegion() == "" {
		ch.add("site.region", "is required")
	}
	seen := map[string]int{}
	for i, t := range in.GetTransitTimes() {
		f := path("site", indexed("transit_times", i))
		if j, dup := seen[t.GetRegion()]; dup {
			ch.add(path(f, "region"), "region %q already has a transit time in transit_times[%d]", t.GetRegion(), j)
		}
		seen[t.GetRegion()] = i
		if t.GetDays() < 0 || t.GetDays() > 365 {
			ch.add(path(f, "days"), "must be 0 to 365")
		}
	}
	if err := ch.err(); err != nil {
		return nil, err
	}
	if err := checkScope(p, "site.region", in.GetRegion()); err != nil {
		return nil, err
	}
	s := proto.Clone(in).(*fulfillmentv1.Site)
	s.CreateTime = ts(k.now())
	err := k.repo.update(ctx, func(tx txn) error {
		old, err := tx.site(s.GetId())
		if err != nil {
			return err
		}
		if old != nil {
			// Say "exists" even to a key that cannot see the site: ids are
			// chosen by the operator and must be unique across regions.
			return &conflictError{Reason: ReasonSiteExists, Message: "site " + s.GetId() + " already exists",
				Meta: map[string]string{"field": "site.id", "id": s.GetId()}}
		}
		return tx.putSite(s)
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (k *core) getSite(ctx context.Context, p auth.Principal, id string) (*fulfillmentv1.Site, error) {
	var out *fulfillmentv1.Site
	err := k.repo.view(ctx, func(tx txn) error {
		s, err := visibleSite(tx, p, id)
		out = s
		return err
	})
	return out, err
}

func (k *core) listSites(ctx context.Context, p auth.Principal, req *fulfillmentv1.ListSitesRequest) (*fulfillmentv1.ListSitesResponse, error) {
	size := pageSize(req.GetPageSize(), sitesPageDefault, sitesPageMax)
	filter := filterHash("sites", req.GetRegion())
	after, err := decodePageToken(req.GetPageToken(), filter, 1)
	if err != nil {
		return nil, err
	}
	afterID := ""
	if after != nil {
		afterID = after[0]
	}
	resp := &fulfillmentv1.ListSitesResponse{}
	err = k.repo.view(ctx, func(tx txn) error {
		scanned, last := 0, ""
		err := tx.scanSites(req.GetRegion(), afterID, func(s *fulfillmentv1.Site) bool {
			if len(resp.Sites) == size || scanned == maxListScan {
				resp.NextPageToken = encodePageToken(filter, last)
				return false
			}
			scanned++
			last = s.GetId()
			if p.SeesRegion(s.GetRegion()) {
				resp.Sites = append(resp.Sites, s)
			}
			return true
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// ---------------------------------------------------------------------------
// Inventory.

func (k *core) adjustInventory(ctx context.Context, p auth.Principal, req *fulfillmentv1.AdjustInventoryRequest) (*fulfillmentv1.AdjustInventoryResponse, error) {
	reason := req.GetReason()
	if reason != fulfillmentv1.LedgerReason_LEDGER_REASON_ADJUSTMENT && reason != fulfillmentv1.LedgerReason_LEDGER_REASON_PRODUCTION_RECEIPT {
		return nil, invalid("reason", "must be ADJUSTMENT or PRODUCTION_RECEIPT")
	}
	if req.GetSiteId() == "" {
		return nil, invalid("site_id", "is required")
	}
	delta, err := money.Parse(req.GetDelta())
	switch {
	case err != nil:
		return nil, invalid("delta", "%q is not a decimal number", req.GetDelta())
	case delta.IsZero():
		return nil, invalid("delta", "must not be zero")
	case delta.Negative && reason == fulfillmentv1.LedgerReason_LEDGER_REASON_PRODUCTION_RECEIPT:
		return nil, invalid("delta", "a production receipt adds stock; correct a receipt with an ADJUSTMENT")
	}
	if req.GetUnit() == "" {
		return nil, invalid("unit", "is required")
	}
	facts, unknown, err := k.catalog(ctx, req.GetSku())
	if err != nil {
		return nil, err
	}
	if unknown[req.GetSku()] {
		return nil, invalidReason(LineUnknownProduct, "sku", "no product has SKU %q", req.GetSku())
	}
	f := facts[req.GetSku()]
	magnitude := reduce(delta)
	magnitude.Negative = false
	base, err := f.ToBase(magnitude, req.GetUnit())
	if err != nil {
		// Name the request's own fields: the unit, else the delta.
		if _, unitKnown := f.Units[req.GetUnit()]; !unitKnown {
			return nil, unknownUnit(f, "unit", err)
		}
		return nil, invalidReason(LineNotConvertible, "delta", "%s", trimSentinel(err, ErrNotConvertible))
	}
	if delta.Negative {
		base = money.Sub(money.Zero(), base)
	}

	var resp *fulfillmentv1.AdjustInventoryResponse
	if entryID := reqctx.CreatedBefore(ctx); entryID != "" {
		// A retry of a keyed adjustment that was applied before a crash
		// lost its answer: answer with the balance, never apply it twice.
		err = k.repo.view(ctx, func(tx txn) error {
			site, err := visibleSite(tx, p, req.GetSiteId())
			if err != nil {
				return err
			}
			b, err := loadBalance(tx, site.GetId(), f)
			if err != nil {
				return err
			}
			bp, err := balanceProto(tx, b, k.now())
			resp = &fulfillmentv1.AdjustInventoryResponse{Balance: bp, LedgerEntryId: entryID}
			return err
		})
		if err != nil {
			return nil, err
		}
		return resp, nil
	}
	err = k.repo.update(ctx, func(tx txn) error {
		resp = nil
		now := k.now()
		site, err := visibleSite(tx, p, req.GetSiteId())
		if err != nil {
			return err
		}
		b, err := loadBalance(tx, site.GetId(), f)
		if err != nil {
			return err
		}
		onHand := money.Add(num(b.OnHand), base)
		if onHand.Sign() < 0 {
			return &preconditionError{Reason: ReasonInsufficientStock, Field: "delta",
				Message: "on hand of " + b.SKU + " at " + b.SiteID + " is " + money.Format(num(b.OnHand)) + " " + b.Unit +
					"; a change of " + money.Format(base) + " " + b.Unit + " would make it negative",
				Meta: map[string]string{"on_hand": money.Format(num(b.OnHand)), "unit": b.Unit}}
		}
		b.OnHand = money.Format(onHand)
		b.UpdateTime = now
		if err := tx.putBalance(b); err != nil {
			return err
		}
		entry := &ledgerEntry{
			ID: ids.New("led"), SiteID: b.SiteID, SKU: b.SKU, Unit: b.Unit, Reason: reason,
			OnHandDelta: money.Format(base), ReservedDelta: "0",
			OnHandAfter: b.OnHand, ReservedAfter: money.Format(num(b.Reserved)),
			Note: req.GetNote(), Actor: p.KeyID, Time: now,
		}
		if err := tx.appendLedger(entry); err != nil {
			return err
		}
		if err := tx.attach(entry.ID); err != nil {
			return err
		}
		if reason == fulfillmentv1.LedgerReason_LEDGER_REASON_PRODUCTION_RECEIPT {
			if err := receiveAgainstPlans(tx, b.SiteID, b.SKU, base); err != nil {
				return err
			}
		}
		if err := emitInventory(tx, b, site.GetRegion(), reason, now); err != nil {
			return err
		}
		bp, err := balanceProto(tx, b, now)
		if err != nil {
			return err
		}
		resp = &fulfillmentv1.AdjustInventoryResponse{Balance: bp, LedgerEntryId: entry.ID}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// loadBalance returns the balance of an item, a new empty one when the site
// never held it. A balance keeps the unit it was opened in; a product whose
// base unit changed since cannot be moved in the new one.
func loadBalance(tx txn, siteID string, f ProductFacts) (*balance, error) {
	b, err := tx.balance(siteID, f.SKU)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return &balance{SiteID: siteID, SKU: f.SKU, Unit: f.BaseUnit, OnHand: "0", Reserved: "0"}, nil
	}
	if b.Unit != f.BaseUnit {
		return nil, precondition(ReasonBaseUnitChanged, "sku",
			"stock of %s at %s is kept in %s but the product's base unit is now %s", f.SKU, siteID, b.Unit, f.BaseUnit)
	}
	return b, nil
}

// receiveAgainstPlans reduces the open planned receipts of an item by a
// production receipt, earliest due first: the receipt is that production
// arriving, and counting it twice would promise stock that does not exist.
func receiveAgainstPlans(tx txn, siteID, sku string, received *money.Decimal) error {
	var plans []*supplyPlan
	if err := tx.openPlans(siteID, sku, func(pl *supplyPlan) bool {
		plans = append(plans, pl)
		return true
	}); err != nil {
		return err
	}
	left := received
	for _, pl := range plans {
		if left.Sign() <= 0 {
			break
		}
		open := num(pl.Open)
		take := open
		if money.Cmp(left, open) < 0 {
			take = left
		}
		next := *pl
		next.Open = money.Format(money.Sub(open, take))
		if err := tx.putPlan(pl, &next); err != nil {
			return err
		}
		left = money.Sub(left, take)
	}
	return nil
}

func (k *core) listInventory(ctx context.Context, p auth.Principal, req *fulfillmentv1.ListInventoryRequest) (*fulfillmentv1.ListInventoryResponse, error) {
	size := pageSize(req.GetPageSize(), inventoryPageDefault, inventoryPageMax)
	filter := filterHash("inventory", req.GetSku(), req.GetSiteId())
	after, err := decodePageToken(req.GetPageToken(), filter, 2)
	if err != nil {
		return nil, err
	}
	var afterSite, afterSKU string
	if after != nil {
		afterSite, afterSKU = after[0], after[1]
	}
	resp := &fulfillmentv1.ListInventoryResponse{}
	err = k.repo.view(ctx, func(tx txn) error {
		now := k.now()
		resp.Balances, resp.NextPageToken = nil, ""
		regions := map[string]string{} // site id → region, for the scope check
		visible := func(siteID string) (bool, error) {
			r, ok := regions[siteID]
			if !ok {
				s, err := tx.site(siteID)
				if err != nil {
					return false, err
				}
				r = s.GetRegion()
				regions[siteID] = r
			}
			return p.SeesRegion(r), nil
		}
		scanned := 0
		var last *balance
		var ferr error
		err := tx.scanBalances(req.GetSiteId(), req.GetSku(), afterSite, afterSKU, func(b *balance) bool {
			if len(resp.Balances) == size || scanned == maxListScan {
				resp.NextPageToken = encodePageToken(filter, last.SiteID, last.SKU)
				return false
			}
			scanned++
			last = b
			ok, err := visible(b.SiteID)
			if err != nil {
				ferr = err
				return false
			}
			if !ok {
				return true
			}
			bp, err := balanceProto(tx, b, now)
			if err != nil {
				ferr = err
				return false
			}
			resp.Balances = append(resp.Balances, bp)
			return true
		})
		if err != nil {
			return err
		}
		return ferr
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// ---------------------------------------------------------------------------
// Planned production receipts.

func (k *core) createSupplyPlan(ctx context.Context, p auth.Principal, in *fulfillmentv1.SupplyPlan) (*fulfillmentv1.SupplyPlan, error) {
	if in == nil {
		return nil, invalid("supply_plan", "is required")
	}
	ch := &checker{}
	if in.GetSiteId() == "" {
		ch.add("supply_plan.site_id", "is required")
	}
	if in.GetSku() == "" {
		ch.add("supply_plan.sku", "is required")
	}
	if in.GetDueTime() == nil || !in.GetDueTime().IsValid() {
		ch.add("supply_plan.due_time", "is required")
	}
	if err := ch.err(); err != nil {
		return nil, err
	}
	base, f, err := k.baseQuantity(ctx, "supply_plan.sku", in.GetSku(), "supply_plan.quantity", in.GetQuantity())
	if err != nil {
		return nil, err
	}
	var out *supplyPlan
	if id := reqctx.CreatedBefore(ctx); id != "" {
		// A keyed retry after a crash lost the answer: the plan exists.
		err = k.repo.view(ctx, func(tx txn) error {
			pl, err := tx.plan(id)
			if err == nil && pl != nil {
				if _, verr := visibleSite(tx, p, pl.SiteID); verr == nil {
					out = pl
				}
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		if out != nil {
			return planProto(out), nil
		}
	}
	err = k.repo.update(ctx, func(tx txn) error {
		out = nil
		site, err := visibleSite(tx, p, in.GetSiteId())
		if err != nil {
			return err
		}
		// Availability nets the plan against the item's balance, so the
		// two must count in the same unit.
		if _, err := loadBalance(tx, site.GetId(), f); err != nil {
			return err
		}
		pl := &supplyPlan{
			ID: ids.New("spl"), SiteID: site.GetId(), SKU: f.SKU, Unit: f.BaseUnit,
			Planned: money.Format(base), Open: money.Format(base),
			DueTime: in.GetDueTime().AsTime().UTC().Truncate(time.Microsecond), CreateTime: k.now(),
		}
		if err := tx.putPlan(nil, pl); err != nil {
			return err
		}
		if err := tx.attach(pl.ID); err != nil {
			return err
		}
		out = pl
		return nil
	})
	if err != nil {
		return nil, err
	}
	return planProto(out), nil
}

// planProto renders a plan with its open quantity: what is still expected.
func planProto(pl *supplyPlan) *fulfillmentv1.SupplyPlan {
	return &fulfillmentv1.SupplyPlan{
		Id: pl.ID, SiteId: pl.SiteID, Sku: pl.SKU,
		Quantity: quantity(num(pl.Open), pl.Unit), DueTime: ts(pl.DueTime),
	}
}

func (k *core) listSupplyPlans(ctx context.Context, p auth.Principal, req *fulfillmentv1.ListSupplyPlansRequest) (*fulfillmentv1.ListSupplyPlansResponse, error) {
	size := pageSize(req.GetPageSize(), plansPageDefault, plansPageMax)
	filter := filterHash("plans", req.GetSku(), req.GetSiteId())
	after, err := decodePageToken(req.GetPageToken(), filter, 2)
	if err != nil {
		return nil, err
	}
	var afterDue time.Time
	afterID := ""
	if after != nil {
		if afterDue, err = time.Parse(time.RFC3339Nano, after[0]); err != nil {
			return nil, invalid("page_token", "not a page token from a previous response of this list")
		}
		afterID = after[1]
	}
	resp := &fulfillmentv1.ListSupplyPlansResponse{}
	err = k.repo.view(ctx, func(tx txn) error {
		resp.SupplyPlans, resp.NextPageToken = nil, ""
		regions := map[string]string{}
		scanned := 0
		var last *supplyPlan
		var ferr error
		err := tx.scanOpenPlans(req.GetSku(), req.GetSiteId(), afterDue, afterID, func(pl *supplyPlan) bool {
			if len(resp.SupplyPlans) == size || scanned == maxListScan {
				resp.NextPageToken = encodePageToken(filter, last.DueTime.Format(time.RFC3339Nano), last.ID)
				return false
			}
			scanned++
			last = pl
			r, ok := regions[pl.SiteID]
			if !ok {
				s, err := tx.site(pl.SiteID)
				if err != nil {
					ferr = err
					return false
				}
				r = s.GetRegion()
				regions[pl.SiteID] = r
			}
			if p.SeesRegion(r) {
				resp.SupplyPlans = append(resp.SupplyPlans, planProto(pl))
			}
			return true
		})
		if err != nil {
			return err
		}
		return ferr
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}
