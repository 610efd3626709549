package customer

import (
	"context"
	"fmt"
	"time"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/money"
)

// Group credit.
//
// A credit limit may sit on any account. The effective limit of an account
// is the nearest one up the hierarchy, the account's own first; the account
// carrying it is the credit account, and its exposure is the sum of the
// reservations of every account that resolves to it. Exposure is therefore
// stored once, on the credit account, and a reservation records the
// account it was counted on.
//
// When a change moves accounts to another credit account (a limit set on
// or removed from an account in the middle of a group, an account moved
// under another parent), their open reservations move with them in the
// same transaction, so exposure always equals the sum of the reservations
// counted on it. A move that would put a reservation on a limit in another
// currency is refused: there is no exchange rate here to convert with.

// reservation is the credit held for one order. Reservations are keyed by
// order id, which makes reserving and releasing idempotent.
type reservation struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	// AccountID is the credit account the amount is counted on; empty
	// while no account up the hierarchy carries a limit.
	AccountID  string    `json:"credit_account_id,omitempty"`
	Currency   string    `json:"currency_code"`
	Amount     string    `json:"amount"`
	CreateTime time.Time `json:"create_time"`
}

// creditState is what a credit decision rests on.
type creditState struct {
	customer *customerv1.Customer
	// account carries the effective limit; nil when no account up the
	// hierarchy has one.
	account *customerv1.Customer
	// blocked is set when credit_blocked is set on the customer or on any
	// account between it and its credit account, both included.
	blocked  bool
	exposure *money.Decimal
}

// resolveCredit finds the credit account of chain[0], where chain runs from
// an account up to its root: the first account with a limit. blocked says
// whether credit is blocked on the way there.
func resolveCredit(chain []*customerv1.Customer) (account *customerv1.Customer, blocked bool) {
	for _, a := range chain {
		blocked = blocked || a.GetCreditBlocked()
		if a.GetCreditLimit() != nil {
			return a, blocked
		}
	}
	return nil, blocked
}

func loadCreditState(tx txn, c *customerv1.Customer) (*creditState, error) {
	up, err := ancestors(tx, c)
	if err != nil {
		return nil, err
	}
	s := &creditState{customer: c, exposure: money.Zero()}
	s.account, s.blocked = resolveCredit(append([]*customerv1.Customer{c}, up...))
	if s.account == nil {
		return s, nil
	}
	exp, err := tx.exposure(s.account.GetId())
	if err != nil || exp == nil {
		return s, err
	}
	if exp.GetCurrencyCode() != s.account.GetCreditLimit().GetCurrencyCode() {
		return nil, fmt.Errorf("credit account %s: exposure in %s, limit in %s", s.account.GetId(), exp.GetCurrencyCode(), s.account.GetCreditLimit().GetCurrencyCode())
	}
	if s.exposure, err = money.Parse(exp.GetAmount()); err != nil {
		return nil, fmt.Errorf("credit account %s: stored exposure %q: %w", s.account.GetId(), exp.GetAmount(), err)
	}
	return s, nil
}

// available is the limit minus the exposure; it is negative when a group
// was given a limit below what it already had reserved.
func (s *creditState) available() *money.Decimal {
	limit, err := money.Parse(s.account.GetCreditLimit().GetAmount())
	if err != nil {
		return money.Zero()
	}
	return money.Sub(limit, s.exposure)
}

// position reports the state in the contract's terms; an account without a
// limit anywhere up its hierarchy has an empty position.
func (s *creditState) position() *customerv1.CreditPosition {
	if s.account == nil {
		return &customerv1.CreditPosition{}
	}
	limit := s.account.GetCreditLimit()
	scale, _ := money.MinorUnits(limit.GetCurrencyCode())
	return &customerv1.CreditPosition{
		CreditAccountId: s.account.GetId(),
		Limit:           limit,
		Exposure:        &typev1.Money{CurrencyCode: limit.GetCurrencyCode(), Amount: money.FormatScale(s.exposure, scale)},
		Available:       &typev1.Money{CurrencyCode: limit.GetCurrencyCode(), Amount: money.FormatScale(s.available(), scale)},
	}
}

// decide answers whether amount fits. The order of the reasons is the order
// an order desk would want to hear them: the account is blocked, its credit
// is blocked, nobody granted it credit, the amount exceeds what is left. An
// amount in another currency than the limit is a caller mistake, not a
// decline.
func (s *creditState) decide(amount *money.Decimal, currency string) (customerv1.CreditDecision, string, error) {
	if s.account != nil && s.account.GetCreditLimit().GetCurrencyCode() != currency {
		return 0, "", invalid("amount.currency_code", "the credit limit of account %s is in %s; check credit in that currency, not %s",
			s.account.GetId(), s.account.GetCreditLimit().GetCurrencyCode(), currency)
	}
	declined := customerv1.CreditDecision_CREDIT_DECISION_DECLINED
	switch {
	case s.customer.GetStatus() == customerv1.CustomerStatus_CUSTOMER_STATUS_BLOCKED:
		return declined, DeclineCustomerBlocked, nil
	case s.blocked:
		return declined, DeclineCreditBlocked, nil
	case s.account == nil:
		return declined, DeclineNoCreditLimit, nil
	case money.Cmp(amount, s.available()) > 0:
		return declined, DeclineCreditLimitExceeded, nil
	}
	return customerv1.CreditDecision_CREDIT_DECISION_APPROVED, "", nil
}

// creditAmount validates the amount of a credit request.
func creditAmount(m *typev1.Money) (*money.Decimal, error) {
	if m == nil {
		return nil, invalid("amount", "is required")
	}
	ch := &checker{}
	d := checkMoney(ch, "amount", m, true)
	if err := ch.err(); err != nil {
		return nil, err
	}
	return d, nil
}

func checkOrderID(id string) error {
	ch := &checker{}
	ch.length("order_id", id, 1, 64)
	return ch.err()
}

func (k *core) checkCredit(ctx context.Context, p auth.Principal, id string, amount *typev1.Money) (*customerv1.CheckCreditResponse, error) {
	amt, err := creditAmount(amount)
	if err != nil {
		return nil, err
	}
	var out *customerv1.CheckCreditResponse
	err = k.repo.view(ctx, func(tx txn) error {
		c, err := visibleCustomer(tx, p, id)
		if err != nil {
			return err
		}
		s, err := loadCreditState(tx, c)
		if err != nil {
			return err
		}
		decision, reason, err := s.decide(amt, amount.GetCurrencyCode())
		if err != nil {
			return err
		}
		out = &customerv1.CheckCreditResponse{Decision: decision, Position: s.position(), Reason: reason}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// reserve holds credit for an order. The check and the reservation happen
// in one write transaction, and write transactions are serialised, so
// concurrent reservations on one group never exceed its limit. Reserving
// again for the same order answers APPROVED with the current position and
// counts nothing twice. A decline stores nothing, so a retry after credit
// was freed is decided afresh.
func (k *core) reserve(ctx context.Context, p auth.Principal, customerID, orderID string, amount *typev1.Money) (*customerv1.ReserveCreditResponse, error) {
	if err := checkOrderID(orderID); err != nil {
		return nil, err
	}
	amt, err := creditAmount(amount)
	if err != nil {
		return nil, err
	}
	var out *customerv1.ReserveCreditResponse
	err = k.repo.update(ctx, func(tx txn) error {
		out = nil
		c, err := visibleCustomer(tx, p, customerID)
		if err != nil {
			return err
		}
		existing, err := tx.reservation(orderID)
		if err != nil {
			return err
		}
		if existing != nil {
			if err := sameReservation(existing, c.GetId(), amount.GetCurrencyCode(), amt); err != nil {
				return err
			}
			s, err := loadCreditState(tx, c)
			if err != nil {
				return err
			}
			out = &customerv1.ReserveCreditResponse{Decision: customerv1.CreditDecision_CREDIT_DECISION_APPROVED, Position: s.position()}
			return nil
		}
		s, err := loadCreditState(tx, c)
		if err != nil {
			return err
		}
		decision, reason, err := s.decide(amt, amount.GetCurrencyCode())
		if err != nil {
			return err
		}
		if decision != customerv1.CreditDecision_CREDIT_DECISION_APPROVED {
			out = &customerv1.ReserveCreditResponse{Decision: decision, Position: s.position(), Reason: reason}
			return nil
		}
		scale, _ := money.MinorUnits(amount.GetCurrencyCode())
		r := &reservation{
			OrderID:    orderID,
			CustomerID: c.GetId(),
			AccountID:  s.account.GetId(),
			Currency:   amount.GetCurrencyCode(),
			Amount:     money.FormatScale(amt, scale),
			CreateTime: k.now(),
		}
		if err := addExposure(tx, r.AccountID, r.Currency, amt); err != nil {
			return err
		}
		if err := tx.putReservation(r); err != nil {
			return err
		}
		s.exposure = money.Add(s.exposure, amt)
		out = &customerv1.ReserveCreditResponse{Decision: decision, Position: s.position()}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// sameReservation refuses a repeated reservation that is not a retry of
// the stored one.
func sameReservation(r *reservation, customerID, currency string, amount *money.Decimal) error {
	if r.CustomerID != customerID {
		return &preconditionError{Reason: ReasonReservationMismatch, Field: "order_id",
			Message: fmt.Sprintf("order %q already holds a credit reservation for another customer", r.OrderID)}
	}
	stored, err := money.Parse(r.Amount)
	if err != nil {
		return fmt.Errorf("reservation %s: stored amount %q: %w", r.OrderID, r.Amount, err)
	}
	if r.Currency != currency || money.Cmp(stored, amount) != 0 {
		return &preconditionError{Reason: ReasonReservationMismatch, Field: "amount",
			Message: fmt.Sprintf("order %q already holds a reservation of %s %s; release it before reserving a different amount", r.OrderID, r.Amount, r.Currency)}
	}
	return nil
}

// release gives back the credit held for an order. Releasing an order that
// holds nothing succeeds and changes nothing.
func (k *core) release(ctx context.Context, p auth.Principal, customerID, orderID string) (*customerv1.ReleaseCreditResponse, error) {
	if err := checkOrderID(orderID); err != nil {
		return nil, err
	}
	var out *customerv1.ReleaseCreditResponse
	err := k.repo.update(ctx, func(tx txn) error {
		out = nil
		c, err := visibleCustomer(tx, p, customerID)
		if err != nil {
			return err
		}
		r, err := tx.reservation(orderID)
		if err != nil {
			return err
		}
		released := false
		if r != nil {
			if r.CustomerID != c.GetId() {
				return &preconditionError{Reason: ReasonReservationMismatch, Field: "order_id",
					Message: fmt.Sprintf("order %q holds a credit reservation for another customer", orderID)}
			}
			if r.AccountID != "" {
				amt, err := money.Parse(r.Amount)
				if err != nil {
					return fmt.Errorf("reservation %s: stored amount %q: %w", r.OrderID, r.Amount, err)
				}
				if err := addExposure(tx, r.AccountID, r.Currency, money.Sub(money.Zero(), amt)); err != nil {
					return err
				}
			}
			if err := tx.deleteReservation(r); err != nil {
				return err
			}
			released = true
		}
		s, err := loadCreditState(tx, c)
		if err != nil {
			return err
		}
		out = &customerv1.ReleaseCreditResponse{Released: released, Position: s.position()}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// addExposure adds delta (negative to release) to a credit account's
// exposure.
func addExposure(tx txn, accountID, currency string, delta *money.Decimal) error {
	cur, err := tx.exposure(accountID)
	if err != nil {
		return err
	}
	total := money.Zero()
	if cur != nil {
		if cur.GetCurrencyCode() != currency {
			return fmt.Errorf("credit account %s carries exposure in %s, not %s", accountID, cur.GetCurrencyCode(), currency)
		}
		if total, err = money.Parse(cur.GetAmount()); err != nil {
			return fmt.Errorf("credit account %s: stored exposure %q: %w", accountID, cur.GetAmount(), err)
		}
	}
	total = money.Add(total, delta)
	switch total.Sign() {
	case -1:
		return fmt.Errorf("credit account %s: exposure would fall below zero", accountID)
	case 0:
		return tx.setExposure(accountID, nil)
	}
	scale, _ := money.MinorUnits(currency)
	return tx.setExposure(accountID, &typev1.Money{CurrencyCode: currency, Amount: money.FormatScale(total, scale)})
}

// creditMove moves open reservations onto another credit account.
type creditMove struct {
	to           string // new credit account; "" when none carries a limit
	reservations []*reservation
}

func (m *creditMove) apply(tx txn) error {
	for _, r := range m.reservations {
		amt, err := money.Parse(r.Amount)
		if err != nil {
			return fmt.Errorf("reservation %s: stored amount %q: %w", r.OrderID, r.Amount, err)
		}
		if r.AccountID != "" {
			if err := addExposure(tx, r.AccountID, r.Currency, money.Sub(money.Zero(), amt)); err != nil {
				return err
			}
		}
		if m.to != "" {
			if err := addExposure(tx, m.to, r.Currency, amt); err != nil {
				return err
			}
		}
		r.AccountID = m.to
		if err := tx.putReservation(r); err != nil {
			return err
		}
	}
	return nil
}

// planCreditMove works out which reservations change credit account when
// next replaces old, and refuses the change when they cannot follow.
func planCreditMove(tx txn, path string, old, next *customerv1.Customer) (*creditMove, error) {
	if old == nil {
		return nil, nil // a new account holds no reservations
	}
	hadLimit, hasLimit := old.GetCreditLimit() != nil, next.GetCreditLimit() != nil
	if hadLimit && hasLimit {
		// The account stays its own credit account. Its exposure is in the
		// old currency, so the currency can change only once it is zero.
		from, to := old.GetCreditLimit().GetCurrencyCode(), next.GetCreditLimit().GetCurrencyCode()
		if from == to {
			return nil, nil
		}
		exp, err := tx.exposure(next.GetId())
		if err != nil {
			return nil, err
		}
		if exp != nil {
			return nil, &preconditionError{Reason: ReasonReservationsOpen, Field: path + ".credit_limit.currency_code",
				Message: fmt.Sprintf("customer %s has %s %s of credit reserved by open orders; release them before changing the limit's currency to %s",
					next.GetId(), exp.GetAmount(), exp.GetCurrencyCode(), to)}
		}
		return nil, nil
	}
	if !hadLimit && !hasLimit && old.GetParentId() == next.GetParentId() {
		return nil, nil
	}
	before, err := creditAccountOf(tx, old)
	if err != nil {
		return nil, err
	}
	after, err := creditAccountOf(tx, next)
	if err != nil {
		return nil, err
	}
	if accountID(before) == accountID(after) {
		return nil, nil
	}
	field := path + ".parent_id"
	if hadLimit != hasLimit {
		field = path + ".credit_limit"
	}
	move := &creditMove{to: accountID(after)}
	var conflict *reservation
	err = walkCreditGroup(tx, next, func(customerID string) (bool, error) {
		err := tx.reservationsOf(customerID, func(r *reservation) bool {
			if r.AccountID == move.to {
				return true
			}
			if after != nil && r.Currency != after.GetCreditLimit().GetCurrencyCode() {
				conflict = r
				return false
			}
			move.reservations = append(move.reservations, r)
			return true
		})
		return conflict == nil, err
	})
	if err != nil {
		return nil, err
	}
	if conflict != nil {
		return nil, &preconditionError{Reason: ReasonReservationsOpen, Field: field,
			Message: fmt.Sprintf("customer %s has credit reserved in %s by open order %s, and the change would count it on credit account %s, whose limit is in %s; release it first",
				conflict.CustomerID, conflict.Currency, conflict.OrderID, after.GetId(), after.GetCreditLimit().GetCurrencyCode())}
	}
	return move, nil
}

// creditAccountOf returns the credit account of c as c says (its own limit,
// its own parent), reading its ancestors from tx.
func creditAccountOf(tx txn, c *customerv1.Customer) (*customerv1.Customer, error) {
	if c.GetCreditLimit() != nil {
		return c, nil
	}
	up, err := ancestors(tx, c)
	if err != nil {
		return nil, err
	}
	a, _ := resolveCredit(up)
	return a, nil
}

func accountID(c *customerv1.Customer) string {
	if c == nil {
		return ""
	}
	return c.GetId()
}

// walkCreditGroup calls fn with root's id and the ids of the accounts under
// it that share its credit account: descendants carrying their own limit
// are groups of their own and are skipped with their subtrees.
func walkCreditGroup(tx txn, root *customerv1.Customer, fn func(customerID string) (bool, error)) error {
	level := []string{root.GetId()}
	for depth := 0; len(level) > 0 && depth <= MaxDepth; depth++ {
		var next []string
		for _, id := range level {
			more, err := fn(id)
			if err != nil || !more {
				return err
			}
			var childErr error
			err = tx.childIDs(id, "", func(cid string) bool {
				child, err := tx.customer(cid)
				if err != nil {
					childErr = err
					return false
				}
				if child != nil && child.GetCreditLimit() == nil {
					next = append(next, cid)
				}
				return true
			})
			if err != nil {
				return err
			}
			if childErr != nil {
				return childErr
			}
		}
		level = next
	}
	return nil
}
