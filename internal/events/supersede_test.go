package events_test

import (
	"context"
	"strings"
	"testing"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/reqctx"
	"github.com/millrace/millrace/internal/storage"
)

func statusDraft(subject, status string) events.Draft {
	to := orderv1.OrderStatus(orderv1.OrderStatus_value["ORDER_STATUS_"+status])
	return events.Draft{Service: "order", Subject: subject, Data: &eventsv1.OrderStatusChanged{OrderId: subject, ToStatus: to}}
}

// outboxEvents decodes what the outbox holds, in commit order.
func outboxEvents(t *testing.T, db *storage.DB) []*eventsv1.Envelope {
	t.Helper()
	var out []*eventsv1.Envelope
	err := db.View(func(tx *bbolt.Tx) error {
		recs, err := storage.ReadOutbox(tx, 0)
		for _, r := range recs {
			env := &eventsv1.Envelope{}
			if err := proto.Unmarshal(r.Data, env); err != nil {
				return err
			}
			out = append(out, env)
		}
		if n := storage.OutboxLen(tx); n != len(recs) {
			t.Errorf("outbox counts %d pending, holds %d", n, len(recs))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func status(t *testing.T, env *eventsv1.Envelope) string {
	t.Helper()
	m := &eventsv1.OrderStatusChanged{}
	if err := env.GetData().UnmarshalTo(m); err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(m.GetToStatus().String(), "ORDER_STATUS_")
}

func TestSupersedeReplacesThePendingEventInPlace(t *testing.T) {
	db := openStore(t)
	first := reqctx.WithCorrelationID(context.Background(), "corr-first")
	last := reqctx.WithCorrelationID(context.Background(), "corr-last")
	var replaced, kept events.Pending
	err := db.Update(func(tx *bbolt.Tx) error {
		p, err := events.AppendPending(first, tx, statusDraft("order/1", "PENDING"))
		if err != nil {
			return err
		}
		// Another aggregate's event in between keeps its place.
		if kept, err = events.AppendPending(first, tx, statusDraft("order/2", "PENDING")); err != nil {
			return err
		}
		replaced = p
		p, err = events.Supersede(last, tx, p, statusDraft("order/1", "ACCEPTED"))
		if err != nil {
			return err
		}
		// And it can be superseded again.
		_, err = events.Supersede(last, tx, p, statusDraft("order/1", "SHIPPED"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	got := outboxEvents(t, db)
	if len(got) != 2 {
		t.Fatalf("outbox holds %d events, want 2", len(got))
	}
	if got[0].GetSubject() != "order/1" || status(t, got[0]) != "SHIPPED" || got[0].GetSequence() != 1 {
		t.Errorf("first event %v, want order/1 SHIPPED as sequence 1", got[0])
	}
	if got[0].GetId() == replaced.Env.GetId() || got[0].GetCorrelationId() != "corr-last" {
		t.Errorf("superseding event has id %s and correlation %s, want a new id and corr-last", got[0].GetId(), got[0].GetCorrelationId())
	}
	if !proto.Equal(got[1], kept.Env) {
		t.Errorf("the other aggregate's event changed: %v, want %v", got[1], kept.Env)
	}
	// The subject's next event follows without a gap.
	next := appendEvents(t, db, "order/1", 1)
	if len(next) != 1 || next[0].GetSequence() != 2 {
		t.Errorf("next event of order/1: %v, want sequence 2", next)
	}
}

func TestSupersedeRefusesWhatWouldReorderOrMislabel(t *testing.T) {
	tests := []struct {
		name string
		run  func(tx *bbolt.Tx) error
		want string
	}{
		{"an event of the subject came after", func(tx *bbolt.Tx) error {
			p, err := events.AppendPending(context.Background(), tx, statusDraft("order/1", "PENDING"))
			if err != nil {
				return err
			}
			if _, err := events.Append(context.Background(), tx, statusDraft("order/1", "ON_HOLD")); err != nil {
				return err
			}
			_, err = events.Supersede(context.Background(), tx, p, statusDraft("order/1", "ACCEPTED"))
			return err
		}, "not the latest"},
		{"another subject", func(tx *bbolt.Tx) error {
			p, err := events.AppendPending(context.Background(), tx, statusDraft("order/1", "PENDING"))
			if err != nil {
				return err
			}
			_, err = events.Supersede(context.Background(), tx, p, statusDraft("order/2", "ACCEPTED"))
			return err
		}, "cannot supersede"},
		{"nothing appended", func(tx *bbolt.Tx) error {
			_, err := events.Supersede(context.Background(), tx, events.Pending{}, statusDraft("order/1", "ACCEPTED"))
			return err
		}, "nothing to supersede"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openStore(t)
			var refused error
			err := db.Update(func(tx *bbolt.Tx) error {
				refused = tt.run(tx)
				return nil // commit what was appended, to see it unchanged
			})
			if err != nil {
				t.Fatal(err)
			}
			if refused == nil || !strings.Contains(refused.Error(), tt.want) {
				t.Fatalf("Supersede = %v, want an error saying %q", refused, tt.want)
			}
			for _, env := range outboxEvents(t, db) {
				if status(t, env) == "ACCEPTED" {
					t.Errorf("a refused Supersede wrote %v", env)
				}
			}
		})
	}
}
