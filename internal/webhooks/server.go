package webhooks

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	"github.com/millrace/millrace/internal/apierr"
)

// Server implements integrationv1.SubscriptionServiceServer over a
// Dispatcher. Field rules in the proto are checked by the platform before a
// handler runs; the Dispatcher checks them again along with the rules that
// need state or the network (the URL policy).
type Server struct {
	integrationv1.UnimplementedSubscriptionServiceServer
	d *Dispatcher
}

// NewServer returns the SubscriptionService of d.
func NewServer(d *Dispatcher) *Server { return &Server{d: d} }

// ReasonReplayUnavailable is the ErrorInfo reason of ReplaySubscription in
// a process without the event feed.
const ReasonReplayUnavailable = "REPLAY_UNAVAILABLE"

// toStatus maps the Dispatcher's errors to gRPC. Anything unexpected is
// logged and answered as INTERNAL without its details.
func (s *Server) toStatus(op string, err error) error {
	var fe *FieldError
	var nf *NotFoundError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &fe):
		return apierr.Invalid(fe.Field, fe.Description)
	case errors.As(err, &nf):
		return apierr.NotFound(nf.Kind, nf.ID)
	case errors.Is(err, ErrNoEventSource):
		return apierr.FailedPrecondition(ReasonReplayUnavailable, "replaying a time range needs the event feed, which this process does not run", nil)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	default:
		s.d.log.Error("webhook request failed", "op", op, "err", err)
		return apierr.Internal()
	}
}

// CreateSubscription implements integrationv1.SubscriptionServiceServer.
func (s *Server) CreateSubscription(ctx context.Context, req *integrationv1.CreateSubscriptionRequest) (*integrationv1.CreateSubscriptionResponse, error) {
	if req.GetSubscription() == nil {
		return nil, apierr.Invalid("subscription", "is required")
	}
	sub, secret, err := s.d.CreateSubscription(ctx, req.GetSubscription())
	if err != nil {
		return nil, s.toStatus("create subscription", err)
	}
	return &integrationv1.CreateSubscriptionResponse{Subscription: sub, Secret: secret}, nil
}

// GetSubscription implements integrationv1.SubscriptionServiceServer.
func (s *Server) GetSubscription(ctx context.Context, req *integrationv1.GetSubscriptionRequest) (*integrationv1.GetSubscriptionResponse, error) {
	sub, err := s.d.GetSubscription(ctx, req.GetId())
	if err != nil {
		return nil, s.toStatus("get subscription", err)
	}
	return &integrationv1.GetSubscriptionResponse{Subscription: sub}, nil
}

// ListSubscriptions implements integrationv1.SubscriptionServiceServer.
func (s *Server) ListSubscriptions(ctx context.Context, req *integrationv1.ListSubscriptionsRequest) (*integrationv1.ListSubscriptionsResponse, error) {
	subs, next, err := s.d.ListSubscriptions(ctx, int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, s.toStatus("list subscriptions", err)
	}
	return &integrationv1.ListSubscriptionsResponse{Subscriptions: subs, NextPageToken: next}, nil
}

// UpdateSubscription implements integrationv1.SubscriptionServiceServer.
func (s *Server) UpdateSubscription(ctx context.Context, req *integrationv1.UpdateSubscriptionRequest) (*integrationv1.UpdateSubscriptionResponse, error) {
	if req.GetSubscription() == nil {
		return nil, apierr.Invalid("subscription", "is required")
	}
	sub, err := s.d.UpdateSubscription(ctx, req.GetSubscription())
	if err != nil {
		return nil, s.toStatus("update subscription", err)
	}
	return &integrationv1.UpdateSubscriptionResponse{Subscription: sub}, nil
}

// DeleteSubscription implements integrationv1.SubscriptionServiceServer.
func (s *Server) DeleteSubscription(ctx context.Context, req *integrationv1.DeleteSubscriptionRequest) (*integrationv1.DeleteSubscriptionResponse, error) {
	if err := s.d.DeleteSubscription(ctx, req.GetId()); err != nil {
		return nil, s.toStatus("delete subscription", err)
	}
	return &integrationv1.DeleteSubscriptionResponse{}, nil
}

// RotateSubscriptionSecret implements integrationv1.SubscriptionServiceServer.
func (s *Server) RotateSubscriptionSecret(ctx context.Context, req *integrationv1.RotateSubscriptionSecretRequest) (*integrationv1.RotateSubscriptionSecretResponse, error) {
	secret, expire, err := s.d.RotateSecret(ctx, req.GetId())
	if err != nil {
		return nil, s.toStatus("rotate subscription secret", err)
	}
	return &integrationv1.RotateSubscriptionSecretResponse{Secret: secret, PreviousSecretExpireTime: timestamppb.New(expire)}, nil
}

// SendTestEvent implements integrationv1.SubscriptionServiceServer.
func (s *Server) SendTestEvent(ctx context.Context, req *integrationv1.SendTestEventRequest) (*integrationv1.SendTestEventResponse, error) {
	dl, err := s.d.SendTestEvent(ctx, req.GetId())
	if err != nil {
		return nil, s.toStatus("send test event", err)
	}
	return &integrationv1.SendTestEventResponse{Delivery: dl}, nil
}

// ListDeliveries implements integrationv1.SubscriptionServiceServer.
func (s *Server) ListDeliveries(ctx context.Context, req *integrationv1.ListDeliveriesRequest) (*integrationv1.ListDeliveriesResponse, error) {
	dls, next, err := s.d.ListDeliveries(ctx, req.GetSubscriptionId(), req.GetStatus(), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, s.toStatus("list deliveries", err)
	}
	return &integrationv1.ListDeliveriesResponse{Deliveries: dls, NextPageToken: next}, nil
}

// ReplaySubscription implements integrationv1.SubscriptionServiceServer.
func (s *Server) ReplaySubscription(ctx context.Context, req *integrationv1.ReplaySubscriptionRequest) (*integrationv1.ReplaySubscriptionResponse, error) {
	if req.GetStartTime() == nil {
		return nil, apierr.Invalid("start_time", "is required")
	}
	var end time.Time
	if req.GetEndTime() != nil {
		end = req.GetEndTime().AsTime()
	}
	n, err := s.d.ReplaySubscription(ctx, req.GetId(), req.GetStartTime().AsTime(), end)
	if err != nil {
		return nil, s.toStatus("replay subscription", err)
	}
	return &integrationv1.ReplaySubscriptionResponse{Queued: n}, nil
}

// ListDeadLetters implements integrationv1.SubscriptionServiceServer.
func (s *Server) ListDeadLetters(ctx context.Context, req *integrationv1.ListDeadLettersRequest) (*integrationv1.ListDeadLettersResponse, error) {
	dlts, next, err := s.d.ListDeadLetters(ctx, req.GetSubscriptionId(), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, s.toStatus("list dead letters", err)
	}
	return &integrationv1.ListDeadLettersResponse{DeadLetters: dlts, NextPageToken: next}, nil
}

// ReplayDeadLetter implements integrationv1.SubscriptionServiceServer.
func (s *Server) ReplayDeadLetter(ctx context.Context, req *integrationv1.ReplayDeadLetterRequest) (*integrationv1.ReplayDeadLetterResponse, error) {
	dl, err := s.d.ReplayDeadLetter(ctx, req.GetId())
	if err != nil {
		return nil, s.toStatus("replay dead letter", err)
	}
	return &integrationv1.ReplayDeadLetterResponse{Delivery: dl}, nil
}

// BatchReplayDeadLetters implements integrationv1.SubscriptionServiceServer.
func (s *Server) BatchReplayDeadLetters(ctx context.Context, req *integrationv1.BatchReplayDeadLettersRequest) (*integrationv1.BatchReplayDeadLettersResponse, error) {
	if n := len(req.GetIds()); n == 0 || n > 1000 {
		return nil, apierr.Invalid("ids", "must list 1 to 1,000 dead letters")
	}
	n, notFound, err := s.d.ReplayDeadLetters(ctx, req.GetIds())
	if err != nil {
		return nil, s.toStatus("replay dead letters", err)
	}
	return &integrationv1.BatchReplayDeadLettersResponse{Queued: n, NotFoundIds: notFound}, nil
}
