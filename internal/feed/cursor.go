package feed

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
)

// A cursor is a feed position made opaque: a version byte, the position
// (big-endian uint64) and the first 8 bytes of an HMAC-SHA256 of both under
// a key kept in the store, base64url without padding (23 characters).
//
// The MAC is what lets the feed tell a cursor it issued from an edited,
// truncated or foreign one (another installation's feed, a store restored
// from elsewhere) and refuse it, rather than read from whatever position the
// bytes happen to spell. The version byte leaves room to change the format.
const (
	cursorVersion = 1
	cursorMACLen  = 8
	cursorRawLen  = 1 + 8 + cursorMACLen
)

// cursorEncoding is strict so that each position has exactly one spelling:
// the lax decoder ignores the last character's spare bits.
var cursorEncoding = base64.RawURLEncoding.Strict()

// encodeCursor returns the cursor of position pos.
func encodeCursor(key []byte, pos uint64) string {
	raw := make([]byte, 0, cursorRawLen)
	raw = append(raw, cursorVersion)
	raw = binary.BigEndian.AppendUint64(raw, pos)
	raw = append(raw, cursorMAC(key, raw)...)
	return cursorEncoding.EncodeToString(raw)
}

// decodeCursor returns the position a cursor names, or why it is not one
// this feed issued.
func decodeCursor(key []byte, c string) (uint64, error) {
	raw, err := cursorEncoding.DecodeString(c)
	switch {
	case err != nil:
		return 0, &InvalidCursorError{Reason: "not a cursor this feed issued: it is not base64url"}
	case len(raw) != cursorRawLen:
		return 0, &InvalidCursorError{Reason: "not a cursor this feed issued: wrong length"}
	case raw[0] != cursorVersion:
		return 0, &InvalidCursorError{Reason: "not a cursor this feed issued: unknown version"}
	case !hmac.Equal(raw[9:], cursorMAC(key, raw[:9])):
		return 0, &InvalidCursorError{Reason: "not a cursor this feed issued: it was altered or comes from another feed"}
	}
	return binary.BigEndian.Uint64(raw[1:9]), nil
}

func cursorMAC(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)[:cursorMACLen]
}
