// Package natsbus carries Millrace events over NATS JetStream. It is the
// events.Bus of mesh mode (millrace serve --nats-url), where services run in
// separate processes and the bus must outlive any one of them.
//
// Every event is one message on a JetStream stream, on the subject
// "<prefix>.<type>" (millrace.events.millrace.events.v1.OrderAccepted with
// the default prefix), carrying the protobuf-encoded envelope. The type in
// the subject lets the server filter for each consumer; the event id in the
// Nats-Msg-Id header lets the server drop a relay's republished duplicate.
//
// Each named consumer is a durable pull consumer. The subscription asks for
// what waits for it, handles it and answers the server before it asks for
// more, and the server lets no more events out to the consumer than one
// batch (MaxAckPending: 1 for Subscribe, the batch size for
// SubscribeBatch), so events are handled in stream order even while some
// are being redelivered: a failing batch holds back that consumer's later
// events and no one else's.
package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	"github.com/millrace/millrace/internal/events"
)

// Defaults of Options.
const (
	DefaultStream          = "MILLRACE_EVENTS"
	DefaultSubjects        = "millrace.events.>"
	DefaultMaxAge          = 7 * 24 * time.Hour
	DefaultDuplicateWindow = 2 * time.Minute
	DefaultAckWait         = 30 * time.Second
	DefaultRetryDelay      = time.Second
	DefaultMaxRetryDelay   = time.Minute
)

// requestTimeout bounds the JetStream API calls the bus makes on its own
// (stream and consumer set-up), which have no caller context to inherit.
const requestTimeout = 10 * time.Second

// Options configure a Bus. The zero value of each field means its default.
type Options struct {
	// Stream is the JetStream stream holding the events (default
	// "MILLRACE_EVENTS").
	Stream string
	// Subjects is the stream's subject space; it must end in ".>"; an
	// event goes to the prefix followed by its type (default
	// "millrace.events.>").
	Subjects string
	// Replicas is the stream's replication factor in a cluster (default 1).
	Replicas int
	// MaxAge is how long the stream keeps an event (default 7 days): how
	// long a consumer may be away and still catch up.
	MaxAge time.Duration
	// DuplicateWindow is how long the server remembers event ids to drop
	// republished duplicates (default 2 minutes, never more than MaxAge).
	// Consumers de-duplicate too; the window only saves them work.
	DuplicateWindow time.Duration
	// AckWait is how long the server waits for a consumer's answer before
	// delivering an event again (default 30s). A handler that runs longer
	// is kept alive with progress notices, so this only matters when a
	// process dies mid-event.
	AckWait time.Duration
	// RetryDelay is the pause before a failed event is delivered again; it
	// doubles with each further failure up to MaxRetryDelay (defaults 1s
	// and 1 minute).
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	// Log receives consumer failures (default slog.Default()).
	Log *slog.Logger
}

func (o *Options) setDefaults() error {
	if o.Stream == "" {
		o.Stream = DefaultStream
	}
	if o.Subjects == "" {
		o.Subjects = DefaultSubjects
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.DuplicateWindow <= 0 {
		o.DuplicateWindow = DefaultDuplicateWindow
	}
	o.DuplicateWindow = min(o.DuplicateWindow, o.MaxAge)
	if o.AckWait <= 0 {
		o.AckWait = DefaultAckWait
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = DefaultRetryDelay
	}
	if o.MaxRetryDelay < o.RetryDelay {
		o.MaxRetryDelay = max(DefaultMaxRetryDelay, o.RetryDelay)
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if !validName(o.Stream) {
		return fmt.Errorf("natsbus: stream name %q: use letters, digits, '-' and '_'", o.Stream)
	}
	prefix, ok := strings.CutSuffix(o.Subjects, ">")
	if !ok || !strings.HasSuffix(prefix, ".") || !validTokens(strings.TrimSuffix(prefix, ".")) {
		return fmt.Errorf("natsbus: subjects %q: want a subject prefix followed by \".>\", such as %q", o.Subjects, DefaultSubjects)
	}
	return nil
}

// Bus is the NATS JetStream implementation of events.Bus.
type Bus struct {
	nc       *nats.Conn
	ownsConn bool
	js       jetstream.JetStream
	opts     Options
	prefix   string // subject prefix of every event, ending in "."
	log      *slog.Logger
	ctx      context.Context // ends at Close, so set-up calls in flight give up
	cancel   context.CancelFunc

	mu     sync.Mutex
	closed bool
	subs   map[string]*subscription // nil value: a Subscribe in progress
}

var _ events.Bus = (*Bus)(nil)

// Connect dials the NATS server at url and returns a bus on the
// connection, which Close then closes. The connection reconnects for as
// long as the process runs: publishing fails while it is down and the
// outbox relay retries, so nothing is lost.
func Connect(ctx context.Context, url string, opts Options) (*Bus, error) {
	nc, err := nats.Connect(url, nats.Name("millrace"), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second))
	if err != nil {
		return nil, fmt.Errorf("natsbus: connect to %s: %w", url, err)
	}
	b, err := New(ctx, nc, opts)
	if err != nil {
		nc.Close()
		return nil, err
	}
	b.ownsConn = true
	return b, nil
}

// New returns a bus on an open connection, which stays the caller's to
// close. It creates the stream, or updates it to opts, before returning, so
// starting any number of processes with the same options is harmless.
func New(ctx context.Context, nc *nats.Conn, opts Options) (*Bus, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsbus: %w", err)
	}
	b := &Bus{
		nc:     nc,
		js:     js,
		opts:   opts,
		prefix: strings.TrimSuffix(opts.Subjects, ">"),
		log:    opts.Log,
		subs:   map[string]*subscription{},
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	if err := b.ensureStream(ctx); err != nil {
		b.cancel()
		return nil, err
	}
	return b, nil
}

func (b *Bus) ensureStream(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	_, err := b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        b.opts.Stream,
		Description: "Millrace events: one protobuf event envelope per message",
		Subjects:    []string{b.opts.Subjects},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Storage:     jetstream.FileStorage,
		Replicas:    b.opts.Replicas,
		MaxAge:      b.opts.MaxAge,
		Duplicates:  b.opts.DuplicateWindow,
	})
	if err != nil {
		return fmt.Errorf("natsbus: create or update stream %s: %w", b.opts.Stream, err)
	}
	return nil
}

// Subject returns the NATS subject events of type typ are published on.
func (b *Bus) Subject(typ string) string { return b.prefix + typ }

// Publish implements events.Bus: it returns once the stream has stored the
// event (or already had it: a duplicate within the window counts as
// stored).
func (b *Bus) Publish(ctx context.Context, env *eventsv1.Envelope) error {
	if b.isClosed() {
		return events.ErrClosed
	}
	if env.GetId() == "" {
		return errors.New("natsbus: an event needs an id")
	}
	if !validTokens(env.GetType()) {
		return fmt.Errorf("natsbus: event %s: type %q cannot be a NATS subject", env.GetId(), env.GetType())
	}
	data, err := proto.Marshal(env)
	if err != nil {
		return fmt.Errorf("natsbus: encode event %s: %w", env.GetId(), err)
	}
	msg := &nats.Msg{Subject: b.Subject(env.GetType()), Data: data, Header: nats.Header{}}
	if _, err := b.js.PublishMsg(ctx, msg, jetstream.WithMsgID(env.GetId()), jetstream.WithExpectStream(b.opts.Stream)); err != nil {
		if b.isClosed() {
			return events.ErrClosed
		}
		return fmt.Errorf("natsbus: publish %s %s: %w", env.GetType(), env.GetId(), err)
	}
	return nil
}

// Subscribe implements events.Bus with a durable pull consumer named name.
// A consumer new to the stream starts with the oldest event the stream
// holds, so events published before a process first subscribed (a relay
// that started first) are not missed; after that it resumes where it left
// off. Type filters become subject filters on the server where NATS
// wildcards can express them (exact names, and prefixes cut at a '.'); the
// rest of a prefix, and servers older than 2.10 that take only one filter
// subject, are handled by checking each event's type on arrival. Changing a
// consumer's filters between runs updates it in place.
func (b *Bus) Subscribe(name string, filters []string, h events.Handler) (events.Subscription, error) {
	if h == nil {
		return b.subscribe(name, filters, 1, nil)
	}
	return b.subscribe(name, filters, 1, events.PerEvent(h))
}

// SubscribeBatch implements events.Bus as Subscribe does, with a consumer
// that lets up to size events be out for handling at once (MaxAckPending):
// each batch is what one pull request without waiting brings, and it is
// acknowledged once the handler returns.
func (b *Bus) SubscribeBatch(name string, filters []string, size int, h events.BatchHandler) (events.Subscription, error) {
	return b.subscribe(name, filters, events.BatchSize(size), h)
}

func (b *Bus) subscribe(name string, filters []string, size int, h events.BatchHandler) (events.Subscription, error) {
	if h == nil || !validName(name) {
		return nil, fmt.Errorf("natsbus: consumer name %q: use letters, digits, '-' and '_', and give a handler", name)
	}
	subjects, err := b.filterSubjects(filters)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	switch _, taken := b.subs[name]; {
	case b.closed:
		b.mu.Unlock()
		return nil, events.ErrClosed
	case taken:
		b.mu.Unlock()
		return nil, fmt.Errorf("%w: %q", events.ErrConsumerExists, name)
	}
	b.subs[name] = nil // reserved while the consumer is set up
	b.mu.Unlock()

	s := &subscription{bus: b, name: name, filters: append([]string(nil), filters...), subjects: subjects, size: size, h: h, done: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(b.ctx)
	err = s.open()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed { // Close came while the consumer was set up
		err = events.ErrClosed
	}
	if err != nil {
		delete(b.subs, name)
		s.cancel()
		return nil, err
	}
	b.subs[name] = s
	go s.run()
	return s, nil
}

// Close implements events.Bus. It stops every subscription, then closes the
// connection if Connect opened it.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	subs := make([]*subscription, 0, len(b.subs))
	for _, s := range b.subs {
		if s != nil {
			subs = append(subs, s)
		}
	}
	b.mu.Unlock()
	b.cancel()
	for _, s := range subs {
		s.Stop()
	}
	if b.ownsConn {
		b.nc.Close()
	}
	return nil
}

// serverAtLeast reports whether the server the bus is connected to is at
// least version major.minor. Consumer features differ across versions, and
// the external servers Millrace meets are not always current.
func (b *Bus) serverAtLeast(major, minor int) bool {
	var maj, mnr int
	if _, err := fmt.Sscanf(b.nc.ConnectedServerVersion(), "%d.%d", &maj, &mnr); err != nil {
		return true // unknown: assume current, the features' own checks remain
	}
	return maj > major || maj == major && mnr >= minor
}

func (b *Bus) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// filterSubjects turns type filters into the subject filters of a
// consumer; nil means the whole stream. NATS wildcards match whole tokens,
// so a prefix such as "millrace.events.v1.Order*" is narrowed on the server
// only to "millrace.events.v1.>", and the subscription checks the rest.
func (b *Bus) filterSubjects(filters []string) ([]string, error) {
	if len(filters) == 0 {
		return nil, nil
	}
	var subjects []string
	for _, f := range filters {
		prefix, isPrefix := strings.CutSuffix(f, "*")
		if !isPrefix {
			if !validTokens(f) {
				return nil, fmt.Errorf("natsbus: filter %q is not an event type or a prefix ending in '*'", f)
			}
			subjects = append(subjects, b.prefix+f)
			continue
		}
		i := strings.LastIndexByte(prefix, '.')
		if i < 0 {
			return nil, nil // no whole token to narrow by: every event
		}
		if !validTokens(prefix[:i]) {
			return nil, fmt.Errorf("natsbus: filter %q is not an event type or a prefix ending in '*'", f)
		}
		subjects = append(subjects, b.prefix+prefix[:i+1]+">")
	}
	// The server refuses overlapping filters, so keep only those no other
	// filter covers.
	var out []string
	for i, s := range subjects {
		covered := false
		for j, w := range subjects {
			if i != j && (covers(w, s) || (s == w && j < i)) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, s)
		}
	}
	return out, nil
}

// covers reports whether the wildcard subject w ("a.b.>") matches every
// subject s matches, s being another subject; only the trailing '>'
// wildcard is ever generated.
func covers(w, s string) bool {
	base, ok := strings.CutSuffix(w, ">")
	return ok && s != w && len(s) > len(base) && strings.HasPrefix(s, base)
}

// validName reports whether s can name a stream or a consumer.
func validName(s string) bool {
	return s != "" && !strings.ContainsAny(s, ">*. /\\\t\r\n")
}

// validTokens reports whether s is a subject of literal tokens: the shape
// of a proto full name, which every event type is.
func validTokens(s string) bool {
	if s == "" {
		return false
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || strings.ContainsAny(tok, "*> \t\r\n") {
			return false
		}
	}
	return true
}
