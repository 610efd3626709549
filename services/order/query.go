package order

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	"github.com/millrace/millrace/internal/auth"
)

// Reads. Every list is served by an index whose keys end with the creation
// time, so it pages in creation order and a created range is a range of the
// index. Only the region scope of a key is applied to records, with a
// bounded number examined per page.

func (k *core) getOrder(ctx context.Context, p auth.Principal, id string) (*orderv1.Order, error) {
	var out *orderv1.Order
	err := k.repo.view(ctx, func(tx txn) error {
		rec, err := tx.order(id)
		if err != nil {
			return err
		}
		if rec == nil || !seesOrder(p, rec.o) {
			return &notFoundError{Kind: "order", ID: id}
		}
		out = rec.o
		return nil
	})
	return out, err
}

func (k *core) orderTimeline(ctx context.Context, p auth.Principal, id string) ([]*orderv1.TimelineEntry, error) {
	var out []*orderv1.TimelineEntry
	err := k.repo.view(ctx, func(tx txn) error {
		rec, err := tx.order(id)
		if err != nil {
			return err
		}
		if rec == nil || !seesOrder(p, rec.o) {
			return &notFoundError{Kind: "order", ID: id}
		}
		out, err = tx.timeline(id)
		return err
	})
	return out, err
}

// pageToken is the opaque position of a list page: the last index entry
// the previous page examined and a hash of the filters it was made for.
type pageToken struct {
	Pos    position `json:"a"`
	Filter string   `json:"f"`
}

func filterHash(parts ...any) string {
	h := fnv.New64a()
	for _, p := range parts {
		fmt.Fprintf(h, "%v|", p)
	}
	return strconv.FormatUint(h.Sum64(), 36)
}

func encodePageToken(pos position, filter string) string {
	b, _ := json.Marshal(pageToken{Pos: pos, Filter: filter})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePageToken(s, filter, method string) (*position, error) {
	if s == "" {
		return nil, nil
	}
	var t pageToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &t)
	}
	if err != nil || t.Pos.PK == "" || len(t.Pos.Key) == 0 {
		return nil, invalid("page_token", "not a page token from a previous %s response", method)
	}
	if t.Filter != filter {
		return nil, invalid("page_token", "the page token was issued for different filters; repeat the filters of the first page")
	}
	return &t.Pos, nil
}

func pageSize(n int32) (int, error) {
	switch {
	case n < 0 || n > MaxPageSize:
		return 0, invalid("page_size", "must be between 0 and %d", MaxPageSize)
	case n == 0:
		return DefaultPageSize, nil
	}
	return int(n), nil
}

// statusKey is how an order status is written in index keys: "on_hold".
func statusKey(s orderv1.OrderStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "ORDER_STATUS_"))
}

func quoteStatusKey(s orderv1.QuoteStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "QUOTE_STATUS_"))
}

// pager collects one page from an index scan.
type pager struct {
	size, budget int
	scanned      int
	n            int
	last         position
	more         bool
}

// visit handles one scanned entry; it reports whether the scan goes on.
// take is called for an entry that matches the filters and fits the page.
func (pg *pager) visit(matches bool, pos position, take func()) bool {
	pg.scanned++
	if matches {
		if pg.n == pg.size {
			pg.more = true
			return false
		}
		take()
		pg.n++
		pg.last = pos
	} else if pg.n < pg.size {
		pg.last = pos
	}
	if pg.scanned >= pg.budget {
		pg.more = true
		return false
	}
	return true
}

func (k *core) listOrders(ctx context.Context, p auth.Principal, req *orderv1.ListOrdersRequest) (*orderv1.ListOrdersResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	if _, known := orderv1.OrderStatus_name[int32(req.GetStatus())]; !known {
		return nil, invalid("status", "unknown status %d", req.GetStatus())
	}
	sys, refID := req.GetExternalRefSystem(), req.GetExternalRefId()
	if (sys == "") != (refID == "") {
		field := "external_ref_id"
		if sys == "" {
			field = "external_ref_system"
		}
		return nil, invalid(field, "external_ref_system and external_ref_id filter together; set both or neither")
	}
	var from, before time.Time
	if t := req.GetCreatedAfter(); t != nil {
		if !t.IsValid() {
			return nil, invalid("created_after", "is not a valid time")
		}
		from = t.AsTime()
	}
	if t := req.GetCreatedBefore(); t != nil {
		if !t.IsValid() {
			return nil, invalid("created_before", "is not a valid time")
		}
		before = t.AsTime()
	}
	if !from.IsZero() && !before.IsZero() && !before.After(from) {
		return nil, invalid("created_before", "must be after created_after")
	}
	status, hold := req.GetStatus(), req.GetHoldReason()
	if _, known := orderv1.HoldReason_name[int32(hold)]; !known {
		return nil, invalid("hold_reason", "unknown hold reason %d", hold)
	}
	if hold != orderv1.HoldReason_HOLD_REASON_UNSPECIFIED {
		switch status {
		case orderv1.OrderStatus_ORDER_STATUS_UNSPECIFIED:
			status = statusOnHold // a hold reason lists held orders
		case statusOnHold:
		default:
			return nil, invalid("hold_reason", "filters orders ON_HOLD, and status asks for %s; leave status out or set it to ORDER_STATUS_ON_HOLD", statusName(status))
		}
	}
	parts := []any{"orders", req.GetCustomerId(), status, sys, refID, from.UnixNano(), before.UnixNano()}
	if hold != orderv1.HoldReason_HOLD_REASON_UNSPECIFIED {
		parts = append(parts, hold) // page tokens without it stay valid
	}
	filter := filterHash(parts...)
	after, err := decodePageToken(req.GetPageToken(), filter, "ListOrders")
	if err != nil {
		return nil, err
	}
	matches := func(o *orderv1.Order) bool {
		ct := o.GetCreateTime().AsTime()
		return seesOrder(p, o) &&
			(req.GetCustomerId() == "" || o.GetCustomerId() == req.GetCustomerId()) &&
			(status == orderv1.OrderStatus_ORDER_STATUS_UNSPECIFIED || o.GetStatus() == status) &&
			(hold == orderv1.HoldReason_HOLD_REASON_UNSPECIFIED || o.GetHoldReason() == hold) &&
			(from.IsZero() || !ct.Before(from)) && (before.IsZero() || ct.Before(before))
	}

	resp := &orderv1.ListOrdersResponse{}
	err = k.repo.view(ctx, func(tx txn) error {
		resp.Orders, resp.NextPageToken = nil, ""
		if sys != "" {
			// One order at most: no paging.
			if after != nil {
				return nil
			}
			id, err := tx.orderByRef(sys, refID)
			if err != nil || id == "" {
				return err
			}
			rec, err := tx.order(id)
			if err != nil {
				return err
			}
			if rec != nil && matches(rec.o) {
				resp.Orders = append(resp.Orders, rec.o)
			}
			return nil
		}
		q := scanQuery{kind: listByCreated, from: from, before: before, after: after}
		switch customer := req.GetCustomerId(); {
		case customer != "" && status != orderv1.OrderStatus_ORDER_STATUS_UNSPECIFIED:
			q.kind, q.parts = listByCustomerStatus, []string{customer, statusKey(status)}
		case customer != "":
			q.kind, q.parts = listByCustomer, []string{customer}
		case status != orderv1.OrderStatus_ORDER_STATUS_UNSPECIFIED:
			q.kind, q.parts = listByStatus, []string{statusKey(status)}
		}
		pg := &pager{size: size, budget: max(minListScan, 10*size)}
		if err := tx.scanOrders(q, func(rec *orderRecord, pos position) bool {
			return pg.visit(matches(rec.o), pos, func() { resp.Orders = append(resp.Orders, rec.o) })
		}); err != nil {
			return err
		}
		if pg.more {
			resp.NextPageToken = encodePageToken(pg.last, filter)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (k *core) listQuotes(ctx context.Context, p auth.Principal, req *orderv1.ListQuotesRequest) (*orderv1.ListQuotesResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	if _, known := orderv1.QuoteStatus_name[int32(req.GetStatus())]; !known {
		return nil, invalid("status", "unknown status %d", req.GetStatus())
	}
	filter := filterHash("quotes", req.GetCustomerId(), req.GetStatus())
	after, err := decodePageToken(req.GetPageToken(), filter, "ListQuotes")
	if err != nil {
		return nil, err
	}
	status := req.GetStatus()
	matches := func(q *orderv1.Quote) bool {
		return seesQuote(p, q) &&
			(req.GetCustomerId() == "" || q.GetCustomerId() == req.GetCustomerId()) &&
			(status == orderv1.QuoteStatus_QUOTE_STATUS_UNSPECIFIED || q.GetStatus() == status)
	}
	resp := &orderv1.ListQuotesResponse{}
	err = k.repo.view(ctx, func(tx txn) error {
		resp.Quotes, resp.NextPageToken = nil, ""
		q := scanQuery{kind: listByCreated, after: after}
		switch customer := req.GetCustomerId(); {
		case customer != "" && status != orderv1.QuoteStatus_QUOTE_STATUS_UNSPECIFIED:
			q.kind, q.parts = listByCustomerStatus, []string{customer, quoteStatusKey(status)}
		case customer != "":
			q.kind, q.parts = listByCustomer, []string{customer}
		case status != orderv1.QuoteStatus_QUOTE_STATUS_UNSPECIFIED:
			q.kind, q.parts = listByStatus, []string{quoteStatusKey(status)}
		}
		pg := &pager{size: size, budget: max(minListScan, 10*size)}
		if err := tx.scanQuotes(q, func(rec *quoteRecord, pos position) bool {
			return pg.visit(matches(rec.q), pos, func() { resp.Quotes = append(resp.Quotes, rec.q) })
		}); err != nil {
			return err
		}
		if pg.more {
			resp.NextPageToken = encodePageToken(pg.last, filter)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}
