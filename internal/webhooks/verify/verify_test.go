package verify

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// The example of the Standard Webhooks specification and its reference
// libraries: reproducing it is what proves a receiver's stock library
// accepts what Millrace sends.
const (
	specSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTS     = 1614265330
	specBody   = `{"test": 2432232314}`
	specSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignReproducesTheSpecificationVector(t *testing.T) {
	got, err := Sign(specSecret, specID, time.Unix(specTS, 0), []byte(specBody))
	if err != nil {
		t.Fatal(err)
	}
	if got != specSig {
		t.Fatalf("Sign = %q, want %q", got, specSig)
	}
}

func headers(id, ts, sig string) http.Header {
	h := http.Header{}
	if id != "" {
		h.Set(HeaderID, id)
	}
	if ts != "" {
		h.Set(HeaderTimestamp, ts)
	}
	if sig != "" {
		h.Set(HeaderSignature, sig)
	}
	return h
}

func TestVerify(t *testing.T) {
	specNow := time.Unix(specTS, 0)
	otherSecret := "whsec_" + "c2VjcmV0LXRoYXQtaXMtbm90LXRoZS1yaWdodC1vbmUh"
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	sign := func(secret string, ts time.Time, body string) http.Header {
		sig, err := Sign(secret, "msg_1", ts, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return headers("msg_1", strconv.FormatInt(ts.Unix(), 10), sig)
	}
	tests := []struct {
		name    string
		secrets []string
		headers http.Header
		body    string
		now     time.Time
		want    error
	}{
		{"specification vector", []string{specSecret}, headers(specID, strconv.Itoa(specTS), specSig), specBody, specNow, nil},
		{"specification vector among unknown signatures", []string{specSecret},
			headers(specID, strconv.Itoa(specTS), "v1a,abc v1,bm9wZQ== "+specSig), specBody, specNow, nil},
		{"secret without prefix", []string{specSecret[len(SecretPrefix):]}, headers(specID, strconv.Itoa(specTS), specSig), specBody, specNow, nil},
		{"correct signature", []string{specSecret}, sign(specSecret, now, `{"a":1}`), `{"a":1}`, now, nil},
		{"previous secret still accepted", []string{otherSecret, specSecret}, sign(specSecret, now, `{}`), `{}`, now, nil},
		{"within tolerance in the past", []string{specSecret}, sign(specSecret, now.Add(-4*time.Minute), `{}`), `{}`, now, nil},
		{"wrong secret", []string{otherSecret}, sign(specSecret, now, `{"a":1}`), `{"a":1}`, now, ErrNoMatchingSignature},
		{"tampered body", []string{specSecret}, sign(specSecret, now, `{"a":1}`), `{"a":2}`, now, ErrNoMatchingSignature},
		{"stale timestamp", []string{specSecret}, sign(specSecret, now.Add(-6*time.Minute), `{}`), `{}`, now, ErrTimestampTooOld},
		{"future timestamp", []string{specSecret}, sign(specSecret, now.Add(6*time.Minute), `{}`), `{}`, now, ErrTimestampTooNew},
		{"missing id", []string{specSecret}, headers("", "1", "v1,x"), `{}`, now, ErrMissingID},
		{"missing timestamp", []string{specSecret}, headers("m", "", "v1,x"), `{}`, now, ErrMissingTimestamp},
		{"missing signature", []string{specSecret}, headers("m", "1", ""), `{}`, now, ErrMissingSignature},
		{"malformed timestamp", []string{specSecret}, headers("m", "12.5", "v1,x"), `{}`, now, ErrInvalidTimestamp},
		{"only unknown schemes", []string{specSecret}, headers(specID, strconv.Itoa(specTS), "v2,"+specSig[3:]), specBody, specNow, ErrNoMatchingSignature},
		{"malformed configured secret", []string{"whsec_!!"}, headers(specID, strconv.Itoa(specTS), specSig), specBody, specNow, ErrInvalidSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.secrets, tt.headers, []byte(tt.body), tt.now, 0)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSignAllSignsWithEverySecret(t *testing.T) {
	other := "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24tdGVzdHM="
	ts := time.Unix(specTS, 0)
	h, err := SignAll([]string{other, specSecret}, specID, ts, []byte(specBody))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{other, specSecret} {
		if err := Verify([]string{s}, headers(specID, strconv.Itoa(specTS), h), []byte(specBody), ts, 0); err != nil {
			t.Errorf("secret %s: %v", s[:10], err)
		}
	}
}

func FuzzVerify(f *testing.F) {
	f.Add(specID, strconv.Itoa(specTS), specSig, []byte(specBody))
	f.Add("m", "0", "v1,", []byte{})
	f.Add("m", "-1", "v1,,, v1 ,", []byte("x"))
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		err := Verify([]string{specSecret}, headers(id, ts, sig), body, time.Unix(specTS, 0), 0)
		if err == nil && (id != specID || ts != strconv.Itoa(specTS) || string(body) != specBody) {
			// Anything else verifying would be an HMAC collision.
			t.Fatalf("unexpected success for %q %q %q", id, ts, body)
		}
	})
}
