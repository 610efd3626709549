// Package verify signs and verifies webhooks per the Standard Webhooks
// specification (https://www.standardwebhooks.com): the signed content is
// "<webhook-id>.<webhook-timestamp>.<body>", signed with HMAC-SHA256 under
// the decoded bytes of a "whsec_<base64>" secret, and sent as
// "webhook-signature: v1,<base64>" (several space-separated signatures while
// a secret is being rotated).
//
// Millrace signs with Sign; a receiver verifies with Verify. The package has
// no Millrace dependencies so a receiver can copy it as is.
package verify

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names of the Standard Webhooks specification.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every Standard Webhooks secret.
const SecretPrefix = "whsec_"

// DefaultTolerance is how far a webhook-timestamp may be from the receiver's
// clock, in either direction, before the message is refused as a replay (or
// as coming from a badly skewed clock).
const DefaultTolerance = 5 * time.Minute

// Errors Verify returns. They are distinct so a receiver can log why it
// refused a message; the HTTP answer should be the same 4xx for all of them.
// A wrong secret and a tampered body are indistinguishable by design: both
// are ErrNoMatchingSignature.
var (
	ErrMissingID           = errors.New("verify: missing webhook-id header")
	ErrMissingTimestamp    = errors.New("verify: missing webhook-timestamp header")
	ErrMissingSignature    = errors.New("verify: missing webhook-signature header")
	ErrInvalidTimestamp    = errors.New("verify: webhook-timestamp is not a unix time in seconds")
	ErrTimestampTooOld     = errors.New("verify: webhook-timestamp is too old")
	ErrTimestampTooNew     = errors.New("verify: webhook-timestamp is too far in the future")
	ErrNoMatchingSignature = errors.New("verify: no signature matches")
	ErrInvalidSecret       = errors.New("verify: secret is not whsec_ followed by base64")
)

// DecodeSecret returns the HMAC key of a Standard Webhooks secret: the
// base64 after the optional "whsec_" prefix.
func DecodeSecret(secret string) ([]byte, error) {
	raw := strings.TrimPrefix(secret, SecretPrefix)
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) == 0 {
		return nil, ErrInvalidSecret
	}
	return key, nil
}

// Sign returns the "v1,<base64>" signature of one message under one secret.
func Sign(secret, msgID string, ts time.Time, body []byte) (string, error) {
	key, err := DecodeSecret(secret)
	if err != nil {
		return "", err
	}
	return "v1," + base64.StdEncoding.EncodeToString(mac(key, msgID, strconv.FormatInt(ts.Unix(), 10), body)), nil
}

// SignAll returns the webhook-signature header value for a message signed
// with every secret, space-separated, as sent while a secret is rotated.
func SignAll(secrets []string, msgID string, ts time.Time, body []byte) (string, error) {
	sigs := make([]string, 0, len(secrets))
	for _, s := range secrets {
		sig, err := Sign(s, msgID, ts, body)
		if err != nil {
			return "", err
		}
		sigs = append(sigs, sig)
	}
	return strings.Join(sigs, " "), nil
}

func mac(key []byte, msgID, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msgID))
	h.Write([]byte{'.'})
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks a received webhook: the three headers are present, the
// timestamp is within tolerance of now (tolerance <= 0 means
// DefaultTolerance), and at least one "v1," signature in webhook-signature
// matches the body under at least one of secrets (the receiver's current
// and, during a rotation, previous secret). Signatures are compared in
// constant time. Verify must be given the body exactly as received, before
// any JSON parsing.
func Verify(secrets []string, headers http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	msgID := headers.Get(HeaderID)
	tsText := headers.Get(HeaderTimestamp)
	sigHeader := headers.Get(HeaderSignature)
	switch {
	case msgID == "":
		return ErrMissingID
	case tsText == "":
		return ErrMissingTimestamp
	case sigHeader == "":
		return ErrMissingSignature
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return ErrInvalidTimestamp
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	sent := time.Unix(ts, 0)
	if now.Sub(sent) > tolerance {
		return ErrTimestampTooOld
	}
	if sent.Sub(now) > tolerance {
		return ErrTimestampTooNew
	}
	var offered [][]byte
	for _, part := range strings.Fields(sigHeader) {
		version, sig, ok := strings.Cut(part, ",")
		if !ok || version != "v1" {
			continue // other schemes (v1a, future versions) are not ours to check
		}
		b, err := base64.StdEncoding.DecodeString(sig)
		if err != nil {
			continue
		}
		offered = append(offered, b)
	}
	if len(offered) == 0 {
		return ErrNoMatchingSignature
	}
	for _, s := range secrets {
		key, err := DecodeSecret(s)
		if err != nil {
			return fmt.Errorf("%w (one of the configured secrets)", ErrInvalidSecret)
		}
		want := mac(key, msgID, tsText, body)
		for _, got := range offered {
			if subtle.ConstantTimeCompare(want, got) == 1 {
				return nil
			}
		}
	}
	return ErrNoMatchingSignature
}
