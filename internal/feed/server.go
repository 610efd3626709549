package feed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	"github.com/millrace/millrace/internal/apierr"
)

// ReasonCursorExpired is the ErrorInfo reason of a cursor older than the
// feed's retention. Its metadata carry the oldest cursor still available
// under "oldest_cursor".
const ReasonCursorExpired = "CURSOR_EXPIRED"

// Server serves the feed as millrace.integration.v1.EventService.
type Server struct {
	integrationv1.UnimplementedEventServiceServer
	log *Log
}

// NewServer returns the EventService of log.
func NewServer(log *Log) *Server { return &Server{log: log} }

// ListEvents implements EventService.ListEvents.
func (s *Server) ListEvents(ctx context.Context, req *integrationv1.ListEventsRequest) (*integrationv1.ListEventsResponse, error) {
	size := int(req.GetPageSize())
	switch {
	case size < 0 || size > MaxPageSize:
		return nil, apierr.Invalid("page_size", fmt.Sprintf("must be between 0 and %d; 0 means %d", MaxPageSize, DefaultPageSize))
	case size == 0:
		size = DefaultPageSize
	}
	page, next, err := s.log.List(ctx, req.GetAfter(), req.GetTypes(), size)
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	return &integrationv1.ListEventsResponse{Events: page, NextCursor: next}, nil
}

// WatchEvents implements EventService.WatchEvents. It ends only when the
// client goes away, the server stops, or the client's cursor expires.
func (s *Server) WatchEvents(req *integrationv1.WatchEventsRequest, stream grpc.ServerStreamingServer[integrationv1.WatchEventsResponse]) error {
	ctx := stream.Context()
	err := s.log.Watch(ctx, req.GetAfter(), req.GetTypes(), func(fe *integrationv1.FeedEvent) error {
		return stream.Send(&integrationv1.WatchEventsResponse{Event: fe})
	})
	if err != nil {
		return toStatus(ctx, err)
	}
	return nil
}

// toStatus maps the feed's errors onto what a client sees; it is the one
// place that decides codes and reasons.
func toStatus(ctx context.Context, err error) error {
	var (
		expired *CursorExpiredError
		cursor  *InvalidCursorError
		typ     *InvalidTypeError
	)
	switch {
	case errors.As(err, &expired):
		return apierr.FailedPrecondition(ReasonCursorExpired,
			fmt.Sprintf("the cursor in after is older than the feed's retention of %s: events after it have been deleted. "+
				"Re-synchronise, then continue from the oldest cursor still available: %s", retentionText(expired.Retention), expired.Oldest),
			map[string]string{"field": "after", "oldest_cursor": expired.Oldest, "retention": expired.Retention.String()})
	case errors.As(err, &cursor):
		return apierr.Invalid("after", cursor.Reason)
	case errors.As(err, &typ):
		return apierr.Invalid(fmt.Sprintf("types[%d]", typ.Index), "must be an event type or a prefix ending in '*'")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	case apierr.IsStatus(err):
		return err // from the stream: the client went away
	}
	slog.ErrorContext(ctx, "event feed failed", "err", err)
	return apierr.Internal()
}
