package pbjson

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestAppendTimestamp(t *testing.T) {
	// protojson's formatting, which appendTimestamp reimplements.
	want := func(secs int64, nanos int32) string {
		x := time.Unix(secs, int64(nanos)).UTC().Format("2006-01-02T15:04:05.000000000")
		x = strings.TrimSuffix(x, "000")
		x = strings.TrimSuffix(x, "000")
		x = strings.TrimSuffix(x, ".000")
		return `"` + x + `Z"`
	}
	check := func(secs int64, nanos int32) {
		t.Helper()
		if got := string(appendTimestamp(nil, secs, nanos)); got != want(secs, nanos) {
			t.Fatalf("appendTimestamp(%d, %d) = %s, want %s", secs, nanos, got, want(secs, nanos))
		}
	}
	for _, secs := range []int64{minTimestampSeconds, maxTimestampSeconds, 0, -1, 1, 86399, 86400, -86400, 951782400, 951868800, -2203891200} {
		for _, nanos := range []int32{0, 1, 999999999, 500000000, 120000, 1000, 1000000, 10} {
			check(secs, nanos)
		}
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		check(minTimestampSeconds+rnd.Int64N(maxTimestampSeconds-minTimestampSeconds+1), rnd.Int32N(1e9))
	}
}

func TestParseTimestamp(t *testing.T) {
	check := func(s string) {
		t.Helper()
		secs, nanos, ok := parseTimestamp([]byte(s))
		wsecs, wnanos, wok := parseTimestampSlow(s)
		if ok != wok || secs != wsecs || nanos != wnanos {
			t.Fatalf("parseTimestamp(%q) = %d, %d, %v; protojson's parser: %d, %d, %v", s, secs, nanos, ok, wsecs, wnanos, wok)
		}
	}
	for _, s := range []string{
		"2024-02-29T23:59:59Z", "2023-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "1900-02-29T00:00:00Z",
		"0001-01-01T00:00:00Z", "0000-12-31T23:59:59Z", "9999-12-31T23:59:59.999999999Z", "10000-01-01T00:00:00Z",
		"2024-01-01T00:00:00.Z", "2024-01-01T00:00:00.1Z", "2024-01-01T00:00:00.1234567890Z", "2024-01-01T24:00:00Z",
		"2024-01-01T23:60:00Z", "2024-01-01T23:59:60Z", "2024-00-01T00:00:00Z", "2024-01-00T00:00:00Z", "2024-04-31T00:00:00Z",
		"2024-01-01t00:00:00z", "2024-01-01T00:00:00+01:00", "2024-01-01T00:00:00.5-13:30", "2024-01-01 00:00:00Z",
		"+024-01-01T00:00:00Z", "2024-1-01T00:00:00Z", "2024-01-01T00:00:00.-1Z", "2024-01-01T00:00:00.1a2Z", "",
		"2024-01-01T00:00:00ZZ", "1970-01-01T00:00:00Z",
	} {
		check(s)
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	for range 100000 {
		secs := minTimestampSeconds - 100000 + rnd.Int64N(maxTimestampSeconds-minTimestampSeconds+200000)
		s := time.Unix(secs, 0).UTC().Format("2006-01-02T15:04:05")
		if d := rnd.IntN(11); d > 0 {
			s += "." + strconv.Itoa(1000000000 + rnd.IntN(1000000000))[1:][:min(d, 9)]
			if d == 10 {
				s += "7"
			}
		}
		check(s + "Z")
	}
}

func TestPlainLen(t *testing.T) {
	naive := func(s string) int {
		for i := 0; i < len(s); i++ {
			if !plain[s[i]] {
				return i
			}
		}
		return len(s)
	}
	rnd := rand.New(rand.NewPCG(5, 6))
	alphabet := []byte("abcXYZ019 ~\"\\\x00\x1f\x7f\x80\xff\xe2")
	for range 100000 {
		b := make([]byte, rnd.IntN(40))
		for i := range b {
			if rnd.IntN(10) == 0 {
				b[i] = alphabet[rnd.IntN(len(alphabet))]
			} else {
				b[i] = byte(0x20 + rnd.IntN(0x60))
			}
		}
		if got, want := plainLen(string(b)), naive(string(b)); got != want {
			t.Fatalf("plainLen(%q) = %d, want %d", b, got, want)
		}
	}
}

func TestMapKeyNumbers(t *testing.T) {
	keys := []string{"0", "-0", "+0", "1", "+1", "-1", "01", "", "+", "-", "+-1", "-+1", " 1", "1 ", "1_0", "0x1",
		"2147483647", "2147483648", "-2147483648", "-2147483649", "4294967295", "4294967296",
		"9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
		"18446744073709551615", "18446744073709551616", "99999999999999999999", "1e3"}
	for _, k := range keys {
		for _, bits := range []int{32, 64} {
			got, ok := parseKeyInt([]byte(k), bits)
			want, err := strconv.ParseInt(k, 10, bits)
			if ok != (err == nil) || ok && got != want {
				t.Errorf("parseKeyInt(%q, %d) = %d, %v; strconv: %d, %v", k, bits, got, ok, want, err)
			}
			ugot, ok := parseKeyUint([]byte(k), bits)
			uwant, err := strconv.ParseUint(k, 10, bits)
			if ok != (err == nil) || ok && ugot != uwant {
				t.Errorf("parseKeyUint(%q, %d) = %d, %v; strconv: %d, %v", k, bits, ugot, ok, uwant, err)
			}
		}
	}
}

func TestNumbers(t *testing.T) {
	tests := []struct {
		in      string
		n       int // numberLen
		i32     int64
		i32OK   bool
		u64     uint64
		u64OK   bool
		float64 float64
	}{
		{in: "0", n: 1, i32OK: true, u64OK: true},
		{in: "-0", n: 2, i32OK: true, u64OK: true},
		{in: "12}", n: 2, i32: 12, i32OK: true, u64: 12, u64OK: true, float64: 12},
		{in: "1e2,", n: 3, i32: 100, i32OK: true, u64: 100, u64OK: true, float64: 100},
		{in: "1.50e1]", n: 6, i32: 15, i32OK: true, u64: 15, u64OK: true, float64: 15},
		{in: "1e}", n: 2, i32: 1, i32OK: true, u64: 1, u64OK: true},
		{in: "1e+}", n: 3},
		{in: "-1", n: 2, i32: -1, i32OK: true, float64: -1},
		{in: "2147483648", n: 10, u64: 2147483648, u64OK: true, float64: 2147483648},
		{in: "100e-2", n: 6, i32: 1, i32OK: true, u64: 1, u64OK: true, float64: 1},
		{in: "1.5", n: 3, float64: 1.5},
		{in: "01", n: 0},
		{in: "1.", n: 0},
		{in: "-", n: 0},
		{in: ".5", n: 0},
		{in: "1x", n: 0},
		{in: "1e99999999999", n: 13, float64: math.Inf(1)},
	}
	for _, tt := range tests {
		n := numberLen([]byte(tt.in))
		if n != tt.n {
			t.Errorf("numberLen(%q) = %d, want %d", tt.in, n, tt.n)
		}
		if n == 0 {
			continue
		}
		num := []byte(tt.in[:n])
		if v, ok := parseInt(num, 32); ok != tt.i32OK || v != tt.i32 {
			t.Errorf("parseInt(%q, 32) = %d, %v", num, v, ok)
		}
		if v, ok := parseUint(num, 64); ok != tt.u64OK || v != tt.u64 {
			t.Errorf("parseUint(%q, 64) = %d, %v", num, v, ok)
		}
		if v, ok := parseFloat(num, 64); ok && v != tt.float64 {
			t.Errorf("parseFloat(%q) = %v", num, v)
		}
	}
}

func TestPathAt(t *testing.T) {
	tests := []struct{ doc, want string }{
		{`{"a":`, "a"},
		{`{"a":1,"b":[{"c":"x"},{"d":{"e":`, "b[1].d.e"},
		{`{"a":1,`, ""},
		{`{"a b":{"\u0063":`, `["a b"].c`},
		{`{"m":{"01":`, `m["01"]`},
		{`{"l":[1,2,`, "l[2]"},
		{`{"s":"a,b:{[","t":`, "t"},
		{``, ""},
	}
	for _, tt := range tests {
		if got := pathAt([]byte(tt.doc), len(tt.doc)); got != tt.want {
			t.Errorf("pathAt(%s) = %q, want %q", tt.doc, got, tt.want)
		}
	}
	deep := strings.Repeat(`{"child":`, 40)
	if got := pathAt([]byte(deep), len(deep)); strings.Count(got, "child") != maxPathFrames || !strings.Contains(got, "…") {
		t.Errorf("a path 40 deep reads %q, want %d fields and an ellipsis", got, maxPathFrames)
	}
}
