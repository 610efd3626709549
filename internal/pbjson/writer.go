package pbjson

import (
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var (
	nan    = math.NaN()
	posInf = math.Inf(+1)
	negInf = math.Inf(-1)
)

// Marshaler is a message with a generated JSON encoder.
type Marshaler interface {
	// MarshalProtoJSON appends the message to w. A nil message is {}.
	MarshalProtoJSON(w *Writer)
}

// Writer appends JSON to a byte slice for the generated encoders. It keeps
// the first error (a string that is not UTF-8, a timestamp out of range)
// and goes on writing; Marshal reports it.
type Writer struct {
	buf   []byte
	err   error
	errAt int
}

var writerPool = sync.Pool{New: func() any { return &Writer{buf: make([]byte, 0, 1024)} }}

// Marshal returns the JSON form of m.
func Marshal(m Marshaler) ([]byte, error) {
	w := writerPool.Get().(*Writer)
	defer putWriter(w)
	m.MarshalProtoJSON(w)
	if err := w.Err(); err != nil {
		return nil, err
	}
	return slices.Clone(w.buf), nil
}

// MarshalFunc passes the JSON form of m, in a buffer that is reused once
// it returns, to use.
func MarshalFunc(m Marshaler, use func([]byte) error) error {
	w := writerPool.Get().(*Writer)
	defer putWriter(w)
	m.MarshalProtoJSON(w)
	if err := w.Err(); err != nil {
		return err
	}
	return use(w.buf)
}

func putWriter(w *Writer) {
	if cap(w.buf) > 1<<20 {
		return
	}
	w.buf, w.err, w.errAt = w.buf[:0], nil, 0
	writerPool.Put(w)
}

// Err returns the first error met while writing, naming its field.
func (w *Writer) Err() error {
	if w.err == nil {
		return nil
	}
	e := &Error{Path: pathAt(w.buf, w.errAt), Msg: w.err.Error(), Offset: w.errAt}
	if _, delegated := w.err.(delegatedError); delegated {
		e.Err = w.err.(delegatedError).error
	}
	return e
}

type delegatedError struct{ error }

func (w *Writer) fail(err error) {
	if w.err == nil {
		w.err, w.errAt = err, len(w.buf)
	}
}

// ObjectStart begins a message or map.
func (w *Writer) ObjectStart() { w.buf = append(w.buf, '{') }

// ObjectEnd ends a message or map.
func (w *Writer) ObjectEnd() { w.buf = append(w.buf, '}') }

// ArrayStart begins a repeated field.
func (w *Writer) ArrayStart() { w.buf = append(w.buf, '[') }

// ArrayEnd ends a repeated field.
func (w *Writer) ArrayEnd() { w.buf = append(w.buf, ']') }

// Comma separates array elements.
func (w *Writer) Comma() { w.buf = append(w.buf, ',') }

// Name writes a field's name, given quoted and followed by the colon
// (`"sku":`), after a comma unless it is the object's first.
func (w *Writer) Name(quoted string) {
	if w.buf[len(w.buf)-1] != '{' {
		w.buf = append(w.buf, ',')
	}
	w.buf = append(w.buf, quoted...)
}

// needsCare marks the bytes a string cannot hold as they are: control
// characters, the quote, the backslash, and the start of multi-byte UTF-8
// sequences, which are checked.
var needsCare = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c < 0x20 || c == '"' || c == '\\' || c >= 0x80
	}
	return t
}()

var errInvalidUTF8 = errors.New("invalid UTF-8 in string")

// String writes a string value.
func (w *Writer) String(s string) {
	i := plainLen(s)
	w.buf = append(w.buf, '"')
	if i == len(s) {
		w.buf = append(w.buf, s...)
		w.buf = append(w.buf, '"')
		return
	}
	w.stringSlow(s, i)
}

const hexDigits = "0123456789abcdef"

func (w *Writer) stringSlow(s string, i int) {
	at := len(w.buf) - 1
	buf := append(w.buf, s[:i]...)
	s = s[i:]
	for len(s) > 0 {
		c := s[0]
		switch {
		case !needsCare[c]:
			j := 1
			for j < len(s) && !needsCare[s[j]] {
				j++
			}
			buf = append(buf, s[:j]...)
			s = s[j:]
			continue
		case c >= utf8.RuneSelf:
			rn, size := utf8.DecodeRuneInString(s)
			if rn == utf8.RuneError && size == 1 {
				if w.err == nil {
					w.err, w.errAt = errInvalidUTF8, at
				}
				buf = append(buf, `\ufffd`...)
			} else {
				buf = append(buf, s[:size]...)
			}
			s = s[size:]
			continue
		case c == '"' || c == '\\':
			buf = append(buf, '\\', c)
		case c == '\n':
			buf = append(buf, '\\', 'n')
		case c == '\r':
			buf = append(buf, '\\', 'r')
		case c == '\t':
			buf = append(buf, '\\', 't')
		case c == '\b':
			buf = append(buf, '\\', 'b')
		case c == '\f':
			buf = append(buf, '\\', 'f')
		default:
			buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		s = s[1:]
	}
	w.buf = append(buf, '"')
}

// Bool writes a bool value.
func (w *Writer) Bool(v bool) {
	if v {
		w.buf = append(w.buf, "true"...)
	} else {
		w.buf = append(w.buf, "false"...)
	}
}

// Int32 writes an int32, sint32 or sfixed32 value as a number.
func (w *Writer) Int32(v int32) { w.buf = strconv.AppendInt(w.buf, int64(v), 10) }

// Uint32 writes a uint32 or fixed32 value as a number.
func (w *Writer) Uint32(v uint32) { w.buf = strconv.AppendUint(w.buf, uint64(v), 10) }

// Int64 writes an int64, sint64 or sfixed64 value as a quoted number.
func (w *Writer) Int64(v int64) {
	w.buf = append(w.buf, '"')
	w.buf = strconv.AppendInt(w.buf, v, 10)
	w.buf = append(w.buf, '"')
}

// Uint64 writes a uint64 or fixed64 value as a quoted number.
func (w *Writer) Uint64(v uint64) {
	w.buf = append(w.buf, '"')
	w.buf = strconv.AppendUint(w.buf, v, 10)
	w.buf = append(w.buf, '"')
}

// Float32 writes a float value.
func (w *Writer) Float32(v float32) { w.buf = appendFloat(w.buf, float64(v), 32) }

// Float64 writes a double value.
func (w *Writer) Float64(v float64) { w.buf = appendFloat(w.buf, v, 64) }

// Bytes writes a bytes value in padded standard base64.
func (w *Writer) Bytes(v []byte) {
	w.buf = append(w.buf, '"')
	w.buf = base64.StdEncoding.AppendEncode(w.buf, v)
	w.buf = append(w.buf, '"')
}

// Enum writes an enum value by name, or by number when names has none for
// it; names maps the numbers to names.
func (w *Writer) Enum(v int32, names map[int32]string) {
	if name, ok := names[v]; ok {
		w.buf = append(w.buf, '"')
		w.buf = append(w.buf, name...)
		w.buf = append(w.buf, '"')
		return
	}
	w.Int32(v)
}

// Null writes null, the JSON form of google.protobuf.NullValue.
func (w *Writer) Null() { w.buf = append(w.buf, "null"...) }

// Timestamp writes a google.protobuf.Timestamp value.
func (w *Writer) Timestamp(t *timestamppb.Timestamp) {
	secs, nanos := t.GetSeconds(), t.GetNanos()
	switch {
	case secs < minTimestampSeconds || secs > maxTimestampSeconds:
		w.fail(fmt.Errorf("timestamp seconds out of range: %d", secs))
	case nanos < 0 || nanos > maxNanos:
		w.fail(fmt.Errorf("timestamp nanos out of range: %d", nanos))
	default:
		w.buf = appendTimestamp(w.buf, secs, nanos)
		return
	}
	w.buf = append(w.buf, `""`...)
}

// FieldMask writes a google.protobuf.FieldMask value: its paths in
// lowerCamelCase, separated by commas.
func (w *Writer) FieldMask(m *fieldmaskpb.FieldMask) {
	w.buf = append(w.buf, '"')
	for i, p := range m.GetPaths() {
		if !protoreflect.FullName(p).IsValid() {
			w.fail(fmt.Errorf("invalid path %s in a field mask", quoteForMessage(p)))
			break
		}
		cc := camelCase(p)
		if snakeCase(cc) != p {
			w.fail(fmt.Errorf("path %s in a field mask has no lowerCamelCase form", quoteForMessage(p)))
			break
		}
		if i > 0 {
			w.buf = append(w.buf, ',')
		}
		w.buf = append(w.buf, cc...)
	}
	w.buf = append(w.buf, '"')
}

// camelCase converts a field mask path to lowerCamelCase as protojson does.
func camelCase(s string) string {
	if !strings.Contains(s, "_") {
		return s
	}
	b := make([]byte, 0, len(s))
	underscore := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '_' {
			if underscore && 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			b = append(b, c)
		}
		underscore = c == '_'
	}
	return string(b)
}

// Proto writes a field whose type lies outside Millrace's contracts with
// protojson, under the same options.
func (w *Writer) Proto(m proto.Message) {
	b, err := protojson.MarshalOptions{}.Marshal(m)
	if err != nil {
		w.fail(delegatedError{err})
		w.buf = append(w.buf, "{}"...)
		return
	}
	w.buf = append(w.buf, b...)
}

// MapKey writes a string map key.
func (w *Writer) MapKey(k string) {
	if w.buf[len(w.buf)-1] != '{' {
		w.buf = append(w.buf, ',')
	}
	w.String(k)
	w.buf = append(w.buf, ':')
}

// MapKeyInt writes an integer map key.
func (w *Writer) MapKeyInt(k int64) {
	if w.buf[len(w.buf)-1] != '{' {
		w.buf = append(w.buf, ',')
	}
	w.buf = append(w.buf, '"')
	w.buf = strconv.AppendInt(w.buf, k, 10)
	w.buf = append(w.buf, '"', ':')
}

// MapKeyUint writes an unsigned integer map key.
func (w *Writer) MapKeyUint(k uint64) {
	if w.buf[len(w.buf)-1] != '{' {
		w.buf = append(w.buf, ',')
	}
	w.buf = append(w.buf, '"')
	w.buf = strconv.AppendUint(w.buf, k, 10)
	w.buf = append(w.buf, '"', ':')
}

// MapKeyBool writes a bool map key.
func (w *Writer) MapKeyBool(k bool) {
	if w.buf[len(w.buf)-1] != '{' {
		w.buf = append(w.buf, ',')
	}
	if k {
		w.buf = append(w.buf, `"true":`...)
	} else {
		w.buf = append(w.buf, `"false":`...)
	}
}

// SortedKeys returns the keys of m in order, so that maps are written the
// same way every time.
func SortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// BoolKeys returns the keys of a bool-keyed map, false first.
func BoolKeys[V any](m map[bool]V) []bool {
	keys := make([]bool, 0, 2)
	for _, k := range [...]bool{false, true} {
		if _, ok := m[k]; ok {
			keys = append(keys, k)
		}
	}
	return keys
}

// Strings writes a repeated string field.
func (w *Writer) Strings(vs []string) {
	w.ArrayStart()
	for i, v := range vs {
		if i > 0 {
			w.Comma()
		}
		w.String(v)
	}
	w.ArrayEnd()
}

// Bools writes a repeated bool field.
func (w *Writer) Bools(vs []bool) {
	w.ArrayStart()
	for i, v := range vs {
		if i > 0 {
			w.Comma()
		}
		w.Bool(v)
	}
	w.ArrayEnd()
}

// Int32s writes a repeated int32, sint32 or sfixed32 field.
func (w *Writer) Int32s(vs []int32) {
	w.ArrayStart()
	for i, v := range vs {
		if i > 0 {
			w.Comma()
		}
		w.Int32(v)
	}
	w.ArrayEnd()
}

// Uint32s writes a repeated uint32 or fixed32 field.
func (w *Writer) Uint32s(vs []uint32) {
	w.ArrayStart()
	for i, v := range vs {
		if i > 0 {
			w.Comma()
		}
		w.Uint32(v)
	}
	w.ArrayEnd()
}

// Int64s writes a repeated int64, sint64 or sfixed64 field.
func (w *Writer) Int64s(vs []int64) {
	w.ArrayStart()
	for i, v := range vs {
		if i > 0 {
			w.Comma()
		}
		w.Int64(v)
	}
	w.ArrayEnd()
}

// Uint64s writes a repeated uint64 or fixed64 field.
func (w *Writer) Uint64s(vs []uint64) {
	w.ArrayStart()
	for i, v := range vs {
		if i > 0 {
			w.Comma()
		}
		w.Uint64(v)
	}
	w.ArrayEnd()
}

// Float32s writes a repeated float field.
func (w *Writer) Float32s(vs []float32) {
	w.ArrayStart()
	for i, v := range vs {
		if i > 0 {
			w.Comma()
		}
		w.Float32(v)
	}
	w.ArrayEnd()
}

// Float64s writes a repeated double field.
func (w *Writer) Float64s(vs []float64) {
	w.ArrayStart()
	for i, v := range vs {
		if i > 0 {
			w.Comma()
		}
		w.Float64(v)
	}
	w.ArrayEnd()
}

// BytesList writes a repeated bytes field.
func (w *Writer) BytesList(vs [][]byte) {
	w.ArrayStart()
	for i, v := range vs {
		if i > 0 {
			w.Comma()
		}
		w.Bytes(v)
	}
	w.ArrayEnd()
}

// Enums writes a repeated enum field.
func Enums[E ~int32](w *Writer, vs []E, names map[int32]string) {
	w.ArrayStart()
	for i, v := range vs {
		if i > 0 {
			w.Comma()
		}
		w.Enum(int32(v), names)
	}
	w.ArrayEnd()
}

// Timestamps writes a repeated google.protobuf.Timestamp field.
func (w *Writer) Timestamps(vs []*timestamppb.Timestamp) {
	w.ArrayStart()
	for i, v := range vs {
		if i > 0 {
			w.Comma()
		}
		w.Timestamp(v)
	}
	w.ArrayEnd()
}

// FieldMasks writes a repeated google.protobuf.FieldMask field.
func (w *Writer) FieldMasks(vs []*fieldmaskpb.FieldMask) {
	w.ArrayStart()
	for i, v := range vs {
		if i > 0 {
			w.Comma()
		}
		w.FieldMask(v)
	}
	w.ArrayEnd()
}

// Protos writes a repeated field of a type outside Millrace's contracts.
func Protos[M proto.Message](w *Writer, vs []M) {
	w.ArrayStart()
	for i, v := range vs {
		if i > 0 {
			w.Comma()
		}
		w.Proto(v)
	}
	w.ArrayEnd()
}

// Messages writes a repeated message field of Millrace's own messages.
func Messages[M Marshaler](w *Writer, vs []M) {
	w.ArrayStart()
	for i, v := range vs {
		if i > 0 {
			w.Comma()
		}
		v.MarshalProtoJSON(w)
	}
	w.ArrayEnd()
}
