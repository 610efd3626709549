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
}

// Append builds the envelope of d from the request context (correlation id,
// traceparent, causation id), gives it the next sequence number of its
// subject, and writes it to the outbox in tx. The event becomes visible to
// the relay only if tx commits.
func Append(ctx context.Context, tx *bbolt.Tx, d Draft) (*eventsv1.Envelope, error) {
	if d.Service == "" || d.Subject == "" || d.Data == nil {
		return nil, fmt.Errorf("events: draft needs a service, a subject and data")
	}
	seq, err := storage.NextAggregateSeq(tx, d.Subject)
	if err != nil {
		return nil, fmt.Errorf("events: sequence for %s: %w", d.Subject, err)
	}
	payload, err := storage.MarshalProto(d.Data)
	if err != nil {
		return nil, fmt.Errorf("events: pack %s: %w", Type(d.Data), err)
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
		return nil, fmt.Errorf("events: marshal envelope: %w", err)
	}
	if _, err := storage.AppendOutbox(tx, b); err != nil {
		return nil, fmt.Errorf("events: append to outbox: %w", err)
	}
	return env, nil
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
