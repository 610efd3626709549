// Package customer is the customer service: the system of record for
// customer accounts, their hierarchy, their references in CRMs and ERPs,
// credit limits, payment terms and credit exposure.
//
// The package has three layers. customer.go and credit.go hold the domain
// rules and know nothing of gRPC or bbolt: they run against the small
// repository and txn interfaces declared here. store.go implements those
// on a storage.DB, one bbolt transaction per operation, with the secondary
// indexes and the outgoing events written in the same transaction as the
// record. server.go implements customerv1.CustomerServiceServer and maps
// domain errors to API errors in one function.
//
// Rules a reader of the contract may want to find quickly:
//   - A hierarchy is at most MaxDepth levels deep and never has a cycle; an
//     account and its parent share a region, so a region-scoped key always
//     sees a whole hierarchy or none of it.
//   - credit_limit, payment_terms and credit_blocked are owned by the ERP
//     side: only erp, admin and service principals may change them.
//   - The effective credit limit of an account is the nearest one up the
//     hierarchy, the account's own first; exposure is kept on the account
//     that carries it and shared by every account under it. An account with
//     no limit anywhere above it is declined with NO_CREDIT_LIMIT: for a
//     manufacturer, credit nobody granted is no credit.
package customer

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/ids"
	"github.com/millrace/millrace/internal/money"
	"github.com/millrace/millrace/internal/reqctx"
)

// Bounds of the customer service.
const (
	// MaxDepth is the deepest an account hierarchy may be, counting the
	// root as level 1. Credit resolution and hierarchy reads walk it, so it
	// bounds their cost.
	MaxDepth = 10
	// MaxBatchItems is the largest BatchUpsertCustomers request.
	MaxBatchItems = 1000
	// MaxExternalRefs is how many external references one account carries.
	MaxExternalRefs = 10
	// DefaultPageSize and MaxPageSize bound ListCustomers pages.
	DefaultPageSize = 50
	MaxPageSize     = 500
	// MaxHierarchyChildren bounds the children of one GetCustomerHierarchy
	// answer, and is its default; next_children_page_token pages on.
	MaxHierarchyChildren = 1000
	// minListScan is the least number of index entries one list page may
	// examine before it returns a shorter page with a next_page_token.
	// Filters that no index covers alone (parent and status, say) are
	// applied to records, and this keeps such a page's cost bounded.
	minListScan = 1000
)

// Stable reasons the customer service adds to the shared ones in apierr:
// credit decisions carry the Decline* reasons, errors the others.
const (
	DeclineCreditLimitExceeded = "CREDIT_LIMIT_EXCEEDED"
	DeclineCreditBlocked       = "CREDIT_BLOCKED"
	DeclineNoCreditLimit       = "NO_CREDIT_LIMIT"
	DeclineCustomerBlocked     = "CUSTOMER_BLOCKED"

	ReasonExternalRefTaken    = "EXTERNAL_REF_TAKEN"
	ReasonRegionOutOfScope    = "REGION_OUT_OF_SCOPE"
	ReasonReservationMismatch = "RESERVATION_MISMATCH"
	ReasonReservationsOpen    = "CREDIT_RESERVATIONS_OPEN"
)

// erpOwner is the role that owns credit_limit, payment_terms and
// credit_blocked.
const erpOwner = "erp"

// Fields of Customer by role in writes. Paths are proto field names, as
// update masks and changed_fields name them.
var (
	writableFields = []string{
		"display_name", "legal_name", "parent_id", "region", "tier",
		"billing_address", "shipping_address", "email", "phone",
		"external_refs", "currency_code", "credit_limit", "payment_terms", "credit_blocked",
	}
	erpOwnedFields   = []string{"credit_limit", "payment_terms", "credit_blocked"}
	outputOnlyFields = []string{"id", "status", "etag", "create_time", "update_time"}
	customerFields   = (&customerv1.Customer{}).ProtoReflect().Descriptor().Fields()
)

// ---------------------------------------------------------------------------
// Domain errors. server.go maps each to its API error in one place.

// fieldViolation names one invalid field by its full path in the request.
type fieldViolation struct {
	Field       string
	Description string
}

// invalidError reports invalid input, one violation per field.
type invalidError struct{ Violations []fieldViolation }

func (e *invalidError) Error() string {
	return fmt.Sprintf("invalid %s: %s", e.Violations[0].Field, e.Violations[0].Description)
}

func invalid(field, format string, args ...any) error {
	return &invalidError{Violations: []fieldViolation{{Field: field, Description: fmt.Sprintf(format, args...)}}}
}

// notFoundError reports an account that does not exist or that the caller
// may not see; the two are indistinguishable on purpose.
type notFoundError struct{ ID string }

func (e *notFoundError) Error() string { return fmt.Sprintf("customer %q not found", e.ID) }

// staleEtagError reports an update based on an outdated version.
type staleEtagError struct{ ID string }

func (e *staleEtagError) Error() string { return fmt.Sprintf("customer %q: stale etag", e.ID) }

// refTakenError reports an external reference held by another account.
// Holder is empty when the caller may not see the holder.
type refTakenError struct {
	Field, System, RefID, Holder string
}

func (e *refTakenError) Error() string {
	if e.Holder == "" {
		return fmt.Sprintf("external ref %s/%s already belongs to another customer", e.System, e.RefID)
	}
	return fmt.Sprintf("external ref %s/%s already belongs to customer %s", e.System, e.RefID, e.Holder)
}

// fieldOwnedError reports a write to a field another role owns.
type fieldOwnedError struct{ Field, Owner string }

func (e *fieldOwnedError) Error() string {
	return fmt.Sprintf("field %s is owned by the %s role", e.Field, e.Owner)
}

// regionError reports a write into a region outside the caller's scope.
type regionError struct{ Field, Region, Scope string }

func (e *regionError) Error() string {
	return fmt.Sprintf("this key is scoped to region %q and cannot write customers of region %q", e.Scope, e.Region)
}

// preconditionError reports an operation the stored state does not allow.
type preconditionError struct{ Reason, Field, Message string }

func (e *preconditionError) Error() string { return e.Message }

// isDomainError reports whether err is a refusal by the domain rules, as
// opposed to a storage fault. A batch item failing with a domain error
// leaves the other items alone; a fault aborts the shared transaction.
func isDomainError(err error) bool {
	var (
		inv   *invalidError
		nf    *notFoundError
		stale *staleEtagError
		taken *refTakenError
		owned *fieldOwnedError
		reg   *regionError
		pre   *preconditionError
	)
	return errors.As(err, &inv) || errors.As(err, &nf) || errors.As(err, &stale) || errors.As(err, &taken) ||
		errors.As(err, &owned) || errors.As(err, &reg) || errors.As(err, &pre)
}

// ---------------------------------------------------------------------------
// The ports the domain runs on; store.go implements them.

// listIndex names the index a list pages through.
type listIndex int

const (
	listAll listIndex = iota
	listByParent
	listByRegion
	listByStatus
	listByRegionStatus
)

// txn is one store transaction as the domain sees it. Reads see the
// transaction's own writes.
type txn interface {
	// customer returns the stored account, or nil when there is none.
	customer(id string) (*customerv1.Customer, error)
	// attach records on the request's idempotency claim, when it has one,
	// that it created the account id (see idempotency.Attach).
	attach(id string) error
	// refHolder returns the id of the account holding an external
	// reference, or "" when none does.
	refHolder(system, refID string) (string, error)
	// childIDs calls fn with the ids of the direct children of parentID in
	// creation order until fn returns false.
	childIDs(parentID, afterID string, fn func(id string) bool) error
	// scan calls fn with accounts of one index key (key, as the index
	// defines it; nil for listAll) in creation order, starting after
	// afterID, until fn returns false.
	scan(ix listIndex, key []string, afterID string, fn func(*customerv1.Customer) bool) error
	// putCustomer writes c and moves its index entries from old, which is
	// nil for a new account.
	putCustomer(old, c *customerv1.Customer) error
	// emit appends an event about c to the outbox.
	emit(c *customerv1.Customer, event proto.Message) error

	// exposure returns the exposure carried by a credit account, nil when
	// it has none.
	exposure(accountID string) (*typev1.Money, error)
	// setExposure stores an account's exposure; nil removes it.
	setExposure(accountID string, m *typev1.Money) error
	// reservation returns the reservation of an order, or nil.
	reservation(orderID string) (*reservation, error)
	// putReservation writes a reservation, new or changed.
	putReservation(r *reservation) error
	// deleteReservation removes a reservation.
	deleteReservation(r *reservation) error
	// reservationsOf calls fn with the reservations of one customer until
	// fn returns false.
	reservationsOf(customerID string, fn func(*reservation) bool) error
}

// repository runs transactions. update may run fn more than once (group
// commit retries the others when one function of a shared commit fails),
// so fn must reset whatever it reports at its start.
type repository interface {
	view(ctx context.Context, fn func(txn) error) error
	update(ctx context.Context, fn func(txn) error) error
	// updateBulk runs fn once, in a transaction of its own, for a large
	// write such as a batch upsert.
	updateBulk(ctx context.Context, fn func(txn) error) error
}

// core applies the customer rules on top of a repository.
type core struct {
	repo repository
	now  func() time.Time
}

// ---------------------------------------------------------------------------
// Reads.

func (k *core) get(ctx context.Context, p auth.Principal, id string) (*customerv1.Customer, error) {
	var out *customerv1.Customer
	err := k.repo.view(ctx, func(tx txn) error {
		c, err := visibleCustomer(tx, p, id)
		out = c
		return err
	})
	return out, err
}

// visibleCustomer loads an account the principal may see; any other is
// not found, so its existence does not leak across regions.
func visibleCustomer(tx txn, p auth.Principal, id string) (*customerv1.Customer, error) {
	c, err := tx.customer(id)
	if err != nil {
		return nil, err
	}
	if c == nil || !p.SeesRegion(c.GetRegion()) {
		return nil, &notFoundError{ID: id}
	}
	return c, nil
}

// pageToken is the opaque position of a list page: the last account the
// previous page examined and a hash of the filters it was made for.
type pageToken struct {
	After  string `json:"a"`
	Filter string `json:"f"`
}

func listFilterHash(req *customerv1.ListCustomersRequest) string {
	h := fnv.New64a()
	fmt.Fprintf(h, "%q|%q|%d|%q|%q", req.GetParentId(), req.GetRegion(), req.GetStatus(), req.GetExternalRefSystem(), req.GetExternalRefId())
	return strconv.FormatUint(h.Sum64(), 36)
}

func encodePageToken(t pageToken) string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePageToken(s string, filter string) (string, error) {
	if s == "" {
		return "", nil
	}
	var t pageToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &t)
	}
	if err != nil || t.After == "" {
		return "", invalid("page_token", "not a page token from a previous ListCustomers response")
	}
	if t.Filter != filter {
		return "", invalid("page_token", "the page token was issued for different filters; repeat the filters of the first page")
	}
	return t.After, nil
}

// statusKey is how a status is written in index keys.
func statusKey(s customerv1.CustomerStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "CUSTOMER_STATUS_"))
}

// list pages through accounts in creation order. Every filter is served by
// an index: the external ref by its unique index, the parent, region and
// status by theirs (region and status together by a composite one). What
// an index does not cover (a parent together with a status) is applied to
// the records the index yields, with a bounded number examined per page.
func (k *core) list(ctx context.Context, p auth.Principal, req *customerv1.ListCustomersRequest) (*customerv1.ListCustomersResponse, error) {
	pageSize := int(req.GetPageSize())
	switch {
	case pageSize < 0 || pageSize > MaxPageSize:
		return nil, invalid("page_size", "must be between 0 and %d", MaxPageSize)
	case pageSize == 0:
		pageSize = DefaultPageSize
	}
	if _, known := customerv1.CustomerStatus_name[int32(req.GetStatus())]; !known {
		return nil, invalid("status", "unknown status %d", req.GetStatus())
	}
	if (req.GetExternalRefSystem() == "") != (req.GetExternalRefId() == "") {
		field := "external_ref_id"
		if req.GetExternalRefSystem() == "" {
			field = "external_ref_system"
		}
		return nil, invalid(field, "external_ref_system and external_ref_id filter together; set both or neither")
	}
	filter := listFilterHash(req)
	after, err := decodePageToken(req.GetPageToken(), filter)
	if err != nil {
		return nil, err
	}

	region := req.GetRegion()
	if p.Region != "" {
		if region != "" && region != p.Region {
			// Another region's accounts are invisible to this key: the
			// honest answer is an empty list, not an error that confirms
			// they exist.
			return &customerv1.ListCustomersResponse{}, nil
		}
		region = p.Region
	}
	status := req.GetStatus()
	matches := func(c *customerv1.Customer) bool {
		return (req.GetParentId() == "" || c.GetParentId() == req.GetParentId()) &&
			(region == "" || c.GetRegion() == region) &&
			(status == customerv1.CustomerStatus_CUSTOMER_STATUS_UNSPECIFIED || c.GetStatus() == status)
	}

	resp := &customerv1.ListCustomersResponse{}
	err = k.repo.view(ctx, func(tx txn) error {
		resp.Customers, resp.NextPageToken = nil, ""
		if req.GetExternalRefSystem() != "" {
			// One account at most: no paging.
			if after != "" {
				return nil
			}
			id, err := tx.refHolder(req.GetExternalRefSystem(), req.GetExternalRefId())
			if err != nil || id == "" {
				return err
			}
			c, err := tx.customer(id)
			if err != nil {
				return err
			}
			if c != nil && matches(c) {
				resp.Customers = append(resp.Customers, c)
			}
			return nil
		}
		ix, key := listAll, []string(nil)
		switch {
		case req.GetParentId() != "":
			ix, key = listByParent, []string{req.GetParentId()}
		case region != "" && status != customerv1.CustomerStatus_CUSTOMER_STATUS_UNSPECIFIED:
			ix, key = listByRegionStatus, []string{region, statusKey(status)}
		case region != "":
			ix, key = listByRegion, []string{region}
		case status != customerv1.CustomerStatus_CUSTOMER_STATUS_UNSPECIFIED:
			ix, key = listByStatus, []string{statusKey(status)}
		}
		budget := max(minListScan, 10*pageSize)
		var (
			scanned int
			last    string
			more    bool
		)
		err := tx.scan(ix, key, after, func(c *customerv1.Customer) bool {
			scanned++
			if matches(c) {
				if len(resp.Customers) == pageSize {
					more = true
					return false
				}
				resp.Customers = append(resp.Customers, c)
				last = c.GetId()
			} else if len(resp.Customers) < pageSize {
				last = c.GetId()
			}
			if scanned >= budget {
				more = true
				return false
			}
			return true
		})
		if err != nil {
			return err
		}
		if more {
			resp.NextPageToken = encodePageToken(pageToken{After: last, Filter: filter})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// hierarchy returns the root, the path from the root to id, and id's direct
// children. Because an account shares its parent's region, a caller who
// sees the account sees its whole hierarchy.
func (k *core) hierarchy(ctx context.Context, p auth.Principal, req *customerv1.GetCustomerHierarchyRequest) (*customerv1.GetCustomerHierarchyResponse, error) {
	id := req.GetId()
	pageSize := int(req.GetChildrenPageSize())
	switch {
	case pageSize < 0 || pageSize > MaxHierarchyChildren:
		return nil, invalid("children_page_size", "must be between 0 and %d", MaxHierarchyChildren)
	case pageSize == 0:
		pageSize = MaxHierarchyChildren
	}
	filter := hierarchyFilterHash(id)
	after, err := decodePageToken(req.GetChildrenPageToken(), filter)
	if err != nil {
		var inv *invalidError
		if errors.As(err, &inv) {
			return nil, invalid("children_page_token", "not a next_children_page_token of a previous GetCustomerHierarchy answer for this account")
		}
		return nil, err
	}
	var out *customerv1.GetCustomerHierarchyResponse
	err = k.repo.view(ctx, func(tx txn) error {
		out = nil
		c, err := visibleCustomer(tx, p, id)
		if err != nil {
			return err
		}
		up, err := ancestors(tx, c)
		if err != nil {
			return err
		}
		resp := &customerv1.GetCustomerHierarchyResponse{}
		for i := len(up) - 1; i >= 0; i-- {
			resp.Path = append(resp.Path, summary(up[i]))
		}
		resp.Path = append(resp.Path, summary(c))
		resp.Root = resp.Path[0]
		// Children the key may not see are skipped, with a bounded number
		// examined per answer; a page cut short by that bound still names
		// where to go on.
		var (
			childErr error
			last     string
			examined int
			more     bool
		)
		err = tx.childIDs(c.GetId(), after, func(cid string) bool {
			if len(resp.Children) == pageSize || examined == max(minListScan, 10*pageSize) {
				more = true
				return false
			}
			examined++
			last = cid
			child, err := tx.customer(cid)
			if err != nil {
				childErr = err
				return false
			}
			if child != nil && p.SeesRegion(child.GetRegion()) {
				resp.Children = append(resp.Children, summary(child))
			}
			return true
		})
		if err = errors.Join(err, childErr); err != nil {
			return err
		}
		if more {
			resp.NextChildrenPageToken = encodePageToken(pageToken{After: last, Filter: filter})
		}
		out = resp
		return nil
	})
	return out, err
}

// hierarchyFilterHash ties a children page token to its account.
func hierarchyFilterHash(id string) string {
	h := fnv.New64a()
	fmt.Fprintf(h, "hierarchy|%q", id)
	return strconv.FormatUint(h.Sum64(), 36)
}

func summary(c *customerv1.Customer) *customerv1.CustomerSummary {
	return &customerv1.CustomerSummary{
		Id:             c.GetId(),
		DisplayName:    c.GetDisplayName(),
		Region:         c.GetRegion(),
		HasCreditLimit: c.GetCreditLimit() != nil,
	}
}

// ancestors returns c's parent, grandparent and so on up to the root. The
// walk stops after MaxDepth+1 accounts, or at c itself should a cycle ever
// be stored, so it is bounded whatever the data.
func ancestors(tx txn, c *customerv1.Customer) ([]*customerv1.Customer, error) {
	var out []*customerv1.Customer
	for id := c.GetParentId(); id != "" && len(out) <= MaxDepth; {
		a, err := tx.customer(id)
		if err != nil {
			return nil, err
		}
		if a == nil {
			return out, nil
		}
		out = append(out, a)
		if a.GetId() == c.GetId() {
			return out, nil
		}
		id = a.GetParentId()
	}
	return out, nil
}

// ---------------------------------------------------------------------------
// Writes.

// create stores a new account; output-only fields in the request are
// ignored.
func (k *core) create(ctx context.Context, p auth.Principal, in *customerv1.Customer) (*customerv1.Customer, error) {
	if in == nil {
		return nil, invalid("customer", "is required")
	}
	c := writableCopy(in)
	if err := validateCustomer("customer", c); err != nil {
		return nil, err
	}
	normalize(c)
	if err := checkRegionScope(p, "customer.region", c.GetRegion()); err != nil {
		return nil, err
	}
	if err := checkOwnership(p, "customer", nil, c); err != nil {
		return nil, err
	}
	// A retry of a keyed create whose answer was lost in a crash gets the
	// account the first attempt stored.
	if id := reqctx.CreatedBefore(ctx); id != "" {
		var prev *customerv1.Customer
		if err := k.repo.view(ctx, func(tx txn) error {
			var err error
			prev, err = tx.customer(id)
			return err
		}); err != nil {
			return nil, err
		}
		if prev != nil && p.SeesRegion(prev.GetRegion()) {
			return prev, nil
		}
	}
	var out *customerv1.Customer
	err := k.repo.update(ctx, func(tx txn) error {
		out = nil
		created, err := k.insert(ctx, tx, p, "customer", c)
		if err == nil {
			err = tx.attach(created.GetId())
		}
		out = created
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// insert stores a validated, normalized account as a new one. Like every
// write here it checks everything first and writes last, so a refusal
// leaves the transaction untouched and a batch can go on with its next item.
func (k *core) insert(ctx context.Context, tx txn, p auth.Principal, path string, in *customerv1.Customer) (*customerv1.Customer, error) {
	c := proto.Clone(in).(*customerv1.Customer)
	now := timestamppb.New(k.now())
	c.Id = ids.New("cus")
	c.Status = customerv1.CustomerStatus_CUSTOMER_STATUS_ACTIVE
	c.Etag = "1"
	c.CreateTime, c.UpdateTime = now, now
	pl, err := k.prepare(tx, p, path, nil, c)
	if err != nil {
		return nil, err
	}
	pl.events = append(pl.events, &eventsv1.CustomerCreated{Customer: c})
	if c.GetCreditLimit() != nil {
		pl.events = append(pl.events, &eventsv1.CreditLimitChanged{CustomerId: c.GetId(), NewLimit: c.GetCreditLimit()})
	}
	if err := pl.apply(tx); err != nil {
		return nil, err
	}
	return c, nil
}

// update changes the fields the mask names. A caller that sends an etag
// updates only the version it read (a stale one is refused); one that sends
// none updates whatever is stored, as AIP-154 allows. Every field the mask
// does not name keeps its stored value.
func (k *core) update(ctx context.Context, p auth.Principal, in *customerv1.Customer, mask []string) (*customerv1.Customer, error) {
	if in == nil {
		return nil, invalid("customer", "is required")
	}
	if in.GetId() == "" {
		return nil, invalid("customer.id", "is required")
	}
	paths, err := maskPaths(mask)
	if err != nil {
		return nil, err
	}
	src := writableCopy(in)
	var out *customerv1.Customer
	err = k.repo.update(ctx, func(tx txn) error {
		out = nil
		old, err := visibleCustomer(tx, p, in.GetId())
		if err != nil {
			return err
		}
		if in.GetEtag() != "" && in.GetEtag() != old.GetEtag() {
			return &staleEtagError{ID: old.GetId()}
		}
		next := proto.Clone(old).(*customerv1.Customer)
		for _, f := range paths {
			copyField(next, src, f)
		}
		if err := validateCustomer("customer", next); err != nil {
			return err
		}
		normalize(next)
		updated, err := k.change(ctx, tx, p, "customer", old, next)
		out = updated
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// change writes next over old after the checks every update shares:
// region scope, field ownership, the hierarchy and credit rules. When
// nothing changed it writes nothing and returns old.
func (k *core) change(ctx context.Context, tx txn, p auth.Principal, path string, old, next *customerv1.Customer) (*customerv1.Customer, error) {
	if next.GetRegion() != old.GetRegion() {
		if err := checkRegionScope(p, path+".region", next.GetRegion()); err != nil {
			return nil, err
		}
	}
	if err := checkOwnership(p, path, old, next); err != nil {
		return nil, err
	}
	changed := changedFields(old, next)
	if len(changed) == 0 {
		return old, nil
	}
	k.bump(old, next)
	pl, err := k.prepare(tx, p, path, old, next)
	if err != nil {
		return nil, err
	}
	pl.events = append(pl.events, &eventsv1.CustomerUpdated{Customer: next, ChangedFields: changed})
	if slices.Contains(changed, "credit_limit") {
		pl.events = append(pl.events, &eventsv1.CreditLimitChanged{CustomerId: next.GetId(), OldLimit: old.GetCreditLimit(), NewLimit: next.GetCreditLimit()})
	}
	if err := pl.apply(tx); err != nil {
		return nil, err
	}
	return next, nil
}

// bump gives next the version after old's and stamps the change time.
func (k *core) bump(old, next *customerv1.Customer) {
	v, _ := strconv.ParseUint(old.GetEtag(), 10, 64)
	next.Etag = strconv.FormatUint(v+1, 10)
	next.UpdateTime = timestamppb.New(k.now())
}

func (k *core) setStatus(ctx context.Context, p auth.Principal, id string, status customerv1.CustomerStatus, reason string) (*customerv1.Customer, error) {
	var out *customerv1.Customer
	err := k.repo.update(ctx, func(tx txn) error {
		out = nil
		old, err := visibleCustomer(tx, p, id)
		if err != nil {
			return err
		}
		if old.GetStatus() == status {
			out = old
			return nil
		}
		next := proto.Clone(old).(*customerv1.Customer)
		next.Status, next.StatusReason = status, reason
		k.bump(old, next)
		if err := tx.putCustomer(old, next); err != nil {
			return err
		}
		changed := []string{"status"}
		if next.GetStatusReason() != old.GetStatusReason() {
			changed = append(changed, "status_reason")
		}
		if err := tx.emit(next, &eventsv1.CustomerUpdated{Customer: next, ChangedFields: changed}); err != nil {
			return err
		}
		out = next
		return nil
	})
	if err != nil {
		return nil, err
	}
	slog.InfoContext(ctx, "customer status changed", "customer_id", id, "status", statusKey(status), "reason", reason, "key_id", p.KeyID)
	return out, nil
}

// upsertInput is one validated upsert request: the reference and the
// account's values, normalized, with the reference among its refs.
type upsertInput struct {
	prefix string // "" or "items[3]." — where the request sits in the call
	ref    *typev1.ExternalRef
	c      *customerv1.Customer
	// parentRef names the parent by reference; upsertTx resolves it.
	parentRef *typev1.ExternalRef
}

// upsertResult is the outcome of one upsert.
type upsertResult struct {
	customer *customerv1.Customer
	result   customerv1.UpsertResult
	err      error
}

// prepareUpsert checks everything about an upsert request that needs no
// stored state.
func prepareUpsert(prefix string, req *customerv1.UpsertCustomerByExternalRefRequest) (*upsertInput, error) {
	ch := &checker{}
	ref := req.GetExternalRef()
	if ref == nil {
		ch.add(prefix+"external_ref", "is required")
	} else {
		checkRef(ch, prefix+"external_ref", ref)
	}
	if req.GetCustomer() == nil {
		ch.add(prefix+"customer", "is required")
		return nil, ch.err()
	}
	c := writableCopy(req.GetCustomer())
	checkCustomer(ch, prefix+"customer", c)
	if pr := req.GetParentExternalRef(); pr != nil {
		checkRef(ch, prefix+"parent_external_ref", pr)
		if c.GetParentId() != "" {
			ch.add(prefix+"parent_external_ref", "set either customer.parent_id or parent_external_ref, not both")
		}
		if ref != nil && pr.GetSystem() == ref.GetSystem() && pr.GetId() == ref.GetId() {
			ch.add(prefix+"parent_external_ref", "names the account itself; an account cannot be its own parent")
		}
	}
	if err := ch.err(); err != nil {
		return nil, err
	}
	found := false
	for i, r := range c.GetExternalRefs() {
		if r.GetSystem() != ref.GetSystem() {
			continue
		}
		if r.GetId() != ref.GetId() {
			return nil, invalid(fmt.Sprintf("%scustomer.external_refs[%d].id", prefix, i),
				"holds %s id %q but external_ref names %q; an account has one reference per system", r.GetSystem(), r.GetId(), ref.GetId())
		}
		found = true
	}
	if !found {
		if len(c.GetExternalRefs()) >= MaxExternalRefs {
			return nil, invalid(prefix+"customer.external_refs", "at most %d references, including external_ref", MaxExternalRefs)
		}
		c.ExternalRefs = append(c.ExternalRefs, proto.Clone(ref).(*typev1.ExternalRef))
	}
	normalize(c)
	in := &upsertInput{prefix: prefix, ref: ref, c: c}
	if pr := req.GetParentExternalRef(); pr != nil {
		in.parentRef = proto.Clone(pr).(*typev1.ExternalRef)
	}
	return in, nil
}

func (k *core) upsert(ctx context.Context, p auth.Principal, req *customerv1.UpsertCustomerByExternalRefRequest) upsertResult {
	in, err := prepareUpsert("", req)
	if err != nil {
		return upsertResult{err: err}
	}
	return k.upsertOne(ctx, p, in)
}

func (k *core) upsertOne(ctx context.Context, p auth.Principal, in *upsertInput) upsertResult {
	var out upsertResult
	err := k.repo.update(ctx, func(tx txn) error {
		out = upsertResult{}
		r, err := k.upsertTx(ctx, tx, p, in)
		out = r
		return err
	})
	if err != nil {
		return upsertResult{err: err}
	}
	return out
}

// upsertTx creates the account holding in.ref or replaces its writable
// fields. External refs merge by system, so one system's upsert never drops
// another system's reference; ERP-owned fields a non-owner leaves unset
// keep their stored values.
func (k *core) upsertTx(ctx context.Context, tx txn, p auth.Principal, in *upsertInput) (upsertResult, error) {
	path := in.prefix + "customer"
	if in.parentRef != nil {
		// Resolve the parent on a copy: a batch may run this item again.
		parent, err := tx.refHolder(in.parentRef.GetSystem(), in.parentRef.GetId())
		if err != nil {
			return upsertResult{}, err
		}
		if parent != "" {
			pc, err := tx.customer(parent)
			if err != nil {
				return upsertResult{}, err
			}
			if pc == nil || !p.SeesRegion(pc.GetRegion()) {
				parent = ""
			}
		}
		if parent == "" {
			return upsertResult{}, invalid(in.prefix+"parent_external_ref", "no account holds %s reference %q; upsert the parent first (in a batch, an earlier item counts)",
				in.parentRef.GetSystem(), in.parentRef.GetId())
		}
		resolved := *in
		resolved.c = proto.Clone(in.c).(*customerv1.Customer)
		resolved.c.ParentId = parent
		resolved.parentRef = nil
		in = &resolved
	}
	holder, err := tx.refHolder(in.ref.GetSystem(), in.ref.GetId())
	if err != nil {
		return upsertResult{}, err
	}
	if holder == "" {
		if err := checkRegionScope(p, path+".region", in.c.GetRegion()); err != nil {
			return upsertResult{}, err
		}
		if err := checkOwnership(p, path, nil, in.c); err != nil {
			return upsertResult{}, err
		}
		c, err := k.insert(ctx, tx, p, path, in.c)
		if err != nil {
			return upsertResult{}, err
		}
		return upsertResult{customer: c, result: customerv1.UpsertResult_UPSERT_RESULT_CREATED}, nil
	}
	old, err := tx.customer(holder)
	if err != nil {
		return upsertResult{}, err
	}
	if old == nil {
		return upsertResult{}, fmt.Errorf("external ref %s/%s points at missing customer %s", in.ref.GetSystem(), in.ref.GetId(), holder)
	}
	if !p.SeesRegion(old.GetRegion()) {
		return upsertResult{}, &refTakenError{Field: in.prefix + "external_ref", System: in.ref.GetSystem(), RefID: in.ref.GetId()}
	}
	src := proto.Clone(in.c).(*customerv1.Customer)
	next := proto.Clone(old).(*customerv1.Customer)
	owner := ownsERPFields(p)
	for _, f := range writableFields {
		if f == "external_refs" || (!owner && slices.Contains(erpOwnedFields, f) && !src.ProtoReflect().Has(field(f))) {
			continue
		}
		copyField(next, src, f)
	}
	next.ExternalRefs = mergeRefs(old.GetExternalRefs(), src.GetExternalRefs())
	if len(next.ExternalRefs) > MaxExternalRefs {
		return upsertResult{}, invalid(path+".external_refs", "the account would carry %d references; at most %d are allowed", len(next.ExternalRefs), MaxExternalRefs)
	}
	normalize(next)
	c, err := k.change(ctx, tx, p, path, old, next)
	if err != nil {
		return upsertResult{}, err
	}
	res := customerv1.UpsertResult_UPSERT_RESULT_UPDATED
	if c == old {
		res = customerv1.UpsertResult_UPSERT_RESULT_UNCHANGED
	}
	return upsertResult{customer: c, result: res}, nil
}

// batchUpsert upserts every item, each atomic on its own; nil items were
// already refused by the caller and are skipped. Items are
// validated first; the valid ones are then applied in one transaction, so
// a batch of a thousand pays for one commit. An item the rules refuse
// writes nothing (every write path checks before it writes) and the others
// go on. Should the shared transaction itself fail, each item is retried in
// a transaction of its own, so one bad item never takes the batch down.
func (k *core) batchUpsert(ctx context.Context, p auth.Principal, items []*customerv1.UpsertCustomerByExternalRefRequest) ([]upsertResult, error) {
	if len(items) == 0 || len(items) > MaxBatchItems {
		return nil, invalid("items", "must hold 1 to %d items, not %d", MaxBatchItems, len(items))
	}
	results := make([]upsertResult, len(items))
	inputs := make([]*upsertInput, len(items))
	for i, item := range items {
		if item == nil {
			continue // refused before the call by the contract's rules
		}
		in, err := prepareUpsert(fmt.Sprintf("items[%d].", i), item)
		if err != nil {
			results[i].err = err
			continue
		}
		inputs[i] = in
	}
	err := k.repo.updateBulk(ctx, func(tx txn) error {
		for i, in := range inputs {
			if in == nil {
				continue
			}
			r, err := k.upsertTx(ctx, tx, p, in)
			if err != nil && !isDomainError(err) {
				return err
			}
			r.err = err
			results[i] = r
		}
		return nil
	})
	if err == nil {
		return results, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	slog.WarnContext(ctx, "customer batch upsert: shared transaction failed; retrying item by item", "items", len(items), "err", err)
	for i, in := range inputs {
		if in != nil {
			results[i] = k.upsertOne(ctx, p, in)
		}
	}
	return results, nil
}

// ---------------------------------------------------------------------------
// Checked changes.

// plan is a change whose every check has passed: applying it can fail only
// on a storage fault.
type plan struct {
	old, next *customerv1.Customer
	move      *creditMove
	events    []proto.Message
}

func (pl *plan) apply(tx txn) error {
	if err := tx.putCustomer(pl.old, pl.next); err != nil {
		return err
	}
	if pl.move != nil {
		if err := pl.move.apply(tx); err != nil {
			return err
		}
	}
	for _, ev := range pl.events {
		if err := tx.emit(pl.next, ev); err != nil {
			return err
		}
	}
	return nil
}

// prepare runs the checks that need stored state before next replaces old
// (nil for a new account): its references are free, its parent is valid,
// a region change leaves no child behind, and outstanding credit
// reservations can follow a change of credit account.
func (k *core) prepare(tx txn, p auth.Principal, path string, old, next *customerv1.Customer) (*plan, error) {
	for i, r := range next.GetExternalRefs() {
		if old != nil && hasRef(old, r) {
			continue
		}
		holder, err := tx.refHolder(r.GetSystem(), r.GetId())
		if err != nil {
			return nil, err
		}
		if holder == "" || holder == next.GetId() {
			continue
		}
		// A new account's references are in request order; an update's
		// are merged with the stored ones, so only the list can be named.
		field := path + ".external_refs"
		if old == nil {
			field = fmt.Sprintf("%s[%d]", field, i)
		}
		taken := &refTakenError{Field: field, System: r.GetSystem(), RefID: r.GetId()}
		if h, err := tx.customer(holder); err != nil {
			return nil, err
		} else if h != nil && p.SeesRegion(h.GetRegion()) {
			taken.Holder = holder
		}
		return nil, taken
	}
	reparent := next.GetParentId() != "" && (old == nil || old.GetParentId() != next.GetParentId() || old.GetRegion() != next.GetRegion())
	if reparent {
		if err := checkParent(tx, p, path, old, next); err != nil {
			return nil, err
		}
	}
	if old != nil && old.GetRegion() != next.GetRegion() {
		hasChild := false
		if err := tx.childIDs(next.GetId(), "", func(string) bool { hasChild = true; return false }); err != nil {
			return nil, err
		}
		if hasChild {
			return nil, invalid(path+".region", "the account has child accounts in region %q; an account and its children must share a region, so move or re-parent them first", old.GetRegion())
		}
	}
	move, err := planCreditMove(tx, path, old, next)
	if err != nil {
		return nil, err
	}
	return &plan{old: old, next: next, move: move}, nil
}

// checkParent verifies that next may hang under next.parent_id: the parent
// exists and the caller sees it, it is in the same region, and the new
// position makes neither a cycle nor a hierarchy deeper than MaxDepth.
func checkParent(tx txn, p auth.Principal, path string, old, next *customerv1.Customer) error {
	field := path + ".parent_id"
	if next.GetParentId() == next.GetId() {
		return invalid(field, "an account cannot be its own parent")
	}
	parent, err := tx.customer(next.GetParentId())
	if err != nil {
		return err
	}
	if parent == nil || !p.SeesRegion(parent.GetRegion()) {
		return invalid(field, "parent customer %q not found", next.GetParentId())
	}
	if parent.GetRegion() != next.GetRegion() {
		return invalid(field, "parent customer %s is in region %q, the account in %q; an account and its parent must share a region", parent.GetId(), parent.GetRegion(), next.GetRegion())
	}
	up, err := ancestors(tx, parent)
	if err != nil {
		return err
	}
	chain := make([]string, 0, len(up)+1)
	chain = append(chain, parent.GetId())
	for _, a := range up {
		chain = append(chain, a.GetId())
	}
	height := 1
	if old != nil && !slices.Contains(chain, next.GetId()) {
		height, err = subtreeHeight(tx, next.GetId(), MaxDepth+1)
		if err != nil {
			return err
		}
	}
	if msg := hierarchyProblem(next.GetId(), chain, height); msg != "" {
		return invalid(field, "%s", msg)
	}
	return nil
}

// hierarchyProblem says what is wrong with placing the account id, whose
// own subtree is height levels tall (1 for a leaf), under the chain of
// ancestors given from its new parent up to the root; "" when nothing is.
func hierarchyProblem(id string, chain []string, height int) string {
	if len(chain) == 0 {
		return ""
	}
	if slices.Contains(chain, id) {
		return fmt.Sprintf("customer %s is below %s in the hierarchy; making it the parent would create a cycle", chain[0], id)
	}
	if depth := len(chain) + height; depth > MaxDepth {
		return fmt.Sprintf("the hierarchy would be %d levels deep; at most %d are allowed", depth, MaxDepth)
	}
	return ""
}

// subtreeHeight counts the levels of the subtree under id, id included,
// stopping at limit.
func subtreeHeight(tx txn, id string, limit int) (int, error) {
	level, h := []string{id}, 0
	for len(level) > 0 && h < limit {
		h++
		var next []string
		for _, n := range level {
			if err := tx.childIDs(n, "", func(c string) bool { next = append(next, c); return true }); err != nil {
				return 0, err
			}
		}
		level = next
	}
	return h, nil
}

// ---------------------------------------------------------------------------
// Rules on one account's values.

// ownsERPFields reports whether p may write the ERP-owned fields.
func ownsERPFields(p auth.Principal) bool {
	return p.IsAny(auth.RoleERP, auth.RoleAdmin, auth.RoleService)
}

// checkOwnership refuses a change to an ERP-owned field by a principal that
// does not own it. Sending the stored value back is not a change.
func checkOwnership(p auth.Principal, path string, old, next *customerv1.Customer) error {
	if ownsERPFields(p) {
		return nil
	}
	if old == nil {
		old = &customerv1.Customer{}
	}
	for _, f := range erpOwnedFields {
		if !fieldEqual(old, next, f) {
			return &fieldOwnedError{Field: path + "." + f, Owner: erpOwner}
		}
	}
	return nil
}

// checkRegionScope refuses writing an account into a region the principal
// does not see.
func checkRegionScope(p auth.Principal, field, region string) error {
	if p.SeesRegion(region) {
		return nil
	}
	return &regionError{Field: field, Region: region, Scope: p.Region}
}

// maskPaths resolves an update mask to writable field names. "*" names
// every writable field; lowerCamelCase paths, as JSON clients write them,
// are accepted too.
func maskPaths(mask []string) ([]string, error) {
	if len(mask) == 0 {
		return nil, invalid("update_mask", "name at least one field to change, for example \"display_name\"")
	}
	var out []string
	for _, raw := range mask {
		path := snakeCase(strings.TrimSpace(raw))
		switch {
		case path == "etag":
			// The etag is the update's precondition, not a field to change;
			// the gateway puts it in the mask it derives from a PATCH body.
			continue
		case path == "*":
			out = append(out, writableFields...)
		case slices.Contains(writableFields, path):
			out = append(out, path)
		case path == "status":
			return nil, invalid("update_mask", "status is output only; use BlockCustomer and UnblockCustomer")
		case slices.Contains(outputOnlyFields, path):
			return nil, invalid("update_mask", "%s is output only", path)
		default:
			return nil, invalid("update_mask", "unknown field %q; writable fields are %s", raw, strings.Join(writableFields, ", "))
		}
	}
	if len(out) == 0 {
		return nil, invalid("update_mask", "name at least one field to change, for example \"display_name\"")
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func snakeCase(s string) string {
	if !strings.ContainsFunc(s, unicode.IsUpper) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsUpper(r) {
			b.WriteByte('_')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func field(name string) protoreflect.FieldDescriptor {
	fd := customerFields.ByName(protoreflect.Name(name))
	if fd == nil {
		panic("customer: no field " + name)
	}
	return fd
}

// copyField sets dst's field to src's value, or clears it when src has none.
func copyField(dst, src *customerv1.Customer, name string) {
	fd := field(name)
	s, d := src.ProtoReflect(), dst.ProtoReflect()
	if s.Has(fd) {
		d.Set(fd, s.Get(fd))
	} else {
		d.Clear(fd)
	}
}

func fieldEqual(a, b *customerv1.Customer, name string) bool {
	fd := field(name)
	x, y := a.ProtoReflect(), b.ProtoReflect()
	if x.Has(fd) != y.Has(fd) {
		return false
	}
	return !x.Has(fd) || x.Get(fd).Equal(y.Get(fd))
}

// changedFields names the writable fields and the status that differ.
func changedFields(old, next *customerv1.Customer) []string {
	var out []string
	for _, f := range append(slices.Clip(writableFields), "status") {
		if !fieldEqual(old, next, f) {
			out = append(out, f)
		}
	}
	return out
}

// writableCopy copies the writable fields of in; output-only fields a
// caller sends are ignored, as the contract says.
func writableCopy(in *customerv1.Customer) *customerv1.Customer {
	c := proto.Clone(in).(*customerv1.Customer)
	c.Id, c.Status, c.Etag, c.CreateTime, c.UpdateTime = "", customerv1.CustomerStatus_CUSTOMER_STATUS_UNSPECIFIED, "", nil, nil
	c.StatusReason = ""
	return c
}

// normalize gives equal values one stored form, so that an upsert of the
// same data is UNCHANGED: empty addresses unset, a credit limit written
// with its currency's minor units. References keep the caller's order, so
// errors can name them by their index in the request. It runs on validated
// values only.
func normalize(c *customerv1.Customer) {
	if c.BillingAddress != nil && proto.Size(c.BillingAddress) == 0 {
		c.BillingAddress = nil
	}
	if c.ShippingAddress != nil && proto.Size(c.ShippingAddress) == 0 {
		c.ShippingAddress = nil
	}
	if m := c.GetCreditLimit(); m != nil {
		c.CreditLimit = normalizedMoney(m)
	}
}

// normalizedMoney writes a valid amount with its currency's minor units.
func normalizedMoney(m *typev1.Money) *typev1.Money {
	scale, _ := money.MinorUnits(m.GetCurrencyCode())
	d, err := money.Parse(m.GetAmount())
	if err != nil {
		return m
	}
	return &typev1.Money{CurrencyCode: m.GetCurrencyCode(), Amount: money.FormatScale(d, scale)}
}

func hasRef(c *customerv1.Customer, ref *typev1.ExternalRef) bool {
	return slices.ContainsFunc(c.GetExternalRefs(), func(r *typev1.ExternalRef) bool {
		return r.GetSystem() == ref.GetSystem() && r.GetId() == ref.GetId()
	})
}

// mergeRefs sets each incoming reference in place of the stored one of its
// system, keeps the stored references of other systems, and appends the
// references of new systems, so that sending the same references again
// changes nothing.
func mergeRefs(stored, incoming []*typev1.ExternalRef) []*typev1.ExternalRef {
	out := slices.Clone(stored)
	for _, in := range incoming {
		i := slices.IndexFunc(out, func(r *typev1.ExternalRef) bool { return r.GetSystem() == in.GetSystem() })
		if i < 0 {
			out = append(out, in)
			continue
		}
		out[i] = in
	}
	return out
}

// ---------------------------------------------------------------------------
// Validation: the bounds of every field, mirroring the contract's rules so
// the domain is safe on its own, plus the rules that need the ISO tables.

var (
	reRegion       = regexp.MustCompile(`^[a-z][a-z0-9-]{1,31}$`)
	reTier         = regexp.MustCompile(`^([a-z][a-z0-9_-]{0,31})?$`)
	reEmail        = regexp.MustCompile(`^([^@\s]+@[^@\s]+\.[^@\s]+)?$`)
	reCurrency     = regexp.MustCompile(`^[A-Z]{3}$`)
	rePaymentTerms = regexp.MustCompile(`^([A-Z0-9_]{1,16})?$`)
	reRefSystem    = regexp.MustCompile(`^[a-z][a-z0-9_-]{1,31}$`)
	reCountry      = regexp.MustCompile(`^([A-Z]{2})?$`)
	reAmount       = regexp.MustCompile(`^-?(0|[1-9][0-9]{0,14})(\.[0-9]{1,6})?$`)
)

// checker collects field violations.
type checker struct{ v []fieldViolation }

func (c *checker) add(field, format string, args ...any) {
	c.v = append(c.v, fieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

func (c *checker) err() error {
	if len(c.v) == 0 {
		return nil
	}
	return &invalidError{Violations: c.v}
}

func (c *checker) length(field, s string, minLen, maxLen int) {
	n := utf8.RuneCountInString(s)
	switch {
	case !utf8.ValidString(s):
		c.add(field, "must be valid UTF-8")
	case n < minLen && minLen == 1:
		c.add(field, "is required")
	case n < minLen || n > maxLen:
		c.add(field, "must be %d to %d characters, not %d", minLen, maxLen, n)
	}
}

func (c *checker) pattern(field, s string, re *regexp.Regexp, what string) {
	if !re.MatchString(s) {
		c.add(field, "must be %s, not %q", what, s)
	}
}

// validateCustomer checks an account's values; path is where the account
// sits in the request, for example "customer".
func validateCustomer(path string, c *customerv1.Customer) error {
	ch := &checker{}
	checkCustomer(ch, path, c)
	return ch.err()
}

func checkCustomer(ch *checker, path string, c *customerv1.Customer) {
	ch.length(path+".display_name", c.GetDisplayName(), 1, 200)
	ch.length(path+".legal_name", c.GetLegalName(), 0, 200)
	ch.length(path+".parent_id", c.GetParentId(), 0, 64)
	if c.GetRegion() == "" {
		ch.add(path+".region", "is required, for example \"eu\"")
	} else {
		ch.pattern(path+".region", c.GetRegion(), reRegion, "a lowercase region code such as \"eu\"")
	}
	ch.pattern(path+".tier", c.GetTier(), reTier, "a lowercase tier code such as \"gold\"")
	checkAddress(ch, path+".billing_address", c.GetBillingAddress())
	checkAddress(ch, path+".shipping_address", c.GetShippingAddress())
	ch.length(path+".email", c.GetEmail(), 0, 254)
	ch.pattern(path+".email", c.GetEmail(), reEmail, "an e-mail address")
	ch.length(path+".phone", c.GetPhone(), 0, 40)
	if n := len(c.GetExternalRefs()); n > MaxExternalRefs {
		ch.add(path+".external_refs", "at most %d references, not %d", MaxExternalRefs, n)
	}
	seen := map[string]int{}
	for i, r := range c.GetExternalRefs() {
		p := fmt.Sprintf("%s.external_refs[%d]", path, i)
		checkRef(ch, p, r)
		if j, dup := seen[r.GetSystem()]; dup {
			ch.add(p+".system", "%q already appears at external_refs[%d]; an account has at most one reference per system", r.GetSystem(), j)
		}
		seen[r.GetSystem()] = i
	}
	if cur := c.GetCurrencyCode(); cur != "" && !money.KnownCurrency(cur) {
		ch.add(path+".currency_code", "%q is not an ISO 4217 currency code", cur)
	}
	if m := c.GetCreditLimit(); m != nil {
		checkMoney(ch, path+".credit_limit", m, false)
	}
	ch.pattern(path+".payment_terms", c.GetPaymentTerms(), rePaymentTerms, "an upper-case terms code such as \"NET30\"")
}

func checkRef(ch *checker, path string, r *typev1.ExternalRef) {
	ch.pattern(path+".system", r.GetSystem(), reRefSystem, "a lowercase system name such as \"salesforce\"")
	ch.length(path+".id", r.GetId(), 1, 128)
}

func checkAddress(ch *checker, path string, a *typev1.Address) {
	if a == nil {
		return
	}
	if n := len(a.GetLines()); n > 4 {
		ch.add(path+".lines", "at most 4 lines, not %d", n)
	}
	for i, l := range a.GetLines() {
		ch.length(fmt.Sprintf("%s.lines[%d]", path, i), l, 1, 200)
	}
	ch.length(path+".city", a.GetCity(), 0, 100)
	ch.length(path+".state", a.GetState(), 0, 100)
	ch.length(path+".postal_code", a.GetPostalCode(), 0, 20)
	ch.pattern(path+".country_code", a.GetCountryCode(), reCountry, "an ISO 3166-1 alpha-2 code such as \"DE\"")
}

// checkMoney checks an amount: a known currency, the contract's decimal
// form, a sign (positive amounts for credit requests, non-negative for
// limits) and no more fraction digits than the currency's minor unit.
// It returns the parsed amount, or nil when the amount is invalid.
func checkMoney(ch *checker, path string, m *typev1.Money, positive bool) *money.Decimal {
	cur := m.GetCurrencyCode()
	scale, known := money.MinorUnits(cur)
	switch {
	case cur == "":
		ch.add(path+".currency_code", "is required, for example \"EUR\"")
	case !reCurrency.MatchString(cur) || !known:
		ch.add(path+".currency_code", "%q is not an ISO 4217 currency code", cur)
	}
	if !reAmount.MatchString(m.GetAmount()) {
		ch.add(path+".amount", "must be a decimal such as \"1250.50\" with at most 15 integer and 6 fraction digits, not %q", m.GetAmount())
		return nil
	}
	d, err := money.Parse(m.GetAmount())
	if err != nil {
		ch.add(path+".amount", "must be a decimal such as \"1250.50\"")
		return nil
	}
	switch {
	case positive && d.Sign() <= 0:
		ch.add(path+".amount", "must be greater than zero")
		return nil
	case d.Sign() < 0:
		ch.add(path+".amount", "must not be negative")
		return nil
	}
	var reduced money.Decimal
	reduced.Reduce(d)
	if known && money.Scale(&reduced) > scale {
		ch.add(path+".amount", "%s has %d decimal places; %q has more", cur, scale, m.GetAmount())
		return nil
	}
	if !known {
		return nil
	}
	return d
}
