package pbjson

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Error is a JSON encoding or decoding error at one field of a message.
type Error struct {
	// Path is the JSON path of the offending field, for example
	// "lines[2].quantity" or `labels["eu"]`; empty for the document itself.
	Path string
	// Msg says what is wrong with the field.
	Msg string
	// Offset is the byte offset in the document (in the output when
	// encoding) where the offending value starts.
	Offset int
	// Err is the underlying error, when the field was delegated to protojson.
	Err error
}

func (e *Error) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// Unwrap returns the protojson error of a delegated field, if any.
func (e *Error) Unwrap() error { return e.Err }

// maxPathFrames bounds how many path elements an error message shows; the
// middle of a deeper path is elided.
const maxPathFrames = 24

type pathFrame struct {
	array  bool
	index  int
	key    string
	hasKey bool
}

// pathAt returns the JSON path of the value that starts at offset off of doc.
// doc[:off] must be a well-formed JSON prefix, which holds for every error
// position the Reader and Writer record: they stop at the first token that
// is wrong. Only errors pay for this scan.
func pathAt(doc []byte, off int) string {
	var stack []pathFrame
	for i := 0; i < off && i < len(doc); {
		switch c := doc[i]; c {
		case '{':
			stack = append(stack, pathFrame{})
			i++
		case '[':
			stack = append(stack, pathFrame{array: true})
			i++
		case '}', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			i++
		case ',':
			if n := len(stack); n > 0 {
				if stack[n-1].array {
					stack[n-1].index++
				} else {
					stack[n-1].hasKey = false
				}
			}
			i++
		case '"':
			s, n := scanString(doc[i:])
			if n <= 0 {
				i = off // not reached for a well-formed prefix
				break
			}
			if k := len(stack); k > 0 && !stack[k-1].array && !stack[k-1].hasKey {
				stack[k-1].key, stack[k-1].hasKey = s, true
			}
			i += n
		default:
			i++
		}
	}
	return renderPath(stack)
}

func renderPath(stack []pathFrame) string {
	var b strings.Builder
	frames := stack
	elide := len(frames) > maxPathFrames
	for i, f := range frames {
		if elide && i >= maxPathFrames/2 && i < len(frames)-maxPathFrames/2 {
			if i == maxPathFrames/2 {
				b.WriteString(".…")
			}
			continue
		}
		switch {
		case f.array:
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(f.index))
			b.WriteByte(']')
		case f.hasKey && isIdent(f.key):
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(f.key)
		case f.hasKey:
			b.WriteByte('[')
			b.WriteString(quoteForMessage(f.key))
			b.WriteByte(']')
		}
	}
	return b.String()
}

// isIdent reports whether a key can be shown bare in a path.
func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9' {
			continue
		}
		return false
	}
	return true
}

// quoteForMessage quotes s for an error message, shortened when long.
func quoteForMessage(s string) string {
	const max = 64
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "…"
	}
	return strconv.Quote(s)
}

// scanString decodes the JSON string at the start of b, returning it and its
// length in bytes, or n <= 0 when it is not a complete, valid string.
func scanString(b []byte) (s string, n int) {
	r := Reader{data: b}
	v, ok := r.str()
	if !ok {
		return "", 0
	}
	return string(v), r.pos
}
