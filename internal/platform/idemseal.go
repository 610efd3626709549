package platform

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// Some answers carry a secret that Millrace shows only once: an API key's
// secret, a webhook signing secret. The contract marks those fields
// debug_redact. The answer kept for an Idempotency-Key replay must not hold
// such a secret in the clear, or a copy of the store would reveal it, so it
// is sealed with AES-256-GCM under a key derived from the caller's own
// credential (HMAC-SHA256 of the bearer secret over the key's scope and
// name). A replay by the same caller opens it and gets the same secret
// back; the store alone opens nothing. A caller without a bearer secret
// gets the answer kept with its secret fields cleared.

// sealedAnswer starts a sealed answer. A protobuf encoding never starts
// with a zero byte (there is no field number 0), so the two cannot be
// confused; the second byte is the format version.
var sealedAnswer = []byte{0x00, 0x01}

// errSealedAnswer means a sealed answer did not open with the caller's
// credential.
var errSealedAnswer = errors.New("the kept answer of this Idempotency-Key holds a secret that opens only with the credential that made the request")

func answerKey(bearer, scope, key string) []byte {
	m := hmac.New(sha256.New, []byte(bearer))
	m.Write([]byte("millrace idempotent answer v1\x00"))
	m.Write([]byte(scope))
	m.Write([]byte{0})
	m.Write([]byte(key))
	return m.Sum(nil)
}

func answerAEAD(bearer, scope, key string) (cipher.AEAD, error) {
	block, err := aes.NewCipher(answerKey(bearer, scope, key))
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sealAnswer seals an encoded answer for the caller holding bearer.
func sealAnswer(bearer, scope, key string, plain []byte) ([]byte, error) {
	aead, err := answerAEAD(bearer, scope, key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(sealedAnswer), len(sealedAnswer)+aead.NonceSize()+len(plain)+aead.Overhead())
	copy(out, sealedAnswer)
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out = append(out, nonce...)
	return aead.Seal(out, nonce, plain, sealedAnswer), nil
}

// isSealedAnswer reports whether a kept answer was sealed.
func isSealedAnswer(b []byte) bool {
	return len(b) >= len(sealedAnswer) && b[0] == sealedAnswer[0] && b[1] == sealedAnswer[1]
}

// openAnswer opens a sealed answer with the replaying caller's bearer.
func openAnswer(bearer, scope, key string, sealed []byte) ([]byte, error) {
	if bearer == "" {
		return nil, errSealedAnswer
	}
	aead, err := answerAEAD(bearer, scope, key)
	if err != nil {
		return nil, err
	}
	rest := sealed[len(sealedAnswer):]
	if len(rest) < aead.NonceSize() {
		return nil, errSealedAnswer
	}
	plain, err := aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], sealedAnswer)
	if err != nil {
		return nil, errSealedAnswer
	}
	return plain, nil
}

// holdsSecret reports whether m has a debug_redact field set, at any depth.
func holdsSecret(m protoreflect.Message) bool {
	found := false
	eachSecret(m, func(protoreflect.Message, protoreflect.FieldDescriptor) bool {
		found = true
		return false
	})
	return found
}

// clearSecrets clears every debug_redact field of m, at any depth.
func clearSecrets(m protoreflect.Message) {
	eachSecret(m, func(owner protoreflect.Message, fd protoreflect.FieldDescriptor) bool {
		owner.Clear(fd)
		return true
	})
}

// eachSecret calls visit with every set debug_redact field of m and the
// message holding it, at any depth, until visit returns false. It reports
// whether to go on.
func eachSecret(m protoreflect.Message, visit func(owner protoreflect.Message, fd protoreflect.FieldDescriptor) bool) bool {
	if !mayHoldSecret(m.Descriptor()) {
		return true
	}
	more := true
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case redacted(fd):
			more = visit(m, fd)
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len() && more; i++ {
				more = eachSecret(l.Get(i).Message(), visit)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				more = eachSecret(mv.Message(), visit)
				return more
			})
		case fd.Message() != nil:
			more = eachSecret(v.Message(), visit)
		}
		return more
	})
	return more
}

func redacted(fd protoreflect.FieldDescriptor) bool {
	opts, ok := fd.Options().(*descriptorpb.FieldOptions)
	return ok && opts.GetDebugRedact()
}

// mayHold caches, per message type, whether it or a message it contains
// declares a debug_redact field, so that answers without one cost a map
// lookup.
var mayHold sync.Map // protoreflect.FullName → bool

func mayHoldSecret(md protoreflect.MessageDescriptor) bool {
	if v, ok := mayHold.Load(md.FullName()); ok {
		return v.(bool)
	}
	v := declaresSecret(md, map[protoreflect.FullName]bool{})
	mayHold.Store(md.FullName(), v)
	return v
}

func declaresSecret(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) bool {
	if seen[md.FullName()] {
		return false
	}
	seen[md.FullName()] = true
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if redacted(fd) {
			return true
		}
		sub := fd.Message()
		if fd.IsMap() {
			sub = fd.MapValue().Message()
		}
		if sub != nil && declaresSecret(sub, seen) {
			return true
		}
	}
	return false
}

// keepAnswer encodes a successful answer for the idempotency record: in the
// clear, or sealed for the caller when it holds a secret, or with its
// secrets cleared when the caller has no bearer secret to seal it with.
func keepAnswer(msg proto.Message, bearer, scope, key string) ([]byte, error) {
	if !holdsSecret(msg.ProtoReflect()) {
		return proto.Marshal(msg)
	}
	if bearer == "" {
		c := proto.Clone(msg)
		clearSecrets(c.ProtoReflect())
		return proto.Marshal(c)
	}
	b, err := proto.Marshal(msg)
	if err != nil {
		return nil, err
	}
	return sealAnswer(bearer, scope, key, b)
}
