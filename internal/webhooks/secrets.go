package webhooks

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"

	"github.com/millrace/millrace/internal/webhooks/verify"
)

// Signing secrets cannot be stored hashed, as API keys are: signing needs
// the raw secret for HMAC. They are sealed instead with AES-256-GCM under
// Options.SecretKey, with the subscription id as additional data so a sealed
// secret copied onto another subscription does not open. A copy of the
// integration store (a backup) therefore reveals no signing secret unless
// the key travels with it. Losing the key makes every sealed secret
// unusable: rotate each subscription's secret afterwards.

// SecretKeySize is the size of Options.SecretKey: an AES-256 key.
const SecretKeySize = 32

// sealVersion prefixes sealed secrets so the format (or the key) can change
// later without guessing what a stored value is.
const sealVersion byte = 1

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != SecretKeySize {
		return nil, fmt.Errorf("webhooks: the secret key must be %d bytes, got %d", SecretKeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// newSecret returns a Standard Webhooks signing secret: "whsec_" and the
// base64 of 32 random bytes.
func newSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand never fails on supported platforms
	return verify.SecretPrefix + base64.StdEncoding.EncodeToString(b)
}

func seal(aead cipher.AEAD, subID, secret string) []byte {
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce)
	out := append([]byte{sealVersion}, nonce...)
	return aead.Seal(out, nonce, []byte(secret), []byte(subID))
}

var errSealed = errors.New("webhooks: a signing secret cannot be opened with this secret key")

func open(aead cipher.AEAD, subID string, sealed []byte) (string, error) {
	n := aead.NonceSize()
	if len(sealed) < 1+n || sealed[0] != sealVersion {
		return "", errSealed
	}
	plain, err := aead.Open(nil, sealed[1:1+n], sealed[1+n:], []byte(subID))
	if err != nil {
		return "", errSealed
	}
	return string(plain), nil
}

// LoadOrCreateKey reads a secret key file, creating it with a random key
// (mode 0600) when it does not exist. The file holds the key in base64.
// Keep it out of store backups: it is what makes a stolen backup harmless.
func LoadOrCreateKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key := make([]byte, SecretKeySize)
		_, _ = rand.Read(key)
		text := base64.StdEncoding.EncodeToString(key) + "\n"
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create webhook secret key %s: %w", path, err)
		}
		if _, err := f.WriteString(text); err != nil {
			f.Close()
			return nil, fmt.Errorf("write webhook secret key %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("write webhook secret key %s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("write webhook secret key %s: %w", path, err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read webhook secret key %s: %w", path, err)
	}
	key, err := base64.StdEncoding.DecodeString(string(trimSpace(b)))
	if err != nil || len(key) != SecretKeySize {
		return nil, fmt.Errorf("webhook secret key %s must hold %d bytes in base64", path, SecretKeySize)
	}
	return key, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}
