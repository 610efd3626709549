package webhooks

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/types/known/timestamppb"

	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	"github.com/millrace/millrace/internal/ids"
	"github.com/millrace/millrace/internal/storage"
	"github.com/millrace/millrace/internal/webhooks/verify"
)

// userAgent identifies Millrace to receivers.
const userAgent = "Millrace-Webhooks/1"

// maxResponseBody is how much of a response is read (and discarded) so the
// connection can be reused; a receiver's answer is never stored.
const maxResponseBody = 64 << 10

// storeRetry is how soon a delivery is tried again when the store could not
// be read or written around an attempt.
const storeRetry = 5 * time.Second

// outcome is what an attempt means for its lane.
type outcome struct {
	done    bool      // the delivery left the queue: succeeded, dead, or gone
	next    time.Time // when to attempt it again, while pending
	aborted bool      // shutdown interrupted it; nothing was recorded
}

// result is one HTTP attempt.
type result struct {
	at         time.Time
	latency    time.Duration
	code       int
	ok         bool
	label      string // metrics result
	errText    string // DeliveryAttempt.error
	retryAfter time.Duration
	cancelled  bool // the dispatcher's context ended during the attempt
}

// attempt makes one attempt of a pending delivery and records it.
func (d *Dispatcher) attempt(ctx context.Context, id string) outcome {
	var (
		dl  *delivery
		sub *subscription
	)
	err := d.db.View(func(tx *bbolt.Tx) error {
		var err error
		if dl, err = getDelivery(tx, id); err != nil || dl == nil {
			return err
		}
		sub, err = getSub(tx, dl.pb.GetSubscriptionId())
		return err
	})
	if err != nil {
		d.log.Error("webhook delivery could not be read", "delivery", id, "err", err)
		return outcome{next: time.Now().Add(storeRetry)}
	}
	if dl == nil || sub == nil || dl.pb.GetStatus() != integrationv1.DeliveryStatus_DELIVERY_STATUS_PENDING {
		return outcome{done: true}
	}
	res := d.send(ctx, sub, dl)
	if res.cancelled {
		return outcome{aborted: true}
	}
	d.metrics.attempt(res.label, res.latency)
	if res.ok {
		d.metrics.acked(dl.event.GetType(), time.Since(dl.event.GetTime().AsTime()))
	}
	out, err := d.record(id, res)
	if err != nil {
		d.log.Error("webhook attempt could not be recorded; it will be repeated", "delivery", id, "err", err)
		return outcome{next: time.Now().Add(storeRetry)}
	}
	return out
}

// send makes one signed HTTP request for a delivery.
func (d *Dispatcher) send(ctx context.Context, sub *subscription, dl *delivery) result {
	body, err := cloudEventJSON(dl.event)
	if err != nil {
		d.log.Error("webhook event could not be encoded", "delivery", dl.pb.GetId(), "event", dl.event.GetId(), "err", err)
		return result{at: time.Now(), label: resultError, errText: "the event could not be encoded"}
	}
	now := time.Now()
	secrets, err := d.signingSecrets(sub, now)
	if err != nil {
		d.log.Error("webhook signing secret could not be opened; check the webhook secret key", "subscription", sub.pb.GetId())
		return result{at: now, label: resultError, errText: "the signing secret could not be opened"}
	}
	sig, err := verify.SignAll(secrets, dl.pb.GetId(), now, body)
	if err != nil {
		return result{at: now, label: resultError, errText: "the signing secret is malformed"}
	}
	actx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, sub.pb.GetUrl(), bytes.NewReader(body))
	if err != nil {
		return result{at: now, label: resultError, errText: "the endpoint URL is invalid"}
	}
	h := req.Header
	h.Set("Content-Type", ContentType)
	h.Set("User-Agent", userAgent)
	h.Set(verify.HeaderID, dl.pb.GetId())
	h.Set(verify.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(verify.HeaderSignature, sig)
	if tp := dl.event.GetTraceparent(); tp != "" {
		h.Set("traceparent", tp)
	}
	if cid := dl.event.GetCorrelationId(); cid != "" {
		h.Set("X-Correlation-Id", cid)
	}
	resp, err := d.client.Do(req)
	res := result{at: now, latency: time.Since(now)}
	if err != nil {
		if ctx.Err() != nil {
			res.cancelled = true
		}
		res.label, res.errText = classify(err)
		return res
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
	resp.Body.Close()
	res.code = resp.StatusCode
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		res.ok, res.label = true, resultSuccess
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		res.label, res.errText = resultRedirect, fmt.Sprintf("redirect (HTTP %d) not followed; point the subscription at the final URL", resp.StatusCode)
	case resp.StatusCode == http.StatusTooManyRequests:
		res.label, res.errText = resultRateLimited, "HTTP 429"
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		res.label, res.errText = resultClientError, fmt.Sprintf("HTTP %d", resp.StatusCode)
	default:
		res.label, res.errText = resultServerError, fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
	if !res.ok {
		res.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return res
}

// signingSecrets opens the secrets that sign a delivery now: the current
// one and, during a rotation, the previous one.
func (d *Dispatcher) signingSecrets(s *subscription, now time.Time) ([]string, error) {
	cur, err := open(d.aead, s.pb.GetId(), s.secret)
	if err != nil {
		return nil, err
	}
	out := []string{cur}
	if len(s.prevSecret) > 0 && now.Before(s.prevExpire) {
		prev, err := open(d.aead, s.pb.GetId(), s.prevSecret)
		if err != nil {
			return nil, err
		}
		out = append(out, prev)
	}
	return out, nil
}

// classify names a transport failure for the attempt record and metrics;
// the text never carries more than the address involved.
func classify(err error) (label, text string) {
	var blocked *blockedError
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.As(err, &blocked):
		return resultBlocked, blocked.Error()
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return resultTimeout, "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return resultConnection, "connection refused"
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return resultConnection, "connection reset"
	case errors.As(err, &dnsErr):
		return resultConnection, "host not found"
	case errors.As(err, &certErr) || errors.As(err, &unknownCA) || errors.As(err, &hostErr):
		return resultTLS, "TLS certificate not trusted"
	case errors.As(err, &recordErr) || strings.Contains(err.Error(), "tls:"):
		return resultTLS, "TLS handshake failed"
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		return resultConnection, "host unreachable"
	default:
		return resultError, "request failed"
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// maxRetryAfter bounds a parsed Retry-After before Options.MaxRetryAfter
// caps it, so absurd values cannot overflow.
const maxRetryAfter = 365 * 24 * time.Hour

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(maxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfter)
	}
	return 0
}

// delay is the wait before retry n (1-based): a full-jitter draw from the
// schedule's step, or the receiver's Retry-After when that is longer,
// capped at Options.MaxRetryAfter.
func (d *Dispatcher) delay(n int, retryAfter time.Duration) time.Duration {
	w := d.jitter(d.schedule[n-1])
	return max(w, min(retryAfter, d.maxDelay))
}

// record writes an attempt's result: success, a retry, or a dead letter,
// and the subscription's health; it may disable the subscription. It runs
// in a shared Batch transaction, so it only reports through out.
func (d *Dispatcher) record(id string, r result) (out outcome, err error) {
	var deadID, disabledSub string
	err = d.db.Batch(func(tx *bbolt.Tx) error {
		out, deadID, disabledSub = outcome{}, "", ""
		dl, err := getDelivery(tx, id)
		if err != nil {
			return err
		}
		if dl == nil || dl.pb.GetStatus() != integrationv1.DeliveryStatus_DELIVERY_STATUS_PENDING {
			out.done = true
			return nil
		}
		sub, err := getSub(tx, dl.pb.GetSubscriptionId())
		if err != nil {
			return err
		}
		if sub == nil {
			out.done = true
			return nil
		}
		now := time.Now()
		dl.pb.Attempts = append(dl.pb.Attempts, &integrationv1.DeliveryAttempt{
			Time:       timestamppb.New(r.at.UTC()),
			StatusCode: int32(r.code),
			LatencyMs:  r.latency.Milliseconds(),
			Error:      r.errText,
		})
		if r.ok {
			if err := setStatus(tx, dl, integrationv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED); err != nil {
				return err
			}
			dl.pb.NextAttemptTime = nil
			sub.pb.Backlog--
			sub.pb.LastSuccessTime = timestamppb.New(now.UTC())
			sub.pb.ConsecutiveFailures = 0
			sub.failingSince = time.Time{}
			out.done = true
		} else {
			sub.pb.ConsecutiveFailures++
			if sub.failingSince.IsZero() {
				sub.failingSince = r.at
			}
			if sub.pb.GetStatus() == integrationv1.SubscriptionStatus_SUBSCRIPTION_STATUS_ACTIVE && now.Sub(sub.failingSince) >= d.opts.DisableAfter {
				sub.pb.Status = integrationv1.SubscriptionStatus_SUBSCRIPTION_STATUS_DISABLED
				disabledSub = sub.pb.GetId()
			}
			if n := len(dl.pb.GetAttempts()) - dl.series; n > len(d.schedule) {
				if deadID, err = bury(tx, dl, sub, now); err != nil {
					return err
				}
				out.done = true
			} else {
				next := r.at.Add(d.delay(n, r.retryAfter))
				dl.pb.NextAttemptTime = timestamppb.New(next.UTC())
				out.next = next
			}
		}
		if err := putDelivery(tx, dl); err != nil {
			return err
		}
		return putSub(tx, sub)
	})
	if err != nil {
		return outcome{}, err
	}
	if deadID != "" {
		d.metrics.deadLettered()
		d.log.Warn("webhook delivery exhausted its retries; it is a dead letter now", "delivery", id, "dead_letter", deadID, "last_error", r.errText, "status_code", r.code)
	}
	if disabledSub != "" {
		d.metrics.autoDisabled()
		d.log.Warn("webhook subscription disabled: it failed without a success for the disable window; its events are kept",
			"subscription", disabledSub, "disable_after", d.opts.DisableAfter)
	}
	return out, nil
}

// bury turns a pending delivery into a dead letter.
func bury(tx *bbolt.Tx, dl *delivery, sub *subscription, now time.Time) (string, error) {
	if err := setStatus(tx, dl, integrationv1.DeliveryStatus_DELIVERY_STATUS_DEAD); err != nil {
		return "", err
	}
	dl.pb.NextAttemptTime = nil
	sub.pb.Backlog--
	id := ids.New("dlt")
	dl.deadLetter = id
	rec := &integrationv1.DeadLetter{
		Id:         id,
		Delivery:   &integrationv1.Delivery{Id: dl.pb.GetId(), SubscriptionId: dl.pb.GetSubscriptionId()},
		CreateTime: timestamppb.New(now.UTC()),
	}
	b, err := storage.MarshalProto(rec)
	if err != nil {
		return "", err
	}
	if err := tx.Bucket(bucketDeadLetters).Put([]byte(id), b); err != nil {
		return "", err
	}
	return id, tx.Bucket(bucketDeadBySub).Put(storage.KeyStrings(dl.pb.GetSubscriptionId(), id), nil)
}
