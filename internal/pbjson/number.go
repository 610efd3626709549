package pbjson

import (
	"bytes"
	"math"
	"strconv"
	"unsafe"
)

// The number grammar and the integer conversions below follow protojson's
// tokenizer exactly, quirks included (for example "1e" followed by a
// delimiter is the integer 1), so that both accept the same documents.

// numberLen returns the length of the JSON number at the start of b, or 0
// when b does not start with one.
func numberLen(b []byte) int {
	n := 0
	if n < len(b) && b[n] == '-' {
		n++
	}
	switch {
	case n >= len(b):
		return 0
	case b[n] == '0':
		n++
	case '1' <= b[n] && b[n] <= '9':
		n++
		for n < len(b) && isDigit(b[n]) {
			n++
		}
	default:
		return 0
	}
	if n+1 < len(b) && b[n] == '.' && isDigit(b[n+1]) {
		n += 2
		for n < len(b) && isDigit(b[n]) {
			n++
		}
	}
	if n+1 < len(b) && (b[n] == 'e' || b[n] == 'E') {
		n++
		if b[n] == '+' || b[n] == '-' {
			n++
			if n == len(b) {
				return 0
			}
		}
		for n < len(b) && isDigit(b[n]) {
			n++
		}
	}
	if n < len(b) && isNotDelim(b[n]) {
		return 0
	}
	return n
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isNotDelim reports whether c may not follow a literal or a number.
func isNotDelim(c byte) bool {
	return c == '-' || c == '+' || c == '.' || c == '_' ||
		'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// plainInt returns the value of a number written as an optional minus and at
// most 18 digits, the usual form; ok is false for anything else, which the
// general conversion handles.
func plainInt(b []byte) (neg bool, v uint64, ok bool) {
	if len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return false, 0, false
	}
	for _, c := range b {
		if !isDigit(c) {
			return false, 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return neg, v, true
}

// intString returns the number in b as a plain decimal integer string, or
// false when it is not an integer (protojson's normalizeToIntString).
func intString(b []byte) (string, bool) {
	neg := false
	if b[0] == '-' {
		neg, b = true, b[1:]
	}
	var intp, frac, exp []byte
	if b[0] == '0' {
		b = b[1:]
	} else {
		n := 1
		for n < len(b) && isDigit(b[n]) {
			n++
		}
		intp, b = b[:n], b[n:]
	}
	if len(b) >= 2 && b[0] == '.' && isDigit(b[1]) {
		n := 2
		for n < len(b) && isDigit(b[n]) {
			n++
		}
		frac, b = b[1:n], b[n:]
	}
	if len(b) >= 2 && (b[0] == 'e' || b[0] == 'E') {
		exp = b[1:]
	}
	frac = bytes.TrimRight(frac, "0")

	if len(intp) == 0 && len(frac) == 0 {
		return "0", true
	}
	e := 0
	if len(exp) > 0 {
		i, err := strconv.ParseInt(string(exp), 10, 32)
		if err != nil {
			return "", false
		}
		e = int(i)
	}
	var num []byte
	if e >= 0 {
		if len(frac) > e {
			return "", false
		}
		const maxDigits = 20
		if len(intp)+e > maxDigits {
			return "", false
		}
		num = append(num, intp...)
		num = append(num, frac...)
		for i := 0; i < e-len(frac); i++ {
			num = append(num, '0')
		}
	} else {
		if len(frac) > 0 {
			return "", false
		}
		index := len(intp) + e
		if index < 0 {
			return "", false
		}
		for _, c := range intp[index:] {
			if c != '0' {
				return "", false
			}
		}
		num = intp[:index]
	}
	if neg {
		return "-" + string(num), true
	}
	return string(num), true
}

// parseInt converts a JSON number to a signed integer of the given size.
func parseInt(b []byte, bits int) (int64, bool) {
	if neg, v, ok := plainInt(b); ok {
		if neg {
			if v > 1<<(bits-1) {
				return 0, false
			}
			return -int64(v), true
		}
		if v > 1<<(bits-1)-1 {
			return 0, false
		}
		return int64(v), true
	}
	s, ok := intString(b)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, bits)
	return v, err == nil
}

// parseUint converts a JSON number to an unsigned integer of the given size.
func parseUint(b []byte, bits int) (uint64, bool) {
	if neg, v, ok := plainInt(b); ok && !neg {
		if bits == 32 && v > math.MaxUint32 {
			return 0, false
		}
		return v, true
	}
	s, ok := intString(b)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, bits)
	return v, err == nil
}

// parseFloat converts a JSON number to a float of the given size.
func parseFloat(b []byte, bits int) (float64, bool) {
	// The string does not outlive the call: strconv copies it into errors.
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(b), len(b)), bits)
	return f, err == nil
}

// parseKeyInt parses a map key as strconv.ParseInt(s, 10, bits) does,
// without converting it to a string.
func parseKeyInt(b []byte, bits int) (int64, bool) {
	neg := false
	if len(b) > 0 && (b[0] == '+' || b[0] == '-') {
		neg, b = b[0] == '-', b[1:]
	}
	u, ok := parseKeyUint(b, 64)
	if !ok {
		return 0, false
	}
	limit := uint64(1) << (bits - 1)
	if neg {
		if u > limit {
			return 0, false
		}
		return -int64(u), true
	}
	if u >= limit {
		return 0, false
	}
	return int64(u), true
}

// parseKeyUint parses a map key as strconv.ParseUint(s, 10, bits) does:
// digits only, no sign.
func parseKeyUint(b []byte, bits int) (uint64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if !isDigit(c) || v > math.MaxUint64/10 {
			return 0, false
		}
		d := uint64(c - '0')
		v *= 10
		if v > math.MaxUint64-d {
			return 0, false
		}
		v += d
	}
	if bits < 64 && v >= 1<<bits {
		return 0, false
	}
	return v, true
}

// appendFloat formats a float as protojson does: NaN and the infinities as
// strings, the shortest representation otherwise, with an exponent outside
// [1e-6, 1e21).
func appendFloat(out []byte, n float64, bits int) []byte {
	switch {
	case math.IsNaN(n):
		return append(out, `"NaN"`...)
	case math.IsInf(n, +1):
		return append(out, `"Infinity"`...)
	case math.IsInf(n, -1):
		return append(out, `"-Infinity"`...)
	}
	format := byte('f')
	if abs := math.Abs(n); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) ||
			bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	out = strconv.AppendFloat(out, n, format, -1, bits)
	if format == 'e' {
		n := len(out)
		if n >= 4 && out[n-4] == 'e' && out[n-3] == '-' && out[n-2] == '0' {
			out[n-2] = out[n-1]
			out = out[:n-1]
		}
	}
	return out
}
