package storage

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

func TestKeyRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		parts [][]byte
		want  []byte
	}{
		{"no parts", nil, []byte{}},
		{"one part", [][]byte{[]byte("ab")}, []byte("ab\x00\x01")},
		{"empty part", [][]byte{{}}, []byte("\x00\x01")},
		{"nul escaped", [][]byte{{0x00}}, []byte("\x00\xff\x00\x01")},
		{"terminator bytes inside a part", [][]byte{{0x00, 0x01}}, []byte("\x00\xff\x01\x00\x01")},
		{"0xff kept", [][]byte{{0xff, 0x00, 0xff}}, []byte("\xff\x00\xff\xff\x00\x01")},
		{"several parts", [][]byte{[]byte("cus"), {}, Uint64Key(1)}, []byte("cus\x00\x01\x00\x01\x00\xff\x00\xff\x00\xff\x00\xff\x00\xff\x00\xff\x00\xff\x01\x00\x01")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := Key(tt.parts...)
			if !bytes.Equal(k, tt.want) {
				t.Fatalf("Key = %q, want %q", k, tt.want)
			}
			got, err := SplitKey(k)
			if err != nil {
				t.Fatal(err)
			}
			if !equalParts(got, tt.parts) {
				t.Errorf("SplitKey = %q, want %q", got, tt.parts)
			}
		})
	}
}

func TestKeyStrings(t *testing.T) {
	if got, want := KeyStrings("a", "", "b\x00"), Key([]byte("a"), nil, []byte("b\x00")); !bytes.Equal(got, want) {
		t.Errorf("KeyStrings = %q, want %q", got, want)
	}
}

func TestKeyOrder(t *testing.T) {
	// Each case lists tuples in ascending tuple order.
	tests := []struct {
		name   string
		tuples [][]string
	}{
		{"prefix part sorts first", [][]string{{"a"}, {"a\x00"}, {"a\x01"}, {"ab"}, {"b"}}},
		{"shorter tuple sorts first", [][]string{{"a"}, {"a", ""}, {"a", "a"}, {"a\x00"}, {"aa"}}},
		{"first part dominates", [][]string{{"a", "zzz"}, {"aa", ""}, {"b"}}},
		{"nul against 0xff", [][]string{{"\x00"}, {"\x00\x00"}, {"\x00\xff"}, {"\x01"}, {"\xff"}}},
		{"empty tuple lowest", [][]string{{}, {""}, {"", ""}, {"\x00"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := 1; i < len(tt.tuples); i++ {
				a, b := KeyStrings(tt.tuples[i-1]...), KeyStrings(tt.tuples[i]...)
				if bytes.Compare(a, b) >= 0 {
					t.Errorf("Key(%q) = %q is not below Key(%q) = %q", tt.tuples[i-1], a, tt.tuples[i], b)
				}
			}
		})
	}
}

func TestSplitKeyMalformed(t *testing.T) {
	tests := []struct {
		name string
		key  []byte
	}{
		{"unterminated", []byte("abc")},
		{"trailing bytes", []byte("a\x00\x01b")},
		{"lone nul at end", []byte("a\x00")},
		{"bad escape", []byte("a\x00\x02\x00\x01")},
		{"nul nul", []byte("\x00\x00\x01")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := SplitKey(tt.key); !errors.Is(err, ErrMalformedKey) {
				t.Errorf("SplitKey(%q) error = %v, want ErrMalformedKey", tt.key, err)
			}
		})
	}
}

func TestLastPart(t *testing.T) {
	tests := []struct {
		name  string
		parts []string
	}{
		{"one part", []string{"pk"}},
		{"two parts", []string{"ACTIVE", "cus_1"}},
		{"empty last part", []string{"a", ""}},
		{"escapes before the last part", []string{"\x00\x01", "\x01\x00", "\x00"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := KeyStrings(tt.parts...)
			head, last, err := lastPart(k)
			if err != nil {
				t.Fatal(err)
			}
			n := len(tt.parts) - 1
			if !bytes.Equal(head, KeyStrings(tt.parts[:n]...)) || string(last) != tt.parts[n] {
				t.Errorf("lastPart = %q, %q", head, last)
			}
		})
	}
	for _, bad := range [][]byte{nil, []byte("x"), []byte("x\x00")} {
		if _, _, err := lastPart(bad); err == nil {
			t.Errorf("lastPart(%q) accepted a malformed key", bad)
		}
	}
}

func TestUint64KeyOrder(t *testing.T) {
	ns := []uint64{0, 1, 255, 256, 1 << 32, 1<<63 - 1, 1 << 63, 1<<64 - 1}
	for i := 1; i < len(ns); i++ {
		if bytes.Compare(Uint64Key(ns[i-1]), Uint64Key(ns[i])) >= 0 {
			t.Errorf("Uint64Key(%d) not below Uint64Key(%d)", ns[i-1], ns[i])
		}
		if len(Uint64Key(ns[i])) != 8 {
			t.Errorf("Uint64Key(%d) is not 8 bytes", ns[i])
		}
	}
}

// FuzzKey checks the composite key contract on arbitrary tuples: encoding
// round-trips, tuple order equals byte order, and SplitKey accepts exactly
// the canonical encodings. The two inputs are each read as a tuple whose
// parts are length-prefixed by one byte.
func FuzzKey(f *testing.F) {
	f.Add([]byte("\x01a\x01b"), []byte("\x02ab"))
	f.Add([]byte("\x01\x00"), []byte("\x00"))
	f.Add([]byte("\x02\x00\x01\x01\xff"), []byte("\x02\x00\x01"))
	f.Add([]byte(""), []byte("\x00\x00"))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		pa, pb := fuzzTuple(a), fuzzTuple(b)
		ka, kb := Key(pa...), Key(pb...)
		for _, c := range []struct {
			parts [][]byte
			key   []byte
		}{{pa, ka}, {pb, kb}} {
			got, err := SplitKey(c.key)
			if err != nil {
				t.Fatalf("SplitKey(Key(%q)): %v", c.parts, err)
			}
			if !equalParts(got, c.parts) {
				t.Fatalf("SplitKey(Key(%q)) = %q", c.parts, got)
			}
			if len(c.parts) > 0 {
				head, last, err := lastPart(c.key)
				if err != nil || !bytes.Equal(last, c.parts[len(c.parts)-1]) || !bytes.Equal(head, Key(c.parts[:len(c.parts)-1]...)) {
					t.Fatalf("lastPart(Key(%q)) = %q, %q, %v", c.parts, head, last, err)
				}
			}
		}
		if want, got := compareTuples(pa, pb), bytes.Compare(ka, kb); want != got {
			t.Fatalf("tuple order %d but key order %d for %q vs %q", want, got, pa, pb)
		}
		// Raw input as a key: only canonical encodings decode, and they
		// re-encode to themselves.
		if parts, err := SplitKey(a); err == nil && !bytes.Equal(Key(parts...), a) {
			t.Fatalf("SplitKey accepted non-canonical %q", a)
		}
	})
}

func fuzzTuple(data []byte) [][]byte {
	parts := [][]byte{}
	for len(data) > 0 {
		n := min(int(data[0]), len(data)-1)
		parts = append(parts, data[1:1+n])
		data = data[1+n:]
	}
	return parts
}

func compareTuples(a, b [][]byte) int {
	return slices.CompareFunc(a, b, bytes.Compare)
}

func equalParts(a, b [][]byte) bool {
	return slices.EqualFunc(a, b, bytes.Equal)
}
