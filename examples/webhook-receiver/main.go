// Command webhook-receiver is an example of the CRM side of Millrace
// webhooks: it verifies each request's Standard Webhooks signature,
// de-duplicates by webhook-id, drops stale updates by the per-subject
// sequence, and acknowledges with 204.
//
// Run it, then create a subscription pointing at it and put the secret
// Millrace returned in the environment:
//
//	WEBHOOK_SECRET=whsec_... go run ./examples/webhook-receiver -addr :8090
//
// While a secret is being rotated, set WEBHOOK_PREVIOUS_SECRET to the old
// one: Millrace signs with both for 24 hours, and either one verifies.
//
// What a production receiver must do differently is marked "In production".
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/millrace/millrace/internal/webhooks/verify"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "webhook-receiver:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", ":8090", "address to listen on")
	path := flag.String("path", "/hooks/millrace", "path Millrace posts to")
	flag.Parse()
	secrets := []string{os.Getenv("WEBHOOK_SECRET")}
	if prev := os.Getenv("WEBHOOK_PREVIOUS_SECRET"); prev != "" {
		secrets = append(secrets, prev)
	}
	if secrets[0] == "" {
		return errors.New("set WEBHOOK_SECRET to the subscription's signing secret (whsec_...)")
	}
	for _, s := range secrets {
		if _, err := verify.DecodeSecret(s); err != nil {
			return fmt.Errorf("a configured secret is not a whsec_ secret: %w", err)
		}
	}
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	h := &Receiver{Secrets: secrets, Apply: func(_ context.Context, ev Event) error {
		// In production: update the CRM record in the same transaction
		// that records ev.WebhookID as processed.
		log.Info("applied", "type", ev.Type, "subject", ev.Subject, "sequence", ev.Sequence, "id", ev.ID, "data", string(ev.Data))
		return nil
	}, Log: log}
	mux := http.NewServeMux()
	mux.Handle("POST "+*path, h)
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("listening", "addr", *addr, "path", *path)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}

// Event is what the receiver applies: the CloudEvent Millrace sent.
type Event struct {
	WebhookID string          `json:"-"`
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Source    string          `json:"source"`
	Subject   string          `json:"subject"`
	Time      time.Time       `json:"time"`
	Sequence  uint64          `json:"sequence"`
	Data      json.RawMessage `json:"data"`
}

// maxBody bounds a request body; Millrace events are far smaller.
const maxBody = 1 << 20

// Receiver verifies, de-duplicates and applies webhooks.
type Receiver struct {
	Secrets []string
	Apply   func(context.Context, Event) error
	Log     *slog.Logger
	Now     func() time.Time // for tests; time.Now when nil

	mu      sync.Mutex
	state   map[string]bool   // webhook-id → done (true) or being applied (false)
	lastSeq map[string]uint64 // subject → last sequence applied
}

// ServeHTTP implements http.Handler.
//
// Answers: 204 once applied (or already applied: a retry after a lost
// answer), 401 for a bad signature or stale timestamp (Millrace retries, so
// a clock or secret fixed in time still gets the event), 409 while the same
// webhook-id is being applied by another request, 500 when applying failed
// (Millrace retries later).
func (h *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	if h.Now != nil {
		now = h.Now()
	}
	// Verify the exact bytes received, before any parsing.
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		http.Error(w, "body too large or unreadable", http.StatusRequestEntityTooLarge)
		return
	}
	if err := verify.Verify(h.Secrets, r.Header, body, now, verify.DefaultTolerance); err != nil {
		h.Log.Warn("refused a webhook", "reason", err, "webhook_id", r.Header.Get(verify.HeaderID))
		http.Error(w, "invalid signature", http.StatusUnauthorized)
		return
	}
	id := r.Header.Get(verify.HeaderID)
	var ev Event
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, "body is not a CloudEvent", http.StatusBadRequest)
		return
	}
	ev.WebhookID = id

	// In production: keep webhook-ids in the CRM's database, for longer
	// than Millrace keeps dead letters (a replayed dead letter has its
	// original webhook-id), not in memory.
	h.mu.Lock()
	if h.state == nil {
		h.state, h.lastSeq = map[string]bool{}, map[string]uint64{}
	}
	done, seen := h.state[id]
	switch {
	case seen && done:
		h.mu.Unlock()
		w.WriteHeader(http.StatusNoContent) // a duplicate: acknowledge, do nothing
		return
	case seen:
		h.mu.Unlock()
		http.Error(w, "already being applied", http.StatusConflict)
		return
	}
	stale := ev.Subject != "" && ev.Sequence != 0 && ev.Sequence <= h.lastSeq[ev.Subject]
	h.state[id] = false
	h.mu.Unlock()

	if stale {
		// An older update of an aggregate than one already applied (a
		// replay): acknowledge without going back in time.
		h.finish(id, ev, true)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if err := h.Apply(r.Context(), ev); err != nil {
		h.mu.Lock()
		delete(h.state, id) // let Millrace's retry apply it
		h.mu.Unlock()
		h.Log.Error("could not apply a webhook", "webhook_id", id, "err", err)
		http.Error(w, "could not apply", http.StatusInternalServerError)
		return
	}
	h.finish(id, ev, false)
	w.WriteHeader(http.StatusNoContent)
}

func (h *Receiver) finish(id string, ev Event, stale bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.state[id] = true
	if !stale && ev.Subject != "" {
		h.lastSeq[ev.Subject] = max(h.lastSeq[ev.Subject], ev.Sequence)
	}
}
