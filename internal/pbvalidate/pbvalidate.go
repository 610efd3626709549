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

// segment is one step of the path to the message being validated.
type segment struct {
	name  string
	index int // -1: not an item of a list
}

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
func (v *Violations) Enter(name string) { v.path = append(v.path, segment{name, -1}) }

// EnterIndex descends into item i of the repeated message field name.
func (v *Violations) EnterIndex(name string, i int) { v.path = append(v.path, segment{name, i}) }

// Leave returns from the last Enter or EnterIndex.
func (v *Violations) Leave() { v.path = v.path[:len(v.path)-1] }

// Add records a violation of the field name of the current message.
func (v *Violations) Add(name, ruleID, message string) {
	v.List = append(v.List, Violation{Field: v.field(segment{name, -1}), RuleID: ruleID, Message: message})
}

// AddIndex records a violation of item i of the repeated field name of the
// current message.
func (v *Violations) AddIndex(name string, i int, ruleID, message string) {
	v.List = append(v.List, Violation{Field: v.field(segment{name, i}), RuleID: ruleID, Message: message})
}

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
	if s.index >= 0 {
		b.WriteByte('[')
		b.WriteString(strconv.Itoa(s.index))
		b.WriteByte(']')
	}
}

// IsURI reports whether s is a URI by RFC 3986, as protovalidate's
// string.uri rule decides.
func IsURI(s string) bool { return rules.IsURI(s) }
