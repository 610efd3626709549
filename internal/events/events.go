// Package events turns state changes into durable events. A service appends
// an event to its outbox in the same bbolt transaction as the change it
// describes (Append); a Relay later publishes committed events, in commit
// order, to a Bus. Nothing is lost if the process dies between commit and
// publish: the relay resumes from the outbox.
package events

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	"github.com/millrace/millrace/internal/ids"
	"github.com/millrace/millrace/internal/reqctx"
	"github.com/millrace/millrace/internal/storage"
)

// SpecVersion is the CloudEvents version of every envelope.
const SpecVersion = "1.0"

// anyTypePrefix is the type URL prefix of a packed payload.
const anyTypePrefix = "type.googleapis.com/"

// Source returns the CloudEvents source of a service, for example
// "/millrace/order".
func Source(service string) string { return "/millrace/" + service }

// Subject names an aggregate, for example Subject("orders", id) is
// "orders/ord_01J...". Sequence numbers are kept per subject.
func Subject(collection, id string) string { return collection + "/" + id }

// Type returns the event type of a message: its full proto name.
func Type(msg proto.Message) string { return string(msg.ProtoReflect().Descriptor().FullName()) }

// Draft is an event about to be appended.
type Draft struct {
	Service string        // emitting service, for example "customer"
	Subject string        // aggregate, from Subject
	Region  string        // region of the data, for residency; may be empty
	Data    proto.Message // the event message, for example *eventsv1.CustomerCreated
	// Sequence, when not zero, is the event's subject sequence, kept by
	// the caller in the aggregate's own record (which the transaction
	// writes anyway) instead of the store's counter (NextAggregateSeq),
	// whose page every event would otherwise rewrite. The caller keeps it
	// gap-free: it starts from AggregateSeq for an aggregate whose earlier
	// events took the counter, and every event of the subject then carries
	// its own. Supersede works only on counted subjects.
	Sequence uint64
}

// Append builds the envelope of d from the request context (correlation id,
// traceparent, causation id), gives it the next sequence number of its
// subject, and writes it to the outbox in tx. The event becomes visible to
// the relay only if tx commits.
func Append(ctx context.Context, tx *bbolt.Tx, d Draft) (*eventsv1.Envelope, error) {
	p, err := AppendPending(ctx, tx, d)
	return p.Env, err
}

// Pending is an event appended in a transaction that has not committed yet:
// its envelope and its place in the outbox, so that the same transaction
// can supersede it.
type Pending struct {
	Env *eventsv1.Envelope
	seq uint64 // outbox sequence
}

// AppendPending is Append for a caller that may supersede the event before
// its transaction commits.
func AppendPending(ctx context.Context, tx *bbolt.Tx, d Draft) (Pending, error) {
	if err := d.check(); err != nil {
		return Pending{}, err
	}
	seq := d.Sequence
	if seq == 0 {
		var err error
		if seq, err = storage.NextAggregateSeq(tx, d.Subject); err != nil {
			return Pending{}, fmt.Errorf("events: sequence for %s: %w", d.Subject, err)
		}
	}
	env, b, err := envelope(ctx, d, seq)
	if err != nil {
		return Pending{}, err
	}
	at, err := storage.AppendOutbox(tx, b)
	if err != nil {
		return Pending{}, fmt.Errorf("events: append to outbox: %w", err)
	}
	return Pending{Env: env, seq: at}, nil
}

// Supersede replaces p, appended earlier in the same transaction tx and
// still the latest event of its subject, with d: one event where two
// changes of one aggregate commit together. The new event takes p's place
// in the outbox and its subject sequence, so receivers see a gap-free
// sequence in commit order; it gets a new id and time, and the correlation
// of ctx (the change it reports last). Anyone who would have read p reads
// the new event instead: p was never committed, so nobody saw it.
//
// d must be about p's subject, and no event of that subject may have been
// appended after p; otherwise Supersede fails and changes nothing.
func Supersede(ctx context.Context, tx *bbolt.Tx, p Pending, d Draft) (Pending, error) {
	if err := d.check(); err != nil {
		return Pending{}, err
	}
	if p.Env == nil || p.seq == 0 {
		return Pending{}, fmt.Errorf("events: nothing to supersede")
	}
	if d.Subject != p.Env.GetSubject() {
		return Pending{}, fmt.Errorf("events: an event about %s cannot supersede one about %s", d.Subject, p.Env.GetSubject())
	}
	if !p.Latest(tx) {
		return Pending{}, fmt.Errorf("events: event %d of %s is not the latest (%d is)", p.Env.GetSequence(), d.Subject, storage.AggregateSeq(tx, d.Subject))
	}
	env, b, err := envelope(ctx, d, p.Env.GetSequence())
	if err != nil {
		return Pending{}, err
	}
	if err := storage.ReplaceOutbox(tx, p.seq, b); err != nil {
		return Pending{}, fmt.Errorf("events: supersede %s: %w", p.Env.GetId(), err)
	}
	return Pending{Env: env, seq: p.seq}, nil
}

// Latest reports whether p is still the latest event of its subject in tx,
// which Supersede needs: nothing about the subject was appended after it.
func (p Pending) Latest(tx *bbolt.Tx) bool {
	return p.Env != nil && storage.AggregateSeq(tx, p.Env.GetSubject()) == p.Env.GetSequence()
}

func (d Draft) check() error {
	if d.Service == "" || d.Subject == "" || d.Data == nil {
		return fmt.Errorf("events: draft needs a service, a subject and data")
	}
	return nil
}

// envelope builds and encodes the envelope of d with subject sequence seq.
func envelope(ctx context.Context, d Draft, seq uint64) (*eventsv1.Envelope, []byte, error) {
	payload, err := storage.MarshalProto(d.Data)
	if err != nil {
		return nil, nil, fmt.Errorf("events: pack %s: %w", Type(d.Data), err)
	}
	// As anypb.New packs it.
	data := &anypb.Any{TypeUrl: anyTypePrefix + Type(d.Data), Value: payload}
	env := &eventsv1.Envelope{
		Id:            ids.New("evt"),
		Source:        Source(d.Service),
		Type:          Type(d.Data),
		Subject:       d.Subject,
		Time:          timestamppb.New(time.Now().UTC()),
		SpecVersion:   SpecVersion,
		CorrelationId: reqctx.CorrelationID(ctx),
		CausationId:   reqctx.CausationID(ctx),
		Traceparent:   reqctx.Traceparent(ctx),
		Sequence:      seq,
		Region:        d.Region,
		Data:          data,
	}
	b, err := storage.MarshalProto(env)
	if err != nil {
		return nil, nil, fmt.Errorf("events: marshal envelope: %w", err)
	}
	return env, b, nil
}

// Matches reports whether an event type matches a filter list: exact names
// or prefixes ending in "*". An empty list matches every type.
func Matches(filters []string, eventType string) bool {
	if len(filters) == 0 {
		return true
	}
	for _, f := range filters {
		if strings.HasSuffix(f, "*") {
			if strings.HasPrefix(eventType, strings.TrimSuffix(f, "*")) {
				return true
			}
		} else if f == eventType {
			return true
		}
	}
	return false
}
