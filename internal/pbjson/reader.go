package pbjson

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// MaxDepth is the deepest nesting of messages a Reader accepts, the
// document's own message included, as protojson's RecursionLimit counts.
// protojson's default is 10000; no Millrace contract nests more than a
// handful of levels, and a low limit keeps a hostile document from costing
// stack.
const MaxDepth = 100

// Unmarshaler is a message with a generated JSON decoder.
type Unmarshaler interface {
	// UnmarshalProtoJSON reads the message from r, which is positioned at
	// its value. It records errors on r instead of returning them.
	UnmarshalProtoJSON(r *Reader)
}

// Reader is a JSON tokenizer over a byte slice that the generated decoders
// drive. Between calls it is positioned at the next value to read; the first
// error stops every later read.
type Reader struct {
	data  []byte
	pos   int
	depth int
	key   []byte // the key read last, unescaped; valid until the next read
	buf   []byte // scratch space for unescaping
	err   *Error
	// strs holds the bytes of decoded strings, many to one allocation;
	// bytes once handed out as a string are never written again.
	strs []byte
}

var readerPool = sync.Pool{New: func() any { return new(Reader) }}

// Unmarshal resets m and reads it from data, a single JSON object with
// nothing but white space after it.
func Unmarshal(data []byte, m Unmarshaler) error {
	if rs, ok := m.(interface{ Reset() }); ok {
		rs.Reset()
	}
	r := readerPool.Get().(*Reader)
	r.data, r.pos, r.depth, r.key, r.err = data, 0, 0, nil, nil
	r.skipSpace()
	m.UnmarshalProtoJSON(r)
	if r.err == nil {
		if r.skipSpace(); r.pos < len(r.data) {
			r.syntaxError("unexpected data after the top-level object")
		}
	}
	var err error
	if e := r.err; e != nil {
		e.Path = pathAt(data, e.Offset)
		err = e
	}
	r.data, r.key, r.err = nil, nil, nil
	if cap(r.buf) > 64<<10 {
		r.buf = nil
	}
	readerPool.Put(r)
	return err
}

func (r *Reader) fail(pos int, msg string) {
	if r.err == nil {
		r.err = &Error{Offset: pos, Msg: msg}
	}
}

func (r *Reader) atEOF() bool { return r.pos >= len(r.data) }

func (r *Reader) peek() byte {
	if r.pos < len(r.data) {
		return r.data[r.pos]
	}
	return 0
}

func (r *Reader) skipSpace() {
	for r.pos < len(r.data) {
		switch r.data[r.pos] {
		case ' ', '\t', '\n', '\r':
			r.pos++
		default:
			return
		}
	}
}

const msgEOF = "unexpected end of JSON input"

func (r *Reader) syntaxError(what string) {
	if r.atEOF() {
		r.fail(r.pos, msgEOF)
		return
	}
	r.fail(r.pos, fmt.Sprintf("invalid JSON at offset %d: %s, found %s", r.pos, what, r.tokenText(r.pos)))
}

// wrongType records that the value at the current position cannot be a
// field of the named kind.
func (r *Reader) wrongType(kind string) {
	if r.atEOF() {
		r.fail(r.pos, msgEOF)
		return
	}
	r.fail(r.pos, fmt.Sprintf("invalid value %s for %s field", r.tokenText(r.pos), kind))
}

// tokenText describes the token at pos for an error message.
func (r *Reader) tokenText(pos int) string {
	if pos >= len(r.data) {
		return "end of input"
	}
	switch c := r.data[pos]; {
	case c == '{':
		return "{…}"
	case c == '[':
		return "[…]"
	case c == '"':
		if s, n := scanString(r.data[pos:]); n > 0 {
			return quoteForMessage(s)
		}
		return "a malformed string"
	case isNotDelim(c):
		end := pos
		for end < len(r.data) && end-pos < 32 && isNotDelim(r.data[end]) {
			end++
		}
		return string(r.data[pos:end])
	case c < utf8.RuneSelf:
		return fmt.Sprintf("%q", c)
	default:
		rn, _ := utf8.DecodeRune(r.data[pos:])
		return fmt.Sprintf("%q", rn)
	}
}

// ObjectStart enters a message value and reads its first key. It reports
// false for an empty object or an error.
func (r *Reader) ObjectStart() bool {
	if r.err != nil {
		return false
	}
	if r.depth >= MaxDepth {
		r.fail(r.pos, fmt.Sprintf("messages nest deeper than %d levels", MaxDepth))
		return false
	}
	if r.peek() != '{' {
		r.wrongType("a message")
		return false
	}
	r.depth++
	r.pos++
	r.skipSpace()
	if r.peek() == '}' {
		r.pos++
		r.depth--
		return false
	}
	return r.readKey()
}

// ObjectNext reads the next key of the message being read, or its end, when
// it reports false.
func (r *Reader) ObjectNext() bool {
	if r.err != nil {
		return false
	}
	r.skipSpace()
	switch r.peek() {
	case ',':
		r.pos++
		r.skipSpace()
		return r.readKey()
	case '}':
		r.pos++
		r.depth--
		return false
	}
	r.syntaxError("expected ',' or '}' after a field value")
	return false
}

// Key returns the key read last: a field name, or a map key.
func (r *Reader) Key() []byte { return r.key }

func (r *Reader) readKey() bool {
	if r.peek() != '"' {
		r.syntaxError("expected a field name")
		return false
	}
	k, ok := r.str()
	if !ok {
		return false
	}
	r.key = k
	r.skipSpace()
	if r.peek() != ':' {
		r.syntaxError("expected ':' after a field name")
		return false
	}
	r.pos++
	r.skipSpace()
	return true
}

func (r *Reader) isNull() bool {
	return len(r.data)-r.pos >= 4 && string(r.data[r.pos:r.pos+4]) == "null"
}

// Field marks the field with the given bit in seen as read and reports
// whether a value follows. It reports false for null, which leaves the field
// unset, and records an error for a field given twice (by either of its
// names).
func (r *Reader) Field(seen *uint64, bit uint64) bool {
	if *seen&bit != 0 {
		r.fail(r.pos, "field given twice")
		return false
	}
	*seen |= bit
	if r.isNull() {
		r.pos += 4
		return false
	}
	return true
}

// FieldOrNull is Field for the types whose value null is (NullValue and
// google.protobuf.Value): it reports true for null too.
func (r *Reader) FieldOrNull(seen *uint64, bit uint64) bool {
	if *seen&bit != 0 {
		r.fail(r.pos, "field given twice")
		return false
	}
	*seen |= bit
	return true
}

// Oneof marks the oneof with the given bit in seen as set, recording an
// error when another of its fields already set it.
func (r *Reader) Oneof(seen *uint64, bit uint64, name string) bool {
	if *seen&bit != 0 {
		r.fail(r.pos, fmt.Sprintf("another field of oneof %s is already set", name))
		return false
	}
	*seen |= bit
	return true
}

// Unknown records that the key read last names no field.
func (r *Reader) Unknown() {
	r.fail(r.pos, "unknown field")
}

// ArrayStart enters a repeated field's array; it reports false for an empty
// array or an error.
func (r *Reader) ArrayStart() bool {
	if r.err != nil {
		return false
	}
	if r.peek() != '[' {
		r.wrongType("a repeated")
		return false
	}
	r.pos++
	r.skipSpace()
	if r.peek() == ']' {
		r.pos++
		return false
	}
	return true
}

// ArrayNext moves to the next element, or past the array's end, when it
// reports false.
func (r *Reader) ArrayNext() bool {
	if r.err != nil {
		return false
	}
	r.skipSpace()
	switch r.peek() {
	case ',':
		r.pos++
		r.skipSpace()
		return true
	case ']':
		r.pos++
		return false
	}
	r.syntaxError("expected ',' or ']' after an element")
	return false
}

// MapStart enters a map field's object and reads its first key; it reports
// false for an empty map or an error.
func (r *Reader) MapStart() bool {
	if r.err != nil {
		return false
	}
	if r.peek() != '{' {
		r.wrongType("a map")
		return false
	}
	r.pos++
	r.skipSpace()
	if r.peek() == '}' {
		r.pos++
		return false
	}
	return r.readKey()
}

// MapNext reads the next key of the map being read, or its end, when it
// reports false.
func (r *Reader) MapNext() bool {
	if r.err != nil {
		return false
	}
	r.skipSpace()
	switch r.peek() {
	case ',':
		r.pos++
		r.skipSpace()
		return r.readKey()
	case '}':
		r.pos++
		return false
	}
	r.syntaxError("expected ',' or '}' after a map value")
	return false
}

func (r *Reader) badKey(kind string) {
	r.fail(r.pos, fmt.Sprintf("invalid key %s for a map with %s keys", quoteForMessage(string(r.key)), kind))
}

// DuplicateMapKey records that the key read last was given before.
func (r *Reader) DuplicateMapKey() {
	r.fail(r.pos, "duplicate map key")
}

// MapKeyString returns the key read last as a map key.
func (r *Reader) MapKeyString() string { return r.makeString(r.key) }

// MapKeyBool returns the key read last as a bool map key.
func (r *Reader) MapKeyBool() (bool, bool) {
	switch string(r.key) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	r.badKey("bool")
	return false, false
}

// MapKeyInt32 returns the key read last as an int32 map key.
func (r *Reader) MapKeyInt32() (int32, bool) {
	v, ok := parseKeyInt(r.key, 32)
	if !ok {
		r.badKey("int32")
	}
	return int32(v), ok
}

// MapKeyInt64 returns the key read last as an int64 map key.
func (r *Reader) MapKeyInt64() (int64, bool) {
	v, ok := parseKeyInt(r.key, 64)
	if !ok {
		r.badKey("int64")
	}
	return v, ok
}

// MapKeyUint32 returns the key read last as a uint32 map key.
func (r *Reader) MapKeyUint32() (uint32, bool) {
	v, ok := parseKeyUint(r.key, 32)
	if !ok {
		r.badKey("uint32")
	}
	return uint32(v), ok
}

// MapKeyUint64 returns the key read last as a uint64 map key.
func (r *Reader) MapKeyUint64() (uint64, bool) {
	v, ok := parseKeyUint(r.key, 64)
	if !ok {
		r.badKey("uint64")
	}
	return v, ok
}

// plain marks the bytes a string holds as they are: printable ASCII other
// than the quote and the backslash.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str reads the string at the current position, which is a quote, and
// returns its unescaped bytes; they alias the input or the scratch buffer
// and are valid until the next read.
func (r *Reader) str() ([]byte, bool) {
	data := r.data
	start := r.pos + 1
	i := start + plainLen(unsafe.String(unsafe.SliceData(data[start:]), len(data)-start))
	if i < len(data) && data[i] == '"' {
		r.pos = i + 1
		return data[start:i], true
	}
	return r.strSlow(start, i)
}

func (r *Reader) strSlow(start, i int) ([]byte, bool) {
	data := r.data
	quote := start - 1
	escaped := false
	mark := start
	buf := r.buf[:0]
	for {
		if i >= len(data) {
			r.fail(len(data), msgEOF)
			return nil, false
		}
		c := data[i]
		switch {
		case plain[c]:
			i++
		case c == '"':
			r.pos = i + 1
			if !escaped {
				return data[start:i], true
			}
			buf = append(buf, data[mark:i]...)
			r.buf = buf
			return buf, true
		case c == '\\':
			escaped = true
			buf = append(buf, data[mark:i]...)
			if i+1 >= len(data) {
				r.fail(len(data), msgEOF)
				return nil, false
			}
			switch e := data[i+1]; e {
			case '"', '\\', '/':
				buf = append(buf, e)
				i += 2
			case 'b':
				buf = append(buf, '\b')
				i += 2
			case 'f':
				buf = append(buf, '\f')
				i += 2
			case 'n':
				buf = append(buf, '\n')
				i += 2
			case 'r':
				buf = append(buf, '\r')
				i += 2
			case 't':
				buf = append(buf, '\t')
				i += 2
			case 'u':
				rn, n, ok := r.unicodeEscape(quote, i)
				if !ok {
					return nil, false
				}
				buf = utf8.AppendRune(buf, rn)
				i += n
			default:
				r.fail(quote, fmt.Sprintf("invalid escape %q in string", data[i:i+2]))
				return nil, false
			}
			mark = i
		case c < 0x20:
			r.fail(quote, fmt.Sprintf("invalid character %q in string", c))
			return nil, false
		default:
			rn, size := utf8.DecodeRune(data[i:])
			if rn == utf8.RuneError && size == 1 {
				r.fail(quote, "invalid UTF-8 in string")
				return nil, false
			}
			i += size
		}
	}
}

// unicodeEscape decodes the \uXXXX escape at data[i:], and the low half that
// must follow a high surrogate, as protojson does.
func (r *Reader) unicodeEscape(quote, i int) (rune, int, bool) {
	data := r.data
	if len(data)-i < 6 {
		r.fail(len(data), msgEOF)
		return 0, 0, false
	}
	v, ok := hex4(data[i+2 : i+6])
	if !ok {
		r.fail(quote, fmt.Sprintf("invalid escape %q in string", data[i:i+6]))
		return 0, 0, false
	}
	rn := rune(v)
	if !utf16.IsSurrogate(rn) {
		return rn, 6, true
	}
	j := i + 6
	if len(data)-j < 6 {
		r.fail(len(data), msgEOF)
		return 0, 0, false
	}
	v2, ok := hex4(data[j+2 : j+6])
	rn = utf16.DecodeRune(rn, rune(v2))
	if data[j] != '\\' || data[j+1] != 'u' || rn == unicode.ReplacementChar || !ok {
		r.fail(quote, fmt.Sprintf("invalid escape %q in string", data[j:j+6]))
		return 0, 0, false
	}
	return rn, 12, true
}

func hex4(b []byte) (uint16, bool) {
	var v uint16
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		v = v<<4 | uint16(c)
	}
	return v, true
}

// String reads a string field.
func (r *Reader) String() string {
	if r.peek() != '"' {
		r.wrongType("a string")
		return ""
	}
	b, ok := r.str()
	if !ok {
		return ""
	}
	return r.makeString(b)
}

// Strings are copied into shared chunks of strsChunk bytes rather than
// allocated one by one: a request body holds dozens of short strings (a
// ten-line price simulation 32, over half its allocations). A string kept
// after the message is dropped keeps at most its small chunk alive; longer
// strings get their own allocation.
const (
	strsChunk = 512
	strsOwn   = 64
)

func (r *Reader) makeString(b []byte) string {
	n := len(b)
	switch {
	case n == 0:
		return ""
	case n > strsOwn:
		return string(b)
	case cap(r.strs)-len(r.strs) < n:
		r.strs = make([]byte, 0, strsChunk)
	}
	start := len(r.strs)
	r.strs = append(r.strs, b...)
	return unsafe.String(&r.strs[start], n)
}

// Bool reads a bool field.
func (r *Reader) Bool() bool {
	rest := r.data[min(r.pos, len(r.data)):]
	switch {
	case bytes.HasPrefix(rest, []byte("true")):
		r.pos += 4
		return true
	case bytes.HasPrefix(rest, []byte("false")):
		r.pos += 5
		return false
	}
	r.wrongType("a bool")
	return false
}

// number returns the number at the current position, bare or in a string,
// as 64-bit integers may be written.
func (r *Reader) number(kind string) ([]byte, bool) {
	switch c := r.peek(); {
	case c == '-' || isDigit(c):
		n := numberLen(r.data[r.pos:])
		if n == 0 {
			r.wrongType(kind)
			return nil, false
		}
		b := r.data[r.pos : r.pos+n]
		r.pos += n
		return b, true
	case c == '"':
		start := r.pos
		b, ok := r.str()
		if !ok {
			return nil, false
		}
		if len(b) == 0 || numberLen(b) != len(b) {
			r.pos = start
			r.wrongType(kind)
			return nil, false
		}
		return b, true
	}
	r.wrongType(kind)
	return nil, false
}

func (r *Reader) signed(bits int, kind string) int64 {
	start := r.pos
	b, ok := r.number(kind)
	if !ok {
		return 0
	}
	v, ok := parseInt(b, bits)
	if !ok {
		r.pos = start
		r.wrongType(kind)
	}
	return v
}

func (r *Reader) unsigned(bits int, kind string) uint64 {
	start := r.pos
	b, ok := r.number(kind)
	if !ok {
		return 0
	}
	v, ok := parseUint(b, bits)
	if !ok {
		r.pos = start
		r.wrongType(kind)
	}
	return v
}

// Int32 reads an int32, sint32 or sfixed32 field.
func (r *Reader) Int32() int32 { return int32(r.signed(32, "an int32")) }

// Int64 reads an int64, sint64 or sfixed64 field.
func (r *Reader) Int64() int64 { return r.signed(64, "an int64") }

// Uint32 reads a uint32 or fixed32 field.
func (r *Reader) Uint32() uint32 { return uint32(r.unsigned(32, "a uint32")) }

// Uint64 reads a uint64 or fixed64 field.
func (r *Reader) Uint64() uint64 { return r.unsigned(64, "a uint64") }

func (r *Reader) float(bits int, kind string) float64 {
	start := r.pos
	if r.peek() == '"' {
		b, ok := r.str()
		if !ok {
			return 0
		}
		switch string(b) {
		case "NaN":
			return nan
		case "Infinity":
			return posInf
		case "-Infinity":
			return negInf
		}
		r.pos = start
	}
	b, ok := r.number(kind)
	if !ok {
		return 0
	}
	f, ok := parseFloat(b, bits)
	if !ok {
		r.pos = start
		r.wrongType(kind)
	}
	return f
}

// Float32 reads a float field.
func (r *Reader) Float32() float32 { return float32(r.float(32, "a float")) }

// Float64 reads a double field.
func (r *Reader) Float64() float64 { return r.float(64, "a double") }

var (
	rawStdEncoding = base64.StdEncoding.WithPadding(base64.NoPadding)
	rawURLEncoding = base64.URLEncoding.WithPadding(base64.NoPadding)
)

// Bytes reads a bytes field: base64, standard or URL-safe, padded or not.
func (r *Reader) Bytes() []byte {
	start := r.pos
	if r.peek() != '"' {
		r.wrongType("a bytes")
		return nil
	}
	b, ok := r.str()
	if !ok {
		return nil
	}
	url := bytes.ContainsAny(b, "-_")
	enc := base64.StdEncoding
	switch {
	case url && len(b)%4 != 0:
		enc = rawURLEncoding
	case url:
		enc = base64.URLEncoding
	case len(b)%4 != 0:
		enc = rawStdEncoding
	}
	out := make([]byte, enc.DecodedLen(len(b)))
	n, err := enc.Decode(out, b)
	if err != nil {
		r.pos = start
		r.wrongType("a bytes")
		return nil
	}
	return out[:n]
}

// Enum reads an enum field, given by value name or by number; values maps
// the names to numbers.
func (r *Reader) Enum(values map[string]int32) int32 {
	if r.peek() == '"' {
		start := r.pos
		b, ok := r.str()
		if !ok {
			return 0
		}
		v, ok := values[string(b)]
		if !ok {
			r.pos = start
			r.wrongType("an enum")
		}
		return v
	}
	start := r.pos
	if c := r.peek(); c != '-' && !isDigit(c) {
		r.wrongType("an enum")
		return 0
	}
	b, ok := r.number("an enum")
	if !ok {
		return 0
	}
	v, ok := parseInt(b, 32)
	if !ok {
		r.pos = start
		r.wrongType("an enum")
	}
	return int32(v)
}

// EnumOrNull reads a google.protobuf.NullValue field, for which null is the
// value NULL_VALUE.
func (r *Reader) EnumOrNull(values map[string]int32) int32 {
	if r.isNull() {
		r.pos += 4
		return 0
	}
	return r.Enum(values)
}

func (r *Reader) enterWellKnown() bool {
	if r.depth >= MaxDepth {
		r.fail(r.pos, fmt.Sprintf("messages nest deeper than %d levels", MaxDepth))
		return false
	}
	return true
}

// Timestamp reads a google.protobuf.Timestamp field.
func (r *Reader) Timestamp() *timestamppb.Timestamp {
	if !r.enterWellKnown() {
		return nil
	}
	start := r.pos
	if r.peek() != '"' {
		r.wrongType("a timestamp")
		return nil
	}
	b, ok := r.str()
	if !ok {
		return nil
	}
	secs, nanos, ok := parseTimestamp(b)
	if !ok {
		r.pos = start
		r.wrongType("a timestamp")
		return nil
	}
	return &timestamppb.Timestamp{Seconds: secs, Nanos: nanos}
}

// FieldMask reads a google.protobuf.FieldMask field: lowerCamelCase paths
// separated by commas.
func (r *Reader) FieldMask() *fieldmaskpb.FieldMask {
	if !r.enterWellKnown() {
		return nil
	}
	start := r.pos
	if r.peek() != '"' {
		r.wrongType("a field mask")
		return nil
	}
	b, ok := r.str()
	if !ok {
		return nil
	}
	fm := &fieldmaskpb.FieldMask{}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return fm
	}
	for p := range strings.SplitSeq(s, ",") {
		snake := snakeCase(p)
		if strings.Contains(p, "_") || !protoreflect.FullName(snake).IsValid() {
			r.fail(start, fmt.Sprintf("invalid path %s in a field mask", quoteForMessage(p)))
			return nil
		}
		fm.Paths = append(fm.Paths, snake)
	}
	return fm
}

// Proto reads a field whose type lies outside Millrace's contracts with
// protojson, under the same options and the remaining nesting budget.
func (r *Reader) Proto(m proto.Message) {
	if !r.enterWellKnown() {
		return
	}
	start := r.pos
	end, ok := r.skipValue()
	if !ok {
		return
	}
	value := r.data[start:end]
	if c := value[0]; c == '-' || isDigit(c) {
		// protojson reads a number such as "1e" differently before a
		// delimiter and at the end of its input: keep the delimiter.
		value = append(value[:len(value):len(value)], ' ')
	}
	opts := protojson.UnmarshalOptions{RecursionLimit: MaxDepth - r.depth}
	if err := opts.Unmarshal(value, m); err != nil {
		if r.err == nil {
			r.err = &Error{Offset: start, Msg: err.Error(), Err: err}
		}
	}
}

// skipValue moves past the value at the current position and returns where
// it ends. It checks strings and balances brackets; protojson checks the
// rest of the value it is given.
func (r *Reader) skipValue() (int, bool) {
	depth := 0
	for {
		if r.atEOF() {
			r.fail(r.pos, msgEOF)
			return 0, false
		}
		switch c := r.data[r.pos]; {
		case c == '"':
			if _, ok := r.str(); !ok {
				return 0, false
			}
		case c == '{' || c == '[':
			depth++
			r.pos++
		case c == '}' || c == ']':
			depth--
			r.pos++
		case depth == 0 && isNotDelim(c):
			for r.pos < len(r.data) && isNotDelim(r.data[r.pos]) {
				r.pos++
			}
		default:
			r.pos++
		}
		if depth <= 0 {
			if depth < 0 {
				r.pos--
				r.syntaxError("expected a value")
				return 0, false
			}
			return r.pos, true
		}
	}
}

// snakeCase is the inverse of the lowerCamelCase conversion of field mask
// paths.
func snakeCase(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			b = append(b, '_')
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return string(b)
}
