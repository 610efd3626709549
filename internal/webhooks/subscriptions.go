package webhooks

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/idempotency"
	"github.com/millrace/millrace/internal/ids"
	"github.com/millrace/millrace/internal/reqctx"
	"github.com/millrace/millrace/internal/storage"
)

// FieldError reports invalid input; Field is the path in the request, for
// example "subscription.url".
type FieldError struct {
	Field       string
	Description string
}

func (e *FieldError) Error() string { return fmt.Sprintf("invalid %s: %s", e.Field, e.Description) }

// NotFoundError reports a missing subscription or dead letter.
type NotFoundError struct {
	Kind string
	ID   string
}

func (e *NotFoundError) Error() string { return fmt.Sprintf("%s %q not found", e.Kind, e.ID) }

// ErrNoEventSource is returned by ReplaySubscription when the dispatcher
// has no EventSource.
var ErrNoEventSource = errors.New("webhooks: replaying a time range needs the event feed, which this process does not have")

const (
	statusActive   = integrationv1.SubscriptionStatus_SUBSCRIPTION_STATUS_ACTIVE
	statusPaused   = integrationv1.SubscriptionStatus_SUBSCRIPTION_STATUS_PAUSED
	statusDisabled = integrationv1.SubscriptionStatus_SUBSCRIPTION_STATUS_DISABLED
	pending        = integrationv1.DeliveryStatus_DELIVERY_STATUS_PENDING
	succeeded      = integrationv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED
	dead           = integrationv1.DeliveryStatus_DELIVERY_STATUS_DEAD
)

var eventTypePattern = regexp.MustCompile(`^[A-Za-z0-9._]{1,200}\*?$`)

// validateFields checks what the proto rules also check, so the domain is
// safe when called without the platform's validator (tests, tools).
func validateFields(in *integrationv1.Subscription) error {
	if len(in.GetEventTypes()) > 50 {
		return &FieldError{"subscription.event_types", "must list at most 50 types"}
	}
	for i, t := range in.GetEventTypes() {
		if !eventTypePattern.MatchString(t) {
			return &FieldError{fmt.Sprintf("subscription.event_types[%d]", i), `must be an event type name, or a prefix ending in "*"`}
		}
	}
	if len(in.GetDescription()) > 500 {
		return &FieldError{"subscription.description", "must be at most 500 characters"}
	}
	return nil
}

func (d *Dispatcher) checkURL(ctx context.Context, raw string) (string, error) {
	u, err := checkURL(ctx, raw, d.opts.AllowPrivate, d.resolver)
	if err != nil {
		return "", &FieldError{"subscription.url", err.Error()}
	}
	return u, nil
}

// CreateSubscription stores a new subscription and returns it with its
// signing secret, the only time the secret is shown. Status defaults to
// ACTIVE; a subscription may also start PAUSED.
func (d *Dispatcher) CreateSubscription(ctx context.Context, in *integrationv1.Subscription) (*integrationv1.Subscription, string, error) {
	if id := reqctx.CreatedBefore(ctx); id != "" {
		return d.reissueSecret(id)
	}
	if err := validateFields(in); err != nil {
		return nil, "", err
	}
	st := in.GetStatus()
	switch st {
	case integrationv1.SubscriptionStatus_SUBSCRIPTION_STATUS_UNSPECIFIED:
		st = statusActive
	case statusActive, statusPaused:
	default:
		return nil, "", &FieldError{"subscription.status", "must be ACTIVE or PAUSED; DISABLED is set by Millrace when deliveries keep failing"}
	}
	u, err := d.checkURL(ctx, in.GetUrl())
	if err != nil {
		return nil, "", err
	}
	id := ids.New("sub")
	secret := newSecret()
	s := &subscription{
		pb: &integrationv1.Subscription{
			Id:          id,
			Url:         u,
			EventTypes:  slices.Clone(in.GetEventTypes()),
			Description: in.GetDescription(),
			Status:      st,
			CreateTime:  timestamppb.New(time.Now().UTC()),
		},
		secret: seal(d.aead, id, secret),
	}
	err = d.db.Update(func(tx *bbolt.Tx) error {
		if err := putSub(tx, s); err != nil {
			return err
		}
		// Under an Idempotency-Key, the retry of a call whose answer was
		// lost in a crash finds this subscription (see reissueSecret).
		return idempotency.Attach(ctx, tx, id)
	})
	if err != nil {
		return nil, "", err
	}
	d.syncSub(id, false)
	return s.pb, secret, nil
}

// reissueSecret answers the retry of a keyed CreateSubscription whose first
// attempt created subscription id but lost its answer in a crash: the
// subscription gets a new signing secret, since the first was never
// delivered, and no previous secret keeps signing. Creating a second
// subscription instead would send every event twice.
func (d *Dispatcher) reissueSecret(id string) (*integrationv1.Subscription, string, error) {
	sub, secret, _, err := d.newSigningSecret(id, false)
	return sub, secret, err
}

// newSigningSecret gives subscription id a new signing secret and returns
// it. With overlap the current secret keeps signing beside it until the
// returned time; without, it stops at once. Deliveries read the secrets
// from the store, so nothing else needs telling.
func (d *Dispatcher) newSigningSecret(id string, overlap bool) (*integrationv1.Subscription, string, time.Time, error) {
	secret := newSecret()
	var expire time.Time
	if overlap {
		expire = time.Now().UTC().Add(d.opts.SecretOverlap)
	}
	var out *integrationv1.Subscription
	err := d.db.Update(func(tx *bbolt.Tx) error {
		s, err := getSub(tx, id)
		if err != nil {
			return err
		}
		if s == nil {
			return &NotFoundError{"subscription", id}
		}
		s.prevSecret, s.prevExpire = nil, time.Time{}
		if overlap {
			s.prevSecret, s.prevExpire = s.secret, expire
		}
		s.secret = seal(d.aead, id, secret)
		out = s.pb
		return putSub(tx, s)
	})
	if err != nil {
		return nil, "", time.Time{}, err
	}
	return out, secret, expire, nil
}

// GetSubscription returns one subscription.
func (d *Dispatcher) GetSubscription(_ context.Context, id string) (*integrationv1.Subscription, error) {
	var out *integrationv1.Subscription
	err := d.db.View(func(tx *bbolt.Tx) error {
		s, err := getSub(tx, id)
		if err != nil {
			return err
		}
		if s == nil {
			return &NotFoundError{"subscription", id}
		}
		out = s.pb
		return nil
	})
	return out, err
}

// ListSubscriptions pages through subscriptions in creation order.
func (d *Dispatcher) ListSubscriptions(_ context.Context, pageSize int, pageToken string) ([]*integrationv1.Subscription, string, error) {
	after, err := decodeToken(pageToken)
	if err != nil {
		return nil, "", err
	}
	pageSize = pageSizeOr(pageSize, 100)
	var (
		out  []*integrationv1.Subscription
		next string
	)
	err = d.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketSubs).Cursor()
		k, v := c.First()
		if after != "" {
			k, v = c.Seek([]byte(after))
			if k != nil && string(k) == after {
				k, v = c.Next()
			}
		}
		for ; k != nil; k, v = c.Next() {
			if len(out) == pageSize {
				next = encodeToken(out[len(out)-1].GetId())
				return nil
			}
			s, err := decodeSub(v)
			if err != nil {
				return err
			}
			out = append(out, s.pb)
		}
		return nil
	})
	return out, next, err
}

// UpdateSubscription changes a subscription's URL, event types,
// description or status. The contract has no field mask, so a field left
// empty (or UNSPECIFIED) is left unchanged; that also means event types
// cannot be cleared to "every type" — use a prefix such as "millrace.*".
// Setting a PAUSED or DISABLED subscription ACTIVE delivers its queued
// events from where it stopped, in order, each head with a fresh retry
// series.
func (d *Dispatcher) UpdateSubscription(ctx context.Context, in *integrationv1.Subscription) (*integrationv1.Subscription, error) {
	id := in.GetId()
	if id == "" {
		return nil, &FieldError{"subscription.id", "is required"}
	}
	if err := validateFields(in); err != nil {
		return nil, err
	}
	var u string
	if in.GetUrl() != "" {
		var err error
		if u, err = d.checkURL(ctx, in.GetUrl()); err != nil {
			return nil, err
		}
	}
	var (
		out         *integrationv1.Subscription
		reactivated bool
	)
	err := d.db.Update(func(tx *bbolt.Tx) error {
		reactivated = false
		s, err := getSub(tx, id)
		if err != nil {
			return err
		}
		if s == nil {
			return &NotFoundError{"subscription", id}
		}
		switch st := in.GetStatus(); st {
		case integrationv1.SubscriptionStatus_SUBSCRIPTION_STATUS_UNSPECIFIED, s.pb.GetStatus():
		case statusActive:
			reactivated = true
			s.pb.Status = st
			s.failingSince = time.Time{}
		case statusPaused:
			s.pb.Status = st
		default:
			return &FieldError{"subscription.status", "must be ACTIVE or PAUSED; DISABLED is set by Millrace when deliveries keep failing"}
		}
		if u != "" {
			s.pb.Url = u
		}
		if len(in.GetEventTypes()) > 0 {
			s.pb.EventTypes = slices.Clone(in.GetEventTypes())
		}
		if in.GetDescription() != "" {
			s.pb.Description = in.GetDescription()
		}
		out = s.pb
		return putSub(tx, s)
	})
	if err != nil {
		return nil, err
	}
	if reactivated {
		if err := d.restartHeads(id); err != nil {
			d.log.Error("webhook deliveries of a re-enabled subscription could not be rescheduled; they keep their retry times", "subscription", id, "err", err)
		}
	}
	d.syncSub(id, reactivated)
	return out, nil
}

// restartHeads gives the lane heads of a re-activated subscription a fresh
// retry series starting now.
func (d *Dispatcher) restartHeads(id string) error {
	heads := d.headsOf(id)
	if len(heads) == 0 {
		return nil
	}
	now := timestamppb.New(time.Now().UTC())
	return d.db.Update(func(tx *bbolt.Tx) error {
		for _, h := range heads {
			dl, err := getDelivery(tx, h)
			if err != nil {
				return err
			}
			if dl == nil || dl.pb.GetStatus() != pending {
				continue
			}
			dl.series = len(dl.pb.GetAttempts())
			dl.pb.NextAttemptTime = now
			if err := putDelivery(tx, dl); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteSubscription deletes a subscription with its deliveries and dead
// letters.
func (d *Dispatcher) DeleteSubscription(_ context.Context, id string) error {
	err := d.db.Update(func(tx *bbolt.Tx) error {
		s, err := getSub(tx, id)
		if err != nil {
			return err
		}
		if s == nil {
			return &NotFoundError{"subscription", id}
		}
		var dls []string
		prefix := storage.KeyStrings(id)
		c := tx.Bucket(bucketBySub).Cursor()
		for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = c.Next() {
			parts, err := storage.SplitKey(k)
			if err != nil || len(parts) != 2 {
				return fmt.Errorf("corrupt delivery index entry %q", k)
			}
			dls = append(dls, string(parts[1]))
		}
		for _, dlID := range dls {
			dl, err := getDelivery(tx, dlID)
			if err != nil {
				return err
			}
			if dl != nil {
				if err := deleteDelivery(tx, dl); err != nil {
					return err
				}
			}
		}
		return tx.Bucket(bucketSubs).Delete([]byte(id))
	})
	if err != nil {
		return err
	}
	d.syncSub(id, false)
	return nil
}

// RotateSecret issues a new signing secret and returns it, the only time it
// is shown. The previous secret keeps signing alongside (two v1 signatures)
// until the returned time, so receivers can switch without losing a
// message; a second rotation within that window retires the oldest secret.
func (d *Dispatcher) RotateSecret(_ context.Context, id string) (string, time.Time, error) {
	_, secret, expire, err := d.newSigningSecret(id, true)
	return secret, expire, err
}

// SendTestEvent sends a synthetic event of type TestEventType to the
// subscription's endpoint now, whatever its status (so an endpoint can be
// checked before a disabled subscription is re-enabled), and returns the
// delivery with its one attempt. A test delivery is never retried and does
// not count towards the subscription's health; it is listed with the other
// deliveries, SUCCEEDED or DEAD (without a dead letter).
func (d *Dispatcher) SendTestEvent(ctx context.Context, id string) (*integrationv1.Delivery, error) {
	var sub *subscription
	err := d.db.View(func(tx *bbolt.Tx) error {
		var err error
		sub, err = getSub(tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	if sub == nil {
		return nil, &NotFoundError{"subscription", id}
	}
	data, err := structpb.NewStruct(map[string]any{
		"message":        "This is a test event from Millrace.",
		"subscriptionId": id,
	})
	if err != nil {
		return nil, err
	}
	packed, err := anypb.New(data)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	env := &eventsv1.Envelope{
		Id:            ids.New("evt"),
		Source:        events.Source("edge"),
		Type:          TestEventType,
		Subject:       events.Subject("subscriptions", id),
		Time:          timestamppb.New(now),
		SpecVersion:   events.SpecVersion,
		CorrelationId: reqctx.CorrelationID(ctx),
		Traceparent:   reqctx.Traceparent(ctx),
		Data:          packed,
	}
	dl := &delivery{
		pb: &integrationv1.Delivery{
			Id:             ids.New("dlv"),
			SubscriptionId: id,
			EventId:        env.GetId(),
			EventType:      env.GetType(),
		},
		event: env,
		lane:  env.GetSubject(),
		test:  true,
	}
	res := d.send(ctx, sub, dl)
	if res.cancelled {
		return nil, ctx.Err()
	}
	d.metrics.attempt(res.label, res.latency)
	dl.pb.Attempts = []*integrationv1.DeliveryAttempt{{
		Time:       timestamppb.New(res.at.UTC()),
		StatusCode: int32(res.code),
		LatencyMs:  res.latency.Milliseconds(),
		Error:      res.errText,
	}}
	dl.pb.Status = dead
	if res.ok {
		dl.pb.Status = succeeded
	}
	err = d.db.Update(func(tx *bbolt.Tx) error {
		if s, err := getSub(tx, id); err != nil || s == nil {
			return err // deleted meanwhile: nothing to list it under
		}
		return insertDelivery(tx, dl)
	})
	if err != nil {
		return nil, err
	}
	return dl.pb, nil
}

// Consume queues the deliveries of one event as ConsumeBatch does. It is
// an events.Handler, for callers that have one event; the process
// subscribes ConsumeBatch.
func (d *Dispatcher) Consume(ctx context.Context, env *eventsv1.Envelope) error {
	return d.ConsumeBatch(ctx, []*eventsv1.Envelope{env})
}

// ConsumeBatch queues one delivery of each event of envs per subscription
// whose filters match it, whatever the subscription's status (a paused or
// disabled subscription's deliveries wait in its queue). All of them commit
// in one transaction, in the order of envs, so a backlog costs one disk
// sync per batch rather than one per event; and an event already queued for
// a subscription is skipped, so the bus may deliver an event any number of
// times. It is an events.BatchHandler: subscribe it to the bus as
// ConsumerName with no filters, with SubscribeBatch.
func (d *Dispatcher) ConsumeBatch(_ context.Context, envs []*eventsv1.Envelope) error {
	valid := make([]*eventsv1.Envelope, 0, len(envs))
	for _, env := range envs {
		if env.GetId() == "" || env.GetType() == "" {
			d.log.Error("webhooks dropped an event without an id or type", "type", env.GetType(), "id", env.GetId())
			continue
		}
		valid = append(valid, env)
	}
	// Most events match no subscription; finding that out needs no write
	// transaction, and so no disk sync.
	matched := false
	if err := d.db.View(func(tx *bbolt.Tx) error {
		subs, err := allSubs(tx)
		if err != nil {
			return err
		}
		for _, env := range valid {
			for _, s := range subs {
				if events.Matches(s.pb.GetEventTypes(), env.GetType()) {
					matched = true
					return nil
				}
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("webhooks: read subscriptions: %w", err)
	}
	if !matched {
		return nil
	}
	var (
		queued int
		lanes  []laneKey
	)
	err := d.db.Update(func(tx *bbolt.Tx) error {
		queued, lanes = 0, lanes[:0]
		subs, err := allSubs(tx)
		if err != nil {
			return err
		}
		now := time.Now().UTC()
		seen := map[laneKey]bool{}
		grown := map[*subscription]bool{}
		for _, env := range valid {
			for _, s := range subs {
				if !events.Matches(s.pb.GetEventTypes(), env.GetType()) {
					continue
				}
				if tx.Bucket(bucketByEvent).Get(storage.KeyStrings(s.pb.GetId(), env.GetId())) != nil {
					continue
				}
				dl, err := d.queueEvent(tx, s, env, now)
				if err != nil {
					return fmt.Errorf("event %s: %w", env.GetId(), err)
				}
				queued++
				grown[s] = true
				if k := (laneKey{s.pb.GetId(), dl.lane}); !seen[k] {
					seen[k] = true
					lanes = append(lanes, k)
				}
			}
		}
		for _, s := range subs {
			if grown[s] {
				if err := putSub(tx, s); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("webhooks: queue %d events: %w", len(valid), err)
	}
	d.metrics.queued(queued)
	d.ensureLanes(lanes)
	return nil
}

var (
	_ events.Handler      = (*Dispatcher)(nil).Consume
	_ events.BatchHandler = (*Dispatcher)(nil).ConsumeBatch
)

// queueEvent adds a new pending delivery of env for s and counts it in s's
// backlog; the caller writes s.
func (d *Dispatcher) queueEvent(tx *bbolt.Tx, s *subscription, env *eventsv1.Envelope, now time.Time) (*delivery, error) {
	lane := env.GetSubject()
	if lane == "" {
		lane = "event/" + env.GetId() // no aggregate: no order to keep
	}
	dl := &delivery{
		pb: &integrationv1.Delivery{
			Id:              ids.New("dlv"),
			SubscriptionId:  s.pb.GetId(),
			EventId:         env.GetId(),
			EventType:       env.GetType(),
			Status:          pending,
			NextAttemptTime: timestamppb.New(now),
		},
		event: env,
		lane:  lane,
	}
	if err := insertDelivery(tx, dl); err != nil {
		return nil, err
	}
	if err := tx.Bucket(bucketByEvent).Put(storage.KeyStrings(s.pb.GetId(), env.GetId()), []byte(dl.pb.GetId())); err != nil {
		return nil, err
	}
	s.pb.Backlog++
	return dl, nil
}

// ListDeliveries pages through a subscription's deliveries, newest first,
// optionally only those in one status.
func (d *Dispatcher) ListDeliveries(_ context.Context, subID string, status integrationv1.DeliveryStatus, pageSize int, pageToken string) ([]*integrationv1.Delivery, string, error) {
	before, err := decodeToken(pageToken)
	if err != nil {
		return nil, "", err
	}
	pageSize = pageSizeOr(pageSize, 50)
	var (
		out  []*integrationv1.Delivery
		next string
	)
	err = d.db.View(func(tx *bbolt.Tx) error {
		if s, err := getSub(tx, subID); err != nil || s == nil {
			if err == nil {
				err = &NotFoundError{"subscription", subID}
			}
			return err
		}
		bucket, prefix := tx.Bucket(bucketBySub), storage.KeyStrings(subID)
		if status != integrationv1.DeliveryStatus_DELIVERY_STATUS_UNSPECIFIED {
			bucket, prefix = tx.Bucket(bucketByStatus), storage.KeyStrings(subID, status.String())
		}
		var from []byte
		if before != "" {
			from = append(slices.Clone(prefix), storage.KeyStrings(before)...)
		}
		var ferr error
		scanBack(bucket, prefix, from, func(k []byte) bool {
			parts, err := storage.SplitKey(k[len(prefix):])
			if err != nil || len(parts) != 1 {
				ferr = fmt.Errorf("corrupt delivery index entry %q", k)
				return false
			}
			id := string(parts[0])
			if len(out) == pageSize {
				next = encodeToken(out[len(out)-1].GetId())
				return false
			}
			dl, err := getDelivery(tx, id)
			if err != nil {
				ferr = err
				return false
			}
			if dl != nil {
				out = append(out, dl.pb)
			}
			return true
		})
		return ferr
	})
	return out, next, err
}

// scanBack visits the keys under prefix in descending order, starting just
// before from when it is set.
func scanBack(b *bbolt.Bucket, prefix, from []byte, fn func(k []byte) bool) {
	c := b.Cursor()
	seek := from
	if seek == nil {
		// Every key under prefix continues with an encoded id, whose first
		// byte is never 0xFF: this sorts after all of them.
		seek = append(slices.Clone(prefix), 0xFF)
	}
	k, _ := c.Seek(seek)
	if k == nil {
		k, _ = c.Last()
		if k != nil && from != nil && string(k) == string(from) {
			k, _ = c.Prev()
		}
	} else {
		k, _ = c.Prev()
	}
	for ; k != nil && hasPrefix(k, prefix); k, _ = c.Prev() {
		if !fn(k) {
			return
		}
	}
}

// ReplaySubscription queues again, as new deliveries with new webhook-ids,
// the subscription's matching events committed in [start, end); a zero end
// means now. Events whose delivery to this subscription is still pending
// are skipped. New webhook-ids are deliberate: a range replay is asked for
// because the receiver must process these events again, and a receiver
// de-duplicating by webhook-id would drop them otherwise. The CloudEvent id
// is the event's own, so a receiver can still tell a replay (and drop a
// stale update by sequence).
func (d *Dispatcher) ReplaySubscription(ctx context.Context, id string, start, end time.Time) (int64, error) {
	if d.opts.Events == nil {
		return 0, ErrNoEventSource
	}
	if end.IsZero() {
		end = time.Now()
	}
	if !start.Before(end) {
		return 0, &FieldError{"end_time", "must be after start_time"}
	}
	if _, err := d.GetSubscription(ctx, id); err != nil {
		return 0, err
	}
	var (
		queued int64
		batch  []*eventsv1.Envelope
	)
	flush := func() error {
		var touched []laneKey
		var n int64
		err := d.db.Update(func(tx *bbolt.Tx) error {
			touched, n = touched[:0], 0
			s, err := getSub(tx, id)
			if err != nil {
				return err
			}
			if s == nil {
				return &NotFoundError{"subscription", id}
			}
			now := time.Now().UTC()
			for _, env := range batch {
				if !events.Matches(s.pb.GetEventTypes(), env.GetType()) {
					continue
				}
				if prev := tx.Bucket(bucketByEvent).Get(storage.KeyStrings(id, env.GetId())); prev != nil {
					old, err := getDelivery(tx, string(prev))
					if err != nil {
						return err
					}
					if old != nil && old.pb.GetStatus() == pending {
						continue
					}
				}
				dl, err := d.queueEvent(tx, s, env, now)
				if err != nil {
					return err
				}
				touched = append(touched, laneKey{id, dl.lane})
				n++
			}
			if n == 0 {
				return nil
			}
			return putSub(tx, s)
		})
		if err != nil {
			return err
		}
		batch = batch[:0]
		queued += n
		d.metrics.queued(int(n))
		d.ensureLanes(touched)
		return nil
	}
	err := d.opts.Events.Range(ctx, start, end, func(env *eventsv1.Envelope) error {
		if env.GetId() == "" || env.GetType() == "" {
			return nil
		}
		batch = append(batch, env)
		if len(batch) == 256 {
			return flush()
		}
		return nil
	})
	if err == nil && len(batch) > 0 {
		err = flush()
	}
	return queued, err
}

// ListDeadLetters pages through dead letters, oldest first, of one
// subscription or of all.
func (d *Dispatcher) ListDeadLetters(_ context.Context, subID string, pageSize int, pageToken string) ([]*integrationv1.DeadLetter, string, error) {
	after, err := decodeToken(pageToken)
	if err != nil {
		return nil, "", err
	}
	pageSize = pageSizeOr(pageSize, 50)
	var (
		out  []*integrationv1.DeadLetter
		next string
	)
	err = d.db.View(func(tx *bbolt.Tx) error {
		var c *bbolt.Cursor
		var prefix, seek []byte
		if subID != "" {
			if s, err := getSub(tx, subID); err != nil || s == nil {
				if err == nil {
					err = &NotFoundError{"subscription", subID}
				}
				return err
			}
			c, prefix = tx.Bucket(bucketDeadBySub).Cursor(), storage.KeyStrings(subID)
			seek = prefix
			if after != "" {
				seek = storage.KeyStrings(subID, after)
			}
		} else {
			c = tx.Bucket(bucketDeadLetters).Cursor()
			seek = []byte(after)
		}
		for k, _ := c.Seek(seek); k != nil && hasPrefix(k, prefix); k, _ = c.Next() {
			dltID := string(k)
			if subID != "" {
				parts, err := storage.SplitKey(k)
				if err != nil || len(parts) != 2 {
					return fmt.Errorf("corrupt dead letter index entry %q", k)
				}
				dltID = string(parts[1])
			}
			if dltID == after {
				continue
			}
			if len(out) == pageSize {
				next = encodeToken(out[len(out)-1].GetId())
				return nil
			}
			dlt, err := getDeadLetter(tx, dltID)
			if err != nil {
				return err
			}
			if dlt != nil {
				out = append(out, dlt)
			}
		}
		return nil
	})
	return out, next, err
}

// getDeadLetter reads a dead letter with its delivery as it is now.
func getDeadLetter(tx *bbolt.Tx, id string) (*integrationv1.DeadLetter, error) {
	v := tx.Bucket(bucketDeadLetters).Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	dlt := &integrationv1.DeadLetter{}
	if err := storage.UnmarshalProto(v, dlt); err != nil {
		return nil, fmt.Errorf("decode dead letter %s: %w", id, err)
	}
	dl, err := getDelivery(tx, dlt.GetDelivery().GetId())
	if err != nil {
		return nil, err
	}
	if dl != nil {
		dlt.Delivery = dl.pb
	}
	return dlt, nil
}

// ReplayDeadLetter queues a dead letter's delivery again and removes the
// dead letter. The delivery keeps its id, so the webhook-id is the one the
// receiver saw in the failed attempts: a receiver that did process it
// (answering too late, say) drops it as a duplicate. It gets a fresh retry
// series and joins the end of its lane; if it exhausts again, it becomes a
// new dead letter.
func (d *Dispatcher) ReplayDeadLetter(ctx context.Context, id string) (*integrationv1.Delivery, error) {
	out, notFound, err := d.replayDeadLetters(ctx, []string{id})
	if err != nil {
		return nil, err
	}
	if len(notFound) > 0 {
		return nil, &NotFoundError{"dead letter", id}
	}
	return out[0], nil
}

// ReplayDeadLetters is ReplayDeadLetter for many dead letters in one
// transaction; it returns how many were queued and which ids were not found.
func (d *Dispatcher) ReplayDeadLetters(ctx context.Context, dltIDs []string) (int64, []string, error) {
	out, notFound, err := d.replayDeadLetters(ctx, dltIDs)
	return int64(len(out)), notFound, err
}

func (d *Dispatcher) replayDeadLetters(_ context.Context, dltIDs []string) ([]*integrationv1.Delivery, []string, error) {
	var (
		out      []*integrationv1.Delivery
		notFound []string
		touched  []laneKey
	)
	err := d.db.Update(func(tx *bbolt.Tx) error {
		out, notFound, touched = nil, nil, nil
		seen := map[string]bool{}
		subs := map[string]*subscription{}
		now := timestamppb.New(time.Now().UTC())
		for _, id := range dltIDs {
			if seen[id] {
				continue
			}
			seen[id] = true
			dlt, err := getDeadLetter(tx, id)
			if err != nil {
				return err
			}
			if dlt == nil {
				notFound = append(notFound, id)
				continue
			}
			dl, err := getDelivery(tx, dlt.GetDelivery().GetId())
			if err != nil {
				return err
			}
			subID := dlt.GetDelivery().GetSubscriptionId()
			s := subs[subID]
			if s == nil {
				if s, err = getSub(tx, subID); err != nil {
					return err
				}
				subs[subID] = s
			}
			if err := deleteDeadLetter(tx, subID, id); err != nil {
				return err
			}
			if dl == nil || s == nil || dl.pb.GetStatus() != dead {
				notFound = append(notFound, id) // an orphan: nothing to replay
				continue
			}
			dl.deadLetter = ""
			dl.series = len(dl.pb.GetAttempts())
			dl.pb.NextAttemptTime = now
			if err := setStatus(tx, dl, pending); err != nil {
				return err
			}
			if err := putDelivery(tx, dl); err != nil {
				return err
			}
			s.pb.Backlog++
			out = append(out, dl.pb)
			touched = append(touched, laneKey{subID, dl.lane})
		}
		for _, s := range subs {
			if s != nil {
				if err := putSub(tx, s); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	d.metrics.queued(len(out))
	d.ensureLanes(touched)
	return out, notFound, nil
}

// Page tokens are opaque to callers: the last id of the previous page.
func encodeToken(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

func decodeToken(t string) (string, error) {
	if t == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(t)
	if err != nil || len(b) == 0 || len(b) > 64 {
		return "", &FieldError{"page_token", "is not a token from a previous response"}
	}
	return string(b), nil
}

func pageSizeOr(n, def int) int {
	switch {
	case n <= 0:
		return def
	case n > 500:
		return 500
	}
	return n
}
