// Package pbvalidate is the runtime of the validators that
// cmd/protoc-gen-go-validate generates from the protovalidate rules of
// Millrace's contracts. A generated ValidateRules method appends to a
// Violations the same violations, with the same field paths, rule ids and
// messages, that protovalidate reports for the message, without protobuf
// reflection or CEL.
package pbvalidate

import (
	"strconv"
	"strings"

	"github.com/millrace/millrace/internal/pbvalidate/internal/rules"
)

// Validator is implemented by every message that has a generated validator.
type Validator interface {
	ValidateRules(v *Violations)
}

// Violation is one broken rule.
type Violation struct {
	// Field is the path of the field, as protovalidate.FieldPathString
	// writes it ("lines[2].quantity.value").
	Field string
	// RuleID is protovalidate's rule id ("string.min_len").
	RuleID string
	// Message is protovalidate's message for the rule.
	Message string
}

// segment is one step of the path to the message being validated: a
// field, an item of a list, or a value of a map. Keys are formatted only
// when a violation is recorded.
type segment struct {
	name string
	kind segmentKind
	skey string // string key
	ikey int64  // index or signed integer key; 1 for a true bool key
	ukey uint64 // unsigned integer key
}

type segmentKind uint8

const (
	plainField segmentKind = iota
	listIndex
	stringKey
	intKey
	uintKey
	boolKey
)

// Violations collects violations while generated validators walk a message;
// it keeps the path to the current message so that a valid message costs
// no string building. The zero value is ready to use.
type Violations struct {
	List []Violation
	path []segment
}

// Reset empties v for reuse.
func (v *Violations) Reset() {
	clear(v.List)
	v.List = v.List[:0]
	v.path = v.path[:0]
}

// Enter descends into the message field name.
func (v *Violations) Enter(name string) { v.path = append(v.path, segment{name: name}) }

// EnterIndex descends into item i of the repeated message field name.
func (v *Violations) EnterIndex(name string, i int) {
	v.path = append(v.path, segment{name: name, kind: listIndex, ikey: int64(i)})
}

// EnterStringKey descends into the value at key k of the map field name.
func (v *Violations) EnterStringKey(name, k string) {
	v.path = append(v.path, segment{name: name, kind: stringKey, skey: k})
}

// EnterIntKey descends into the value at key k of the map field name.
func (v *Violations) EnterIntKey(name string, k int64) {
	v.path = append(v.path, segment{name: name, kind: intKey, ikey: k})
}

// EnterUintKey descends into the value at key k of the map field name.
func (v *Violations) EnterUintKey(name string, k uint64) {
	v.path = append(v.path, segment{name: name, kind: uintKey, ukey: k})
}

// EnterBoolKey descends into the value at key k of the map field name.
func (v *Violations) EnterBoolKey(name string, k bool) {
	s := segment{name: name, kind: boolKey}
	if k {
		s.ikey = 1
	}
	v.path = append(v.path, s)
}

// Leave returns from the last Enter.
func (v *Violations) Leave() { v.path = v.path[:len(v.path)-1] }

// Add records a violation of the field name of the current message.
func (v *Violations) Add(name, ruleID, message string) {
	v.List = append(v.List, Violation{Field: v.field(segment{name: name}), RuleID: ruleID, Message: message})
}

// AddIndex records a violation of item i of the repeated field name of the
// current message.
func (v *Violations) AddIndex(name string, i int, ruleID, message string) {
	v.List = append(v.List, Violation{Field: v.field(segment{name: name, kind: listIndex, ikey: int64(i)}), RuleID: ruleID, Message: message})
}

// field writes the path as protovalidate.FieldPathString does.
func (v *Violations) field(last segment) string {
	var b strings.Builder
	for _, s := range v.path {
		writeSegment(&b, s)
		b.WriteByte('.')
	}
	writeSegment(&b, last)
	return b.String()
}

func writeSegment(b *strings.Builder, s segment) {
	b.WriteString(s.name)
	switch s.kind {
	case plainField:
		return
	case listIndex, intKey:
		b.WriteByte('[')
		b.WriteString(strconv.FormatInt(s.ikey, 10))
	case stringKey:
		b.WriteByte('[')
		b.WriteString(strconv.Quote(s.skey))
	case uintKey:
		b.WriteByte('[')
		b.WriteString(strconv.FormatUint(s.ukey, 10))
	case boolKey:
		b.WriteByte('[')
		b.WriteString(strconv.FormatBool(s.ikey == 1))
	}
	b.WriteByte(']')
}

// IsURI reports whether s is a URI by RFC 3986, as protovalidate's
// string.uri rule decides.
func IsURI(s string) bool { return rules.IsURI(s) }
