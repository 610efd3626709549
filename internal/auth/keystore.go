package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	"github.com/millrace/millrace/internal/idempotency"
	"github.com/millrace/millrace/internal/ids"
	"github.com/millrace/millrace/internal/storage"
)

// BucketAPIKeys holds the API keys, keyed by key id (ids sort by creation
// time, so key order is creation order). A value is the 32-byte SHA-256 of
// the secret followed by the protobuf-encoded ApiKey.
var BucketAPIKeys = []byte("apikeys")

type storedKey struct {
	hash []byte
	key  *integrationv1.ApiKey
}

func encodeKey(hash []byte, k *integrationv1.ApiKey) ([]byte, error) {
	b, err := proto.Marshal(k)
	if err != nil {
		return nil, err
	}
	return append(append(make([]byte, 0, 32+len(b)), hash...), b...), nil
}

func decodeKey(v []byte) (*storedKey, error) {
	if len(v) < 32 {
		return nil, errors.New("api key record is truncated")
	}
	k := &integrationv1.ApiKey{}
	if err := proto.Unmarshal(v[32:], k); err != nil {
		return nil, err
	}
	return &storedKey{hash: append([]byte(nil), v[:32]...), key: k}, nil
}

// SecretPrefix starts every Millrace API key secret, so that secret
// scanners and people recognise one.
const SecretPrefix = "mr_"

// ErrInvalidKey is returned for a secret that is malformed, unknown or revoked.
var ErrInvalidKey = errors.New("invalid or revoked API key")

// KeyStore keeps API keys in bbolt. Only a SHA-256 hash of each secret is
// stored: the secrets are 160-bit random values, so a fast hash is
// sufficient and lets every request be verified without a slow KDF.
type KeyStore struct {
	db  *storage.DB
	now func() time.Time

	mu    sync.RWMutex
	cache map[[32]byte]cachedKey
}

type cachedKey struct {
	p       Principal
	expires time.Time
}

// cacheTTL bounds how long a verified key is trusted without reading the
// store; revocation through this process clears the cache at once.
const cacheTTL = 30 * time.Second

// NewKeyStore returns a key store over db, whose schema must include
// BucketAPIKeys.
func NewKeyStore(db *storage.DB) *KeyStore {
	return &KeyStore{db: db, now: func() time.Time { return time.Now().UTC() }, cache: map[[32]byte]cachedKey{}}
}

// Create stores a new key and returns it with its secret, which is never
// stored or shown again. Under an Idempotency-Key (ctx) the new key is
// attached to the key's claim in the same commit, so that the retry of a
// call whose answer was lost in a crash finds it (see Reissue).
func (s *KeyStore) Create(ctx context.Context, k *integrationv1.ApiKey) (*integrationv1.ApiKey, string, error) {
	id := ids.New("key")
	secret, err := newSecret(id)
	if err != nil {
		return nil, "", err
	}
	return s.put(ctx, id, secret, k)
}

// Reissue gives key id a new secret in place of one that was never
// delivered: the retry of a keyed CreateApiKey whose first answer was lost
// in a crash gets the key its first attempt created, with a secret it can
// use, instead of a second key. The lost secret stops working at once. A
// revoked key is refused; an unknown id is an error.
func (s *KeyStore) Reissue(id string) (*integrationv1.ApiKey, string, error) {
	secret, err := newSecret(id)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256([]byte(secret))
	out, err := s.change(id, func(rec *storedKey) error {
		if rec.key.GetRevokeTime() != nil {
			return fmt.Errorf("api key %s was revoked", id)
		}
		rec.hash = sum[:]
		return nil
	})
	if err == nil && out == nil {
		err = fmt.Errorf("api key %s does not exist", id)
	}
	if err != nil {
		return nil, "", err
	}
	return out, secret, nil
}

// change rewrites the record of key id with what fn makes of it and
// forgets every verified key, so that the change holds at once in this
// process. It returns nil, nil for an unknown id.
func (s *KeyStore) change(id string, fn func(rec *storedKey) error) (*integrationv1.ApiKey, error) {
	var out *integrationv1.ApiKey
	err := s.db.Update(func(tx *bbolt.Tx) error {
		bk := tx.Bucket(BucketAPIKeys)
		v := bk.Get([]byte(id))
		if v == nil {
			return nil
		}
		rec, err := decodeKey(v)
		if err != nil {
			return err
		}
		if err := fn(rec); err != nil {
			return err
		}
		b, err := encodeKey(rec.hash, rec.key)
		if err != nil {
			return err
		}
		out = rec.key
		return bk.Put([]byte(id), b)
	})
	if err == nil && out != nil {
		s.mu.Lock()
		s.cache = map[[32]byte]cachedKey{}
		s.mu.Unlock()
	}
	return out, err
}

// Import stores a key whose secret the operator chose (MILLRACE_ADMIN_KEY).
// It is a no-op when a key with the same secret already exists.
func (s *KeyStore) Import(secret string, k *integrationv1.ApiKey) (*integrationv1.ApiKey, error) {
	if len(secret) < 24 || len(secret) > 256 {
		return nil, fmt.Errorf("the admin key must be 24 to 256 characters long")
	}
	if p, err := s.Verify(context.Background(), secret); err == nil {
		return &integrationv1.ApiKey{Id: p.KeyID, DisplayName: p.Name, Role: p.Role, Region: p.Region}, nil
	}
	id := "key_admin"
	if strings.HasPrefix(secret, SecretPrefix) {
		if kid, ok := keyIDOf(secret); ok {
			id = kid
		}
	}
	out, _, err := s.put(context.Background(), id, secret, k)
	return out, err
}

func (s *KeyStore) put(ctx context.Context, id, secret string, k *integrationv1.ApiKey) (*integrationv1.ApiKey, string, error) {
	k = proto.Clone(k).(*integrationv1.ApiKey)
	k.Id = id
	k.CreateTime = timestamppb.New(s.now())
	k.RevokeTime = nil
	k.LastUsedTime = nil
	sum := sha256.Sum256([]byte(secret))
	b, err := encodeKey(sum[:], k)
	if err != nil {
		return nil, "", err
	}
	err = s.db.Update(func(tx *bbolt.Tx) error {
		bk := tx.Bucket(BucketAPIKeys)
		if bk.Get([]byte(id)) != nil {
			return fmt.Errorf("api key %s already exists", id)
		}
		if err := bk.Put([]byte(id), b); err != nil {
			return err
		}
		return idempotency.Attach(ctx, tx, id)
	})
	if err != nil {
		return nil, "", err
	}
	return k, secret, nil
}

// Verify returns the principal of a presented secret.
func (s *KeyStore) Verify(_ context.Context, secret string) (Principal, error) {
	sum := sha256.Sum256([]byte(secret))
	now := s.now()
	s.mu.RLock()
	c, ok := s.cache[sum]
	s.mu.RUnlock()
	if ok && now.Before(c.expires) {
		return c.p, nil
	}
	var rec *storedKey
	err := s.db.View(func(tx *bbolt.Tx) error {
		bk := tx.Bucket(BucketAPIKeys)
		id, ok := keyIDOf(secret)
		if !ok {
			// Operator-chosen secrets carry no key id; the bootstrap admin
			// key is stored under a fixed id.
			id = "key_admin"
		}
		v := bk.Get([]byte(id))
		if v == nil {
			return nil
		}
		var err error
		rec, err = decodeKey(v)
		return err
	})
	if err != nil {
		return Principal{}, fmt.Errorf("read api key: %w", err)
	}
	if rec == nil || subtle.ConstantTimeCompare(rec.hash, sum[:]) != 1 || rec.key.GetRevokeTime() != nil {
		return Principal{}, ErrInvalidKey
	}
	k := rec.key
	p := Principal{KeyID: k.GetId(), Name: k.GetDisplayName(), Role: k.GetRole(), Region: k.GetRegion(), RatePerSecond: int(k.GetRateLimitPerSecond())}
	s.mu.Lock()
	if len(s.cache) > 10000 {
		s.cache = map[[32]byte]cachedKey{}
	}
	s.cache[sum] = cachedKey{p: p, expires: now.Add(cacheTTL)}
	s.mu.Unlock()
	return p, nil
}

// Get returns one key without its secret hash.
func (s *KeyStore) Get(id string) (*integrationv1.ApiKey, error) {
	var k *integrationv1.ApiKey
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(BucketAPIKeys).Get([]byte(id))
		if v == nil {
			return nil
		}
		rec, err := decodeKey(v)
		if err != nil {
			return err
		}
		k = rec.key
		return nil
	})
	return k, err
}

// List returns keys in id (creation) order after afterID, at most limit.
func (s *KeyStore) List(afterID string, limit int, includeRevoked bool) (keys []*integrationv1.ApiKey, next string, err error) {
	err = s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(BucketAPIKeys).Cursor()
		var k, v []byte
		if afterID == "" {
			k, v = c.First()
		} else {
			k, v = c.Seek([]byte(afterID))
			if k != nil && string(k) == afterID {
				k, v = c.Next()
			}
		}
		for ; k != nil; k, v = c.Next() {
			rec, err := decodeKey(v)
			if err != nil {
				return err
			}
			if rec.key.GetRevokeTime() != nil && !includeRevoked {
				continue
			}
			if len(keys) == limit {
				next = keys[len(keys)-1].GetId()
				return nil
			}
			keys = append(keys, rec.key)
		}
		return nil
	})
	return keys, next, err
}

// Revoke marks a key revoked. It returns nil, nil for an unknown id.
func (s *KeyStore) Revoke(id string) (*integrationv1.ApiKey, error) {
	return s.change(id, func(rec *storedKey) error {
		if rec.key.RevokeTime == nil {
			rec.key.RevokeTime = timestamppb.New(s.now())
		}
		return nil
	})
}

// Count returns the number of keys, revoked included.
func (s *KeyStore) Count() (int, error) {
	n := 0
	err := s.db.View(func(tx *bbolt.Tx) error {
		n = tx.Bucket(BucketAPIKeys).Stats().KeyN
		return nil
	})
	return n, err
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// newSecret returns "mr_<key id>_<32 random base32 chars>" (160 bits).
func newSecret(id string) (string, error) {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	return SecretPrefix + id + "_" + strings.ToLower(b32.EncodeToString(b[:])), nil
}

// keyIDOf extracts the key id from a generated secret.
func keyIDOf(secret string) (string, bool) {
	if !strings.HasPrefix(secret, SecretPrefix) {
		return "", false
	}
	rest := secret[len(SecretPrefix):]
	i := strings.LastIndexByte(rest, '_')
	if i <= 0 {
		return "", false
	}
	return rest[:i], true
}
