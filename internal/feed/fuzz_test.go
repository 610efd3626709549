package feed

import (
	"bytes"
	"testing"
	"time"
)

var fuzzKey = []byte("0123456789abcdef0123456789abcdef")

// FuzzDecodeCursor feeds the cursor decoder what clients may send as
// "after". It must never panic, and what it accepts must be exactly the
// spelling the feed issues for that position, so one position has one
// cursor.
func FuzzDecodeCursor(f *testing.F) {
	f.Add(encodeCursor(fuzzKey, 0))
	f.Add(encodeCursor(fuzzKey, 42))
	f.Add("")
	f.Add("%%%")
	f.Fuzz(func(t *testing.T, c string) {
		pos, err := decodeCursor(fuzzKey, c)
		if err != nil {
			return
		}
		if again := encodeCursor(fuzzKey, pos); again != c {
			t.Errorf("accepted %q for position %d, which the feed spells %q", c, pos, again)
		}
	})
}

// FuzzDecodeRecord feeds the record decoder arbitrary stored bytes: a
// damaged store must give an error, never a panic, and a record that
// decodes must encode back to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(record{At: time.Unix(0, 1), ID: "evt_1", Type: "millrace.events.v1.OrderHeld", Region: "eu", Env: []byte{8, 1}}))
	f.Add([]byte{})
	f.Add([]byte{recordVersion, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		if again := encodeRecord(r); !bytes.Equal(again, b) {
			// Over-long varints decode but encode shorter; only those may
			// differ.
			if len(again) >= len(b) {
				t.Errorf("record %x re-encodes as %x", b, again)
			}
		}
	})
}
