package fulfillment

import (
	"context"
	"fmt"
	"slices"
	"time"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/ids"
	"github.com/millrace/millrace/internal/money"
	"github.com/millrace/millrace/internal/reqctx"
)

// Returns are checked against what fulfillment itself shipped and invoiced
// for each order line (orderLine records, written when a shipment is
// confirmed): never more than shipped minus what earlier returns already
// authorized. The credit memo prices the returned quantity with the
// invoiced unit price and the invoiced tax rate.

func (k *core) createReturn(ctx context.Context, p auth.Principal, in *fulfillmentv1.Return) (*fulfillmentv1.Return, error) {
	if in == nil {
		return nil, invalid("return", "is required")
	}
	if in.GetOrderId() == "" {
		return nil, invalid("return.order_id", "is required")
	}
	inputs := make([]lineInput, len(in.GetLines()))
	for i, l := range in.GetLines() {
		inputs[i] = lineInput{index: l.GetOrderLineIndex(), sku: l.GetSku(), qty: l.GetQuantity()}
	}
	lines, _, err := k.prepareLines(ctx, "return", inputs)
	if err != nil {
		return nil, err
	}
	var out *returnRec
	if id := reqctx.CreatedBefore(ctx); id != "" {
		// A keyed retry after a crash lost the answer: the return exists.
		err = k.repo.view(ctx, func(tx txn) error {
			r, verr := visibleReturn(tx, p, id)
			if verr == nil {
				out = r
			}
			return nil
		})
		if err == nil && out != nil {
			return returnProto(out), nil
		}
	}
	err = k.repo.update(ctx, func(tx txn) error {
		out = nil
		now := k.now()
		r := &returnRec{
			ID: ids.New("rma"), OrderID: in.GetOrderId(), Reason: in.GetReason(),
			Status: fulfillmentv1.ReturnStatus_RETURN_STATUS_AUTHORIZED, CreateTime: now,
		}
		for i, l := range lines {
			f := path("return", indexed("lines", i))
			ol, err := tx.orderLine(in.GetOrderId(), l.index)
			if err != nil {
				return err
			}
			if ol == nil || !p.SeesRegion(ol.Region) || num(ol.Shipped).Sign() == 0 {
				return precondition(ReasonNothingShipped, path(f, "order_line_index"),
					"nothing of order %s line %d has shipped", in.GetOrderId(), l.index)
			}
			if ol.SKU != l.sku {
				return invalidReason(ReasonOrderMismatch, path(f, "sku"), "order line %d is %s, not %s", l.index, ol.SKU, l.sku)
			}
			if ol.BaseUnit != l.unit {
				return precondition(ReasonBaseUnitChanged, path(f, "quantity"),
					"%s shipped in %s but the product's base unit is now %s", ol.SKU, ol.BaseUnit, l.unit)
			}
			returnable := money.Sub(num(ol.Shipped), num(ol.Returned))
			if money.Cmp(l.base, returnable) > 0 {
				return &preconditionError{Reason: ReasonExceedsShipped, Field: path(f, "quantity"),
					Message: fmt.Sprintf("order %s line %d shipped %s %s of which %s %s are already returned; %s %s cannot come back",
						in.GetOrderId(), l.index, money.Format(num(ol.Shipped)), ol.BaseUnit, money.Format(num(ol.Returned)), ol.BaseUnit,
						money.Format(l.base), l.unit),
					Meta: map[string]string{"returnable": money.Format(returnable), "unit": ol.BaseUnit}}
			}
			if r.Region == "" {
				r.Region, r.CustomerID = ol.Region, ol.CustomerID
			}
			ol.Returned = money.Format(money.Add(num(ol.Returned), l.base))
			if err := tx.putOrderLine(ol); err != nil {
				return err
			}
			r.Lines = append(r.Lines, shipmentLine{Index: l.index, SKU: l.sku, Unit: l.unit, Quantity: money.Format(l.base)})
		}
		if err := tx.putReturn(r); err != nil {
			return err
		}
		if err := tx.attach(r.ID); err != nil {
			return err
		}
		out = r
		return tx.emit(events.Subject("returns", r.ID), r.Region, &eventsv1.ReturnAuthorized{Return: returnProto(r)})
	})
	if err != nil {
		return nil, err
	}
	return returnProto(out), nil
}

func (k *core) receiveReturn(ctx context.Context, p auth.Principal, req *fulfillmentv1.ReceiveReturnRequest) (*fulfillmentv1.Return, error) {
	disp := req.GetDisposition()
	if disp != fulfillmentv1.Disposition_DISPOSITION_RESTOCK && disp != fulfillmentv1.Disposition_DISPOSITION_SCRAP {
		return nil, invalid("disposition", "must be RESTOCK or SCRAP")
	}
	if req.GetSiteId() == "" {
		return nil, invalid("site_id", "is required")
	}
	var out *returnRec
	err := k.repo.update(ctx, func(tx txn) error {
		out = nil
		now := k.now()
		r, err := visibleReturn(tx, p, req.GetId())
		if err != nil {
			return err
		}
		if r.Status == fulfillmentv1.ReturnStatus_RETURN_STATUS_RECEIVED {
			if r.ReceivedSiteID == req.GetSiteId() && r.Disposition == disp {
				out = r // a retry: received once
				return nil
			}
			return precondition(ReasonReturnReceived, "id", "return %s was already received at %s as %s",
				r.ID, r.ReceivedSiteID, r.Disposition)
		}
		site, err := visibleSite(tx, p, req.GetSiteId())
		if err != nil {
			return err
		}
		memo, err := creditFor(tx, r, now)
		if err != nil {
			return err
		}
		if disp == fulfillmentv1.Disposition_DISPOSITION_RESTOCK {
			if err := restock(tx, p, r, site, now); err != nil {
				return err
			}
		}
		r.Status, r.ReceivedSiteID, r.Disposition, r.Memo, r.ReceiveTime = fulfillmentv1.ReturnStatus_RETURN_STATUS_RECEIVED, site.GetId(), disp, memo, now
		if err := tx.putReturn(r); err != nil {
			return err
		}
		out = r
		rp := returnProto(r)
		if err := tx.emit(events.Subject("returns", r.ID), r.Region, &eventsv1.ReturnReceived{Return: rp}); err != nil {
			return err
		}
		return tx.emit(events.Subject("credit_memos", memo.ID), r.Region, &eventsv1.CreditMemoIssued{CreditMemo: rp.GetCreditMemo()})
	})
	if err != nil {
		return nil, err
	}
	return returnProto(out), nil
}

// restock puts returned goods back on hand at the receiving site.
func restock(tx txn, p auth.Principal, r *returnRec, site *fulfillmentv1.Site, now time.Time) error {
	var skus []string
	for _, l := range r.Lines {
		q := num(l.Quantity)
		b, err := tx.balance(site.GetId(), l.SKU)
		if err != nil {
			return err
		}
		if b == nil {
			b = &balance{SiteID: site.GetId(), SKU: l.SKU, Unit: l.Unit, OnHand: "0", Reserved: "0"}
		}
		if b.Unit != l.Unit {
			return precondition(ReasonBaseUnitChanged, "site_id",
				"stock of %s at %s is kept in %s; the return is in %s", l.SKU, site.GetId(), b.Unit, l.Unit)
		}
		b.OnHand, b.UpdateTime = money.Format(money.Add(num(b.OnHand), q)), now
		if err := tx.putBalance(b); err != nil {
			return err
		}
		if err := tx.appendLedger(&ledgerEntry{
			ID: ids.New("led"), SiteID: b.SiteID, SKU: b.SKU, Unit: b.Unit,
			Reason:      fulfillmentv1.LedgerReason_LEDGER_REASON_RETURN,
			OnHandDelta: money.Format(q), ReservedDelta: "0", OnHandAfter: b.OnHand, ReservedAfter: money.Format(num(b.Reserved)),
			Reference: r.ID, Actor: p.KeyID, Time: now,
		}); err != nil {
			return err
		}
		if !slices.Contains(skus, l.SKU) {
			skus = append(skus, l.SKU)
		}
	}
	for _, sku := range skus {
		b, err := tx.balance(site.GetId(), sku)
		if err != nil {
			return err
		}
		if err := emitInventory(tx, b, site.GetRegion(), fulfillmentv1.LedgerReason_LEDGER_REASON_RETURN, now); err != nil {
			return err
		}
	}
	return nil
}

// creditFor prices a return as its invoices did: each line's net amount is
// returned base quantity × unit price ÷ (base units per priced unit),
// rounded once; tax is rounded once on the net total of each tax rate (an
// order normally has one).
func creditFor(tx txn, r *returnRec, now time.Time) (*creditMemo, error) {
	memo := &creditMemo{ID: ids.New("cm"), IssueTime: now}
	scale := 0
	byRate := map[string]*money.Decimal{}
	var rates []string
	net := money.Zero()
	for _, l := range r.Lines {
		ol, err := tx.orderLine(r.OrderID, l.Index)
		if err != nil {
			return nil, err
		}
		if ol == nil {
			return nil, fmt.Errorf("return %s: order %s line %d has no shipment record", r.ID, r.OrderID, l.Index)
		}
		if memo.Currency == "" {
			memo.Currency = ol.Currency
			scale, _ = money.MinorUnits(ol.Currency)
		}
		lineNet := roundAmount(mulDiv(num(l.Quantity), num(ol.UnitPrice), num(ol.PriceUnitToBase)), scale)
		net = money.Add(net, lineNet)
		if _, ok := byRate[ol.TaxRate]; !ok {
			byRate[ol.TaxRate] = money.Zero()
			rates = append(rates, ol.TaxRate)
		}
		byRate[ol.TaxRate] = money.Add(byRate[ol.TaxRate], lineNet)
	}
	tax := money.Zero()
	for _, rate := range rates {
		tax = money.Add(tax, roundAmount(money.Mul(byRate[rate], num(rate)), scale))
	}
	memo.Net, memo.Tax, memo.Amount = money.Format(net), money.Format(tax), money.Format(money.Add(net, tax))
	return memo, nil
}

func returnProto(r *returnRec) *fulfillmentv1.Return {
	out := &fulfillmentv1.Return{
		Id: r.ID, OrderId: r.OrderID, Reason: r.Reason, Status: r.Status,
		ReceivedSiteId: r.ReceivedSiteID, Disposition: r.Disposition,
		CreateTime: ts(r.CreateTime), ReceiveTime: ts(r.ReceiveTime),
	}
	for _, l := range r.Lines {
		out.Lines = append(out.Lines, &fulfillmentv1.ReturnLine{OrderLineIndex: l.Index, Sku: l.SKU, Quantity: quantity(num(l.Quantity), l.Unit)})
	}
	if m := r.Memo; m != nil {
		out.CreditMemo = &fulfillmentv1.CreditMemo{
			Id: m.ID, ReturnId: r.ID, CustomerId: r.CustomerID,
			Amount: moneyOf(m.Amount, m.Currency), IssueTime: ts(m.IssueTime),
		}
	}
	return out
}

func visibleReturn(tx txn, p auth.Principal, id string) (*returnRec, error) {
	r, err := tx.returnRec(id)
	if err != nil {
		return nil, err
	}
	if r == nil || !p.SeesRegion(r.Region) {
		return nil, &notFoundError{Kind: "return", ID: id}
	}
	return r, nil
}

func (k *core) getReturn(ctx context.Context, p auth.Principal, id string) (*fulfillmentv1.Return, error) {
	var out *fulfillmentv1.Return
	err := k.repo.view(ctx, func(tx txn) error {
		r, err := visibleReturn(tx, p, id)
		if err != nil {
			return err
		}
		out = returnProto(r)
		return nil
	})
	return out, err
}

func (k *core) listReturns(ctx context.Context, p auth.Principal, req *fulfillmentv1.ListReturnsRequest) (*fulfillmentv1.ListReturnsResponse, error) {
	out, next, err := recordPage(ctx, k, req.GetPageSize(), req.GetPageToken(), []string{"returns", req.GetOrderId()},
		func(tx txn, afterID string, fn func(*returnRec) bool) error {
			return tx.scanReturns(req.GetOrderId(), afterID, fn)
		},
		func(r *returnRec) string { return r.ID },
		func(r *returnRec) bool { return p.SeesRegion(r.Region) },
		returnProto)
	if err != nil {
		return nil, err
	}
	return &fulfillmentv1.ListReturnsResponse{Returns: out, NextPageToken: next}, nil
}
