package order

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/millrace/millrace/internal/reqctx"
)

// Run does the order service's background work until ctx ends, then
// returns nil once it has stopped:
//   - at start and every RevalidateEvery it resumes the sagas that wait
//     (PENDING orders at their persisted step, ON_HOLD{CREDIT_PENDING}
//     orders at the credit step), so a crash or a peer outage delays an
//     order but never loses it;
//   - it expires quotes past valid_until and releases their soft holds;
//   - it retries the releases owed to peers (cancelled orders, expired and
//     rejected quotes) that could not be made at once;
//   - with Options.Bus set, it consumes ShipmentConfirmed, InvoicePosted and
//     InvoicePaid and moves orders on (see lifecycle.go).
func (s *Server) Run(ctx context.Context) error {
	if err := s.Subscribe(); err != nil {
		return err
	}
	defer s.unsubscribe()
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		if err := s.core.revalidate(ctx); errors.Is(err, errCrashed) {
			// A failpoint "killed" the process: stop doing anything until
			// the test stops us, as a dead process would.
			<-ctx.Done()
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// revalidate is one round of background work.
func (k *core) revalidate(ctx context.Context) error {
	k.payOwed(ctx)
	if n, err := k.expireQuotes(ctx); err != nil && ctx.Err() == nil {
		k.log.ErrorContext(ctx, "quote expiry failed", "err", err)
	} else if n > 0 {
		k.log.InfoContext(ctx, "quotes expired", "count", n)
	}
	return k.resumeSagas(ctx)
}

// peerOfStep names the peer a saga step waits for.
func peerOfStep(step string) string {
	switch step {
	case StepPrice:
		return "productpricing"
	case StepReserve:
		return "fulfillment"
	case StepCredit:
		return "customer"
	}
	return ""
}

// resumeSagas drives every order the background owns. Once one order finds
// a peer unavailable, the other orders waiting on that peer are left for
// the next round rather than each paying a timeout.
func (k *core) resumeSagas(ctx context.Context) error {
	var due []string
	if err := k.repo.view(ctx, func(tx txn) error {
		var err error
		due, err = tx.dueOrders()
		return err
	}); err != nil {
		if ctx.Err() == nil {
			k.log.ErrorContext(ctx, "reading the orders to resume failed", "err", err)
		}
		return nil
	}
	down := map[string]bool{}
	for _, id := range due {
		if ctx.Err() != nil {
			return nil
		}
		rec, err := k.load(ctx, id)
		if err != nil {
			continue
		}
		step := rec.st.Step
		if down[peerOfStep(step)] {
			continue
		}
		out, _, err := k.drive(sagaContext(ctx, rec), id, nil)
		switch {
		case errors.Is(err, errCrashed):
			return err
		case err != nil:
			if ctx.Err() == nil {
				k.log.ErrorContext(ctx, "resuming an order's saga failed", "order_id", id, "step", step, "err", err)
			}
			continue
		}
		if out.st.Step == step && out.st.Waiting != "" {
			down[peerOfStep(step)] = true
		}
	}
	return nil
}

// sagaContext is the context background work on an order runs in: the
// correlation id and traceparent of the request that created it, and the
// system as actor.
func sagaContext(ctx context.Context, rec *orderRecord) context.Context {
	if rec.st.CorrelationID != "" {
		ctx = reqctx.WithCorrelationID(ctx, rec.st.CorrelationID)
	}
	if rec.st.Traceparent != "" {
		ctx = reqctx.WithTraceparent(ctx, rec.st.Traceparent)
	}
	return reqctx.WithActor(ctx, systemActor)
}

// payOwed retries the releases owed to peers.
func (k *core) payOwed(ctx context.Context) {
	var owed []compensation
	if err := k.repo.view(ctx, func(tx txn) error {
		var err error
		owed, err = tx.owed()
		return err
	}); err != nil {
		if ctx.Err() == nil {
			k.log.ErrorContext(ctx, "reading the owed releases failed", "err", err)
		}
		return
	}
	k.settleNow(ctx, owed)
}

// Subscribe registers the service's event consumer on Options.Bus, once.
// The process calls it before the outbox relays start, so that on an
// in-process bus no event published at start-up passes the consumer by;
// Run calls it too when nobody did.
func (s *Server) Subscribe() error {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if s.opts.Bus == nil || s.sub != nil {
		return nil
	}
	sub, err := s.opts.Bus.Subscribe(consumerName, consumedTypes, s.core.consume)
	if err != nil {
		return fmt.Errorf("order service: subscribe to fulfillment events: %w", err)
	}
	s.sub = sub
	return nil
}

func (s *Server) unsubscribe() {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if s.sub != nil {
		s.sub.Stop()
		s.sub = nil
	}
}
