package storage

import (
	"encoding/binary"
	"errors"
)

// Composite keys encode a tuple of byte strings so that bbolt's byte order
// is the tuple's lexicographic order and no two tuples share an encoding.
// Each part has 0x00 escaped as 0x00 0xFF and ends with 0x00 0x01, so a part
// that is a prefix of another sorts first, and a part boundary can never be
// mistaken for data. Because the encoding of a tuple is the concatenation of
// its parts' encodings, Key(a, b) is a byte prefix of Key(a, b, c): prefix
// scans over index keys select whole leading parts, never a partial part.
const (
	keyEscape     = 0x00
	keyEscapedNul = 0xFF
	keyTerminator = 0x01
)

// ErrMalformedKey reports bytes that are not a composite key produced by Key.
var ErrMalformedKey = errors.New("storage: malformed composite key")

// Key encodes parts as one order-preserving composite key.
func Key(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p) + 2
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = appendPart(out, p)
	}
	return out
}

// KeyStrings is Key for string parts, the common case of ids and codes.
func KeyStrings(parts ...string) []byte {
	n := 0
	for _, p := range parts {
		n += len(p) + 2
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = appendPart(out, []byte(p))
	}
	return out
}

func appendPart(out, p []byte) []byte {
	for _, c := range p {
		if c == keyEscape {
			out = append(out, keyEscape, keyEscapedNul)
			continue
		}
		out = append(out, c)
	}
	return append(out, keyEscape, keyTerminator)
}

// SplitKey decodes a composite key into its parts. It rejects anything Key
// could not have produced, so a decoded key always re-encodes to itself.
func SplitKey(k []byte) ([][]byte, error) {
	var parts [][]byte
	cur := []byte{}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c != keyEscape {
			cur = append(cur, c)
			continue
		}
		if i+1 >= len(k) {
			return nil, ErrMalformedKey
		}
		i++
		switch k[i] {
		case keyEscapedNul:
			cur = append(cur, keyEscape)
		case keyTerminator:
			parts = append(parts, cur)
			cur = []byte{}
		default:
			return nil, ErrMalformedKey
		}
	}
	if len(cur) > 0 {
		// Trailing bytes without a terminator: a truncated key.
		return nil, ErrMalformedKey
	}
	return parts, nil
}

// lastPart splits a composite key into everything before its last part and
// the decoded last part. Only a terminator is ever encoded as 0x00 0x01, so
// the last part starts after the second-to-last terminator.
func lastPart(k []byte) (head, last []byte, err error) {
	if len(k) < 2 || k[len(k)-2] != keyEscape || k[len(k)-1] != keyTerminator {
		return nil, nil, ErrMalformedKey
	}
	start := 0
	for i := len(k) - 3; i >= 1; i-- {
		if k[i-1] == keyEscape && k[i] == keyTerminator {
			start = i + 1
			break
		}
	}
	parts, err := SplitKey(k[start:])
	if err != nil || len(parts) != 1 {
		return nil, nil, ErrMalformedKey
	}
	return k[:start], parts[0], nil
}

// Uint64Key encodes n big-endian so numeric order is byte order.
func Uint64Key(n uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), n)
}
