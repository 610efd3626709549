package idempotency

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestEntryRoundTrip(t *testing.T) {
	at := time.Date(2026, 4, 1, 9, 0, 0, 123, time.UTC)
	tests := []struct {
		name string
		e    entry
	}{
		{"claim", entry{state: stateInFlight, hash: []byte("h"), leaseUntil: at, expiresAt: at.Add(time.Hour)}},
		{"completed", entry{state: stateCompleted, hash: []byte("h"), expiresAt: at, rec: Record{
			Code: 5, Response: []byte{0, 1, 2}, Message: "customer cus_1 not found",
			Details: [][]byte{[]byte("a"), []byte("bb")}, CompletedAt: at,
		}}},
		{"max code", entry{state: stateCompleted, hash: []byte("h"), rec: Record{Code: 1<<32 - 1}}},
		{"claim with a resource", entry{state: stateInFlight, hash: []byte("h"), leaseUntil: at, expiresAt: at.Add(time.Hour), resource: "ord_01JF"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeEntry(tt.e.encode())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.e) {
				t.Errorf("round trip\n got %+v\nwant %+v", got, tt.e)
			}
		})
	}
}

func TestDecodeEntryRejects(t *testing.T) {
	valid := entry{state: stateCompleted, hash: []byte("h"), rec: Record{Details: [][]byte{[]byte("d")}}}.encode()
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"unknown version", append([]byte{9}, valid[1:]...)},
		{"unknown state", append([]byte{entryVersion, 7}, valid[2:]...)},
		{"truncated", valid[:len(valid)-1]},
		{"trailing bytes", append(bytes.Clone(valid), 0)},
		{"length beyond data", []byte{entryVersion, stateInFlight, 0x7f}},
		{"detail count beyond data", []byte{entryVersion, stateCompleted, 0, 0, 0, 0, 0, 0, 0x7f}},
		{"code over 32 bits", []byte{entryVersion, stateCompleted, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeEntry(tt.data); !errors.Is(err, errCorrupt) {
				t.Errorf("decodeEntry(%x) error = %v, want errCorrupt", tt.data, err)
			}
		})
	}
}

// FuzzDecodeEntry feeds arbitrary bytes to the decoder: it must never panic
// or over-allocate, and whatever it accepts must survive a re-encode
// unchanged. (Varints have more than one spelling, so the bytes may differ.)
func FuzzDecodeEntry(f *testing.F) {
	f.Add(entry{state: stateInFlight, hash: []byte("h"), expiresAt: time.Unix(1, 0)}.encode())
	f.Add(entry{state: stateCompleted, hash: []byte("h"), rec: Record{Code: 3, Response: []byte("r"), Details: [][]byte{nil, []byte("d")}}}.encode())
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := decodeEntry(data)
		if err != nil {
			return
		}
		again, err := decodeEntry(e.encode())
		if err != nil {
			t.Fatalf("re-encoded %+v does not decode: %v", e, err)
		}
		if !reflect.DeepEqual(again, e) {
			t.Fatalf("round trip changed %+v to %+v", e, again)
		}
	})
}
