package app

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/events/bustest"
	"github.com/millrace/millrace/internal/ids"
)

func TestHandledBusContract(t *testing.T) {
	old := events.RetryPause
	events.RetryPause = 20 * time.Millisecond
	defer func() { events.RetryPause = old }()
	bustest.Run(t, func(*testing.T) events.Bus { return newHandledBus(events.NewLocalBus(), 200*time.Millisecond) })
}

// TestHandledBusWaitsForConsumers checks what the outbox relay relies on:
// Publish returns only once every consumer the event is for has handled it,
// so an event the relay deletes from the outbox is in every consumer's
// store, and a consumer that stops or a publisher that gives up leaves the
// event unpublished.
func TestHandledBusWaitsForConsumers(t *testing.T) {
	ev := func(typ string) *eventsv1.Envelope {
		return &eventsv1.Envelope{Id: ids.New("evt"), Type: typ, Subject: "orders/1", SpecVersion: events.SpecVersion}
	}
	publish := func(b events.Bus, env *eventsv1.Envelope, timeout time.Duration) <-chan error {
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			done <- b.Publish(ctx, env)
		}()
		return done
	}
	returnsWithin := func(t *testing.T, done <-chan error, d time.Duration) error {
		t.Helper()
		select {
		case err := <-done:
			return err
		case <-time.After(d):
			t.Fatalf("Publish still waiting after %v", d)
			return nil
		}
	}
	stillWaiting := func(t *testing.T, done <-chan error) {
		t.Helper()
		select {
		case err := <-done:
			t.Fatalf("Publish returned (%v) before the consumers handled the event", err)
		case <-time.After(100 * time.Millisecond):
		}
	}

	t.Run("waits for every matching consumer, not for the others", func(t *testing.T) {
		b := newHandledBus(events.NewLocalBus(), 10*time.Second)
		defer b.Close()
		release := make(chan struct{})
		var fast, slow, other atomic.Int32
		for name, h := range map[string]events.Handler{
			"fast": func(context.Context, *eventsv1.Envelope) error { fast.Add(1); return nil },
			"slow": func(ctx context.Context, _ *eventsv1.Envelope) error {
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
				slow.Add(1)
				return nil
			},
		} {
			if _, err := b.Subscribe(name, nil, h); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := b.Subscribe("other", []string{"x.v1.Other"}, func(ctx context.Context, _ *eventsv1.Envelope) error {
			other.Add(1)
			<-ctx.Done() // answers only when stopped: Publish must not wait for it
			return ctx.Err()
		}); err != nil {
			t.Fatal(err)
		}
		done := publish(b, ev("x.v1.OrderAccepted"), 10*time.Second)
		stillWaiting(t, done)
		close(release)
		if err := returnsWithin(t, done, 5*time.Second); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		if fast.Load() != 1 || slow.Load() != 1 || other.Load() != 0 {
			t.Fatalf("handled by fast %d, slow %d, other %d; want 1, 1, 0", fast.Load(), slow.Load(), other.Load())
		}
	})

	t.Run("a failing consumer does not hold the publisher back", func(t *testing.T) {
		old := events.RetryPause
		events.RetryPause = 10 * time.Millisecond
		defer func() { events.RetryPause = old }()
		b := newHandledBus(events.NewLocalBus(), 10*time.Second)
		defer b.Close()
		var calls atomic.Int32
		if _, err := b.Subscribe("flaky", nil, func(context.Context, *eventsv1.Envelope) error {
			if calls.Add(1) < 3 {
				return errors.New("disk hiccup")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		var healthy atomic.Int32
		if _, err := b.Subscribe("healthy", nil, func(context.Context, *eventsv1.Envelope) error { healthy.Add(1); return nil }); err != nil {
			t.Fatal(err)
		}
		if err := returnsWithin(t, publish(b, ev("x.v1.OrderAccepted"), 10*time.Second), 5*time.Second); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		if healthy.Load() != 1 {
			t.Fatalf("Publish returned before the healthy consumer handled the event")
		}
		// The in-process bus still retries the failed event.
		for deadline := time.Now().Add(5 * time.Second); calls.Load() < 3; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("handler called %d times, want 3", calls.Load())
			}
		}
		// Recovered, it is waited for again.
		release := make(chan struct{})
		var slowCalls atomic.Int32
		if _, err := b.Subscribe("slow", nil, func(ctx context.Context, _ *eventsv1.Envelope) error {
			slowCalls.Add(1)
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}); err != nil {
			t.Fatal(err)
		}
		done := publish(b, ev("x.v1.OrderAccepted"), 10*time.Second)
		stillWaiting(t, done)
		close(release)
		if err := returnsWithin(t, done, 5*time.Second); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	})

	t.Run("a batch handled answers the publisher of every event in it", func(t *testing.T) {
		b := newHandledBus(events.NewLocalBus(), 10*time.Second)
		defer b.Close()
		release := make(chan struct{})
		var (
			mu    sync.Mutex
			sizes []int
		)
		if _, err := b.SubscribeBatch("batched", nil, 0, func(ctx context.Context, envs []*eventsv1.Envelope) error {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
			mu.Lock()
			sizes = append(sizes, len(envs))
			mu.Unlock()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		first := publish(b, ev("x.v1.OrderAccepted"), 10*time.Second)
		stillWaiting(t, first)
		// Two more queue up behind the batch being handled.
		second, third := publish(b, ev("x.v1.OrderHeld"), 10*time.Second), publish(b, ev("x.v1.OrderReleased"), 10*time.Second)
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			b.mu.Lock()
			n := len(b.waits)
			b.mu.Unlock()
			if n == 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d publishers waiting, want 3", n)
			}
		}
		close(release)
		for _, done := range []<-chan error{first, second, third} {
			if err := returnsWithin(t, done, 5*time.Second); err != nil {
				t.Fatalf("Publish: %v", err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(sizes, []int{1, 2}) {
			t.Errorf("batch sizes %v, want the first event alone and the two queued behind it together", sizes)
		}
	})

	t.Run("a run published at once reaches a batch consumer in one wait", func(t *testing.T) {
		b := newHandledBus(events.NewLocalBus(), 10*time.Second)
		defer b.Close()
		var (
			mu    sync.Mutex
			sizes []int
			got   []string
		)
		if _, err := b.SubscribeBatch("batched", nil, 0, func(_ context.Context, envs []*eventsv1.Envelope) error {
			mu.Lock()
			defer mu.Unlock()
			sizes = append(sizes, len(envs))
			for _, env := range envs {
				got = append(got, env.GetId())
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		var run []*eventsv1.Envelope
		var want []string
		for range 10 {
			run = append(run, ev("x.v1.OrderAccepted"))
			want = append(want, run[len(run)-1].GetId())
		}
		if n, err := b.PublishBatch(t.Context(), run); n != len(run) || err != nil {
			t.Fatalf("PublishBatch = %d, %v; want all %d", n, err, len(run))
		}
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(got, want) {
			t.Fatalf("PublishBatch returned with the consumer holding %q, want every event in order %q", got, want)
		}
		// The consumer may take the first event before the others are
		// queued; its answer then waits for the rest to be queued.
		if len(sizes) > 2 {
			t.Errorf("batch sizes %v, want the run in one or two batches", sizes)
		}
	})

	t.Run("a run whose publisher gives up counts the events handled before", func(t *testing.T) {
		b := newHandledBus(events.NewLocalBus(), 10*time.Second)
		defer b.Close()
		var run []*eventsv1.Envelope
		for range 6 {
			run = append(run, ev("x.v1.OrderAccepted"))
		}
		stuck := run[3].GetId()
		if _, err := b.Subscribe("stuck-at-4", nil, func(ctx context.Context, env *eventsv1.Envelope) error {
			if env.GetId() == stuck {
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		if n, err := b.PublishBatch(ctx, run); n != 3 || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("PublishBatch = %d, %v; want the 3 events before the unanswered one and the deadline", n, err)
		}
		b.mu.Lock()
		n := len(b.waits)
		b.mu.Unlock()
		if n != 0 {
			t.Fatalf("%d waits left behind", n)
		}
	})

	t.Run("a consumer that does not answer is waited for at most the slow bound", func(t *testing.T) {
		b := newHandledBus(events.NewLocalBus(), 200*time.Millisecond)
		defer b.Close()
		if _, err := b.Subscribe("hung", nil, func(ctx context.Context, _ *eventsv1.Envelope) error {
			<-ctx.Done()
			return ctx.Err()
		}); err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		if err := returnsWithin(t, publish(b, ev("x.v1.OrderAccepted"), 10*time.Second), 5*time.Second); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		if waited := time.Since(began); waited < 200*time.Millisecond {
			t.Fatalf("Publish returned after %v, before the bound", waited)
		}
	})

	t.Run("a publisher that gives up gets its context's error", func(t *testing.T) {
		b := newHandledBus(events.NewLocalBus(), 10*time.Second)
		defer b.Close()
		if _, err := b.Subscribe("stuck", nil, func(ctx context.Context, _ *eventsv1.Envelope) error {
			<-ctx.Done()
			return ctx.Err()
		}); err != nil {
			t.Fatal(err)
		}
		if err := returnsWithin(t, publish(b, ev("x.v1.OrderAccepted"), 100*time.Millisecond), 5*time.Second); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Publish: %v, want the deadline", err)
		}
		b.mu.Lock()
		n := len(b.waits)
		b.mu.Unlock()
		if n != 0 {
			t.Fatalf("%d waits left behind", n)
		}
	})

	t.Run("a consumer that stops fails the publishers waiting for it", func(t *testing.T) {
		b := newHandledBus(events.NewLocalBus(), 10*time.Second)
		defer b.Close()
		sub, err := b.Subscribe("stuck", nil, func(ctx context.Context, _ *eventsv1.Envelope) error {
			<-ctx.Done()
			return ctx.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
		done := publish(b, ev("x.v1.OrderAccepted"), 10*time.Second)
		stillWaiting(t, done)
		sub.Stop()
		if err := returnsWithin(t, done, 5*time.Second); !errors.Is(err, errConsumerStopped) {
			t.Fatalf("Publish: %v, want errConsumerStopped", err)
		}
		// With no consumer left there is nothing to wait for.
		if err := returnsWithin(t, publish(b, ev("x.v1.OrderAccepted"), 10*time.Second), 5*time.Second); err != nil {
			t.Fatalf("Publish without consumers: %v", err)
		}
	})

	t.Run("Close fails the waiting publishers", func(t *testing.T) {
		b := newHandledBus(events.NewLocalBus(), 10*time.Second)
		if _, err := b.Subscribe("stuck", nil, func(ctx context.Context, _ *eventsv1.Envelope) error {
			<-ctx.Done()
			return ctx.Err()
		}); err != nil {
			t.Fatal(err)
		}
		done := publish(b, ev("x.v1.OrderAccepted"), 10*time.Second)
		stillWaiting(t, done)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if err := returnsWithin(t, done, 5*time.Second); err == nil {
			t.Fatal("Publish succeeded although the bus closed before the consumer handled the event")
		}
	})
}
