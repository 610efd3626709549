package pbvalidate_test

import (
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"testing"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	_ "github.com/millrace/millrace/gen/go/millrace/events/v1"
	_ "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	_ "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	_ "github.com/millrace/millrace/gen/go/millrace/order/v1"
	_ "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	_ "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/pbvalidate"
	"github.com/millrace/millrace/internal/pbvalidate/testpb"
)

const testPackage = "millrace.pbvalidatetest.v1."

// messageTypes returns every message of Millrace's contracts and of the
// validators' test messages, by full name.
func messageTypes() []protoreflect.MessageType {
	var out []protoreflect.MessageType
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		if strings.HasPrefix(string(mt.Descriptor().FullName()), "millrace.") {
			out = append(out, mt)
		}
		return true
	})
	slices.SortFunc(out, func(a, b protoreflect.MessageType) int {
		return strings.Compare(string(a.Descriptor().FullName()), string(b.Descriptor().FullName()))
	})
	return out
}

func seedOf(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// fromProtovalidate returns protovalidate's violations of m, in its order.
func fromProtovalidate(t testing.TB, v protovalidate.Validator, m proto.Message) []pbvalidate.Violation {
	t.Helper()
	err := v.Validate(m)
	if err == nil {
		return nil
	}
	var ve *protovalidate.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("protovalidate: %v", err)
	}
	out := make([]pbvalidate.Violation, 0, len(ve.Violations))
	for _, viol := range ve.Violations {
		out = append(out, pbvalidate.Violation{
			Field:   protovalidate.FieldPathString(viol.Proto.GetField()),
			RuleID:  viol.Proto.GetRuleId(),
			Message: viol.Proto.GetMessage(),
		})
	}
	return out
}

func generated(m proto.Message) []pbvalidate.Violation {
	var vs pbvalidate.Violations
	m.(pbvalidate.Validator).ValidateRules(&vs)
	return vs.List
}

func format(vs []pbvalidate.Violation) string {
	var b strings.Builder
	for _, v := range vs {
		fmt.Fprintf(&b, "\n  %s: %s: %s", v.Field, v.RuleID, v.Message)
	}
	return b.String()
}

// TestSameAsProtovalidate checks, on random messages of every type that has
// a generated validator, that it reports exactly protovalidate's
// violations, in protovalidate's order.
func TestSameAsProtovalidate(t *testing.T) {
	v, err := protovalidate.New()
	if err != nil {
		t.Fatal(err)
	}
	rounds := 150
	if testing.Short() {
		rounds = 50
	}
	var covered, invalid int
	rules := map[string]bool{}
	for _, mt := range messageTypes() {
		if _, ok := mt.New().Interface().(pbvalidate.Validator); !ok {
			continue
		}
		covered++
		name := string(mt.Descriptor().FullName())
		t.Run(name, func(t *testing.T) {
			f := newFiller(seedOf(name))
			// Protovalidate walks a map in Go's random order, so only
			// the set of violations can be compared where maps are.
			maps := hasMaps(mt.Descriptor(), map[protoreflect.FullName]bool{})
			for i := range rounds {
				m := mt.New()
				if i > 0 { // round 0: the empty message
					f.fill(m, 0)
				}
				want := fromProtovalidate(t, v, m.Interface())
				got := generated(m.Interface())
				if !slices.Equal(got, want) && !(maps && sameSet(got, want)) {
					t.Fatalf("round %d: %v\ngenerated:%s\nprotovalidate:%s", i, m.Interface(), format(got), format(want))
				}
				if len(want) > 0 {
					invalid++
				}
				for _, w := range want {
					rules[w.RuleID] = true
				}
			}
		})
	}
	if covered < 100 {
		t.Errorf("only %d messages have generated validators", covered)
	}
	t.Logf("%d message types, %d invalid messages, rules seen: %v", covered, invalid, sortedKeys(rules))
	for _, r := range []string{
		"required", "string.len", "string.min_len", "string.max_len", "string.pattern", "string.in", "string.not_in", "string.uri", "string.uri_empty",
		"int32.gt", "int32.lt", "int32.gte", "int32.lte", "int32.gt_lt", "int32.gte_lte", "int32.gte_lt_exclusive", "int32.in", "int32.not_in",
		"enum.defined_only", "enum.in", "enum.not_in", "repeated.min_items", "repeated.max_items",
	} {
		if !rules[r] && !testing.Short() {
			t.Errorf("no random message broke %s", r)
		}
	}
}

func hasMaps(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) bool {
	if seen[md.FullName()] {
		return false
	}
	seen[md.FullName()] = true
	for i := 0; i < md.Fields().Len(); i++ {
		fd := md.Fields().Get(i)
		if fd.IsMap() || fd.Message() != nil && hasMaps(fd.Message(), seen) {
			return true
		}
	}
	return false
}

func sameSet(a, b []pbvalidate.Violation) bool {
	key := func(v pbvalidate.Violation) string { return v.Field + "\x00" + v.RuleID + "\x00" + v.Message }
	ka, kb := make([]string, len(a)), make([]string, len(b))
	for i := range a {
		ka[i] = key(a[i])
	}
	for i := range b {
		kb[i] = key(b[i])
	}
	slices.Sort(ka)
	slices.Sort(kb)
	return slices.Equal(ka, kb)
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestWhoHasAValidator checks that every contract message has a generated
// validator (none has a rule the generator leaves to protovalidate today),
// and that the test messages with such rules, and those holding them, have
// none.
func TestWhoHasAValidator(t *testing.T) {
	fallback := map[string]bool{
		testPackage + "Celled":      true,
		testPackage + "HoldsCelled": true,
		testPackage + "Unique":      true,
	}
	for _, mt := range messageTypes() {
		name := string(mt.Descriptor().FullName())
		if _, ok := mt.New().Interface().(pbvalidate.Validator); ok == fallback[name] {
			t.Errorf("%s: has a generated validator %v, want %v (see the comment in its .pb.validate.go)", name, ok, !fallback[name])
		}
	}
}

// TestProtoSemantics pins, on the test messages, the cases where the order
// or the presence of a field decides the answer.
func TestProtoSemantics(t *testing.T) {
	v, err := protovalidate.New()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		msg  proto.Message
		want []string // "field rule"
	}{
		{"unset optional fields are skipped, implicit ones checked", &testpb.Scalars{},
			[]string{"opt_required required", "required required", "exact string.len", "in string.in", "not_in string.not_in", "uri string.uri_empty",
				"all string.min_len", "all string.pattern", "all string.in", "gt int32.gt", "gt_lt int32.gt_lt", "exclusive int32.gte_lt_exclusive", "int_in int32.in", "int_not_in int32.not_in", "required_int required"}},
		{"set optional fields are checked, even when zero", &testpb.Scalars{Opt: proto.String(""), OptInt: proto.Int32(0), OptKind: testpb.Kind(7).Enum()},
			[]string{"opt string.min_len", "opt_required required", "required required", "exact string.len", "in string.in", "not_in string.not_in", "uri string.uri_empty",
				"all string.min_len", "all string.pattern", "all string.in", "gt int32.gt", "gt_lt int32.gt_lt", "exclusive int32.gte_lt_exclusive", "int_in int32.in", "int_not_in int32.not_in",
				"opt_int int32.gte_lte", "required_int required", "opt_kind enum.defined_only"}},
		{"map values by key", &testpb.Lists{
			Numbers:  []int32{1},
			One:      &testpb.Scalars{},
			ByName:   map[string]*testpb.Scalars{"a \"b\"": {}},
			ByNumber: map[int32]*testpb.Scalars{-4: {}},
			ById:     map[uint64]*testpb.Scalars{1 << 63: {}},
			ByFlag:   map[bool]*testpb.Scalars{true: nil},
		}, nil},
		{"nil items read as empty messages", &testpb.Lists{Tags: []string{"a"}, Numbers: []int32{1}, One: &testpb.Scalars{}, Scalars: []*testpb.Scalars{nil}}, nil},
		{"list rules, then items in order, then nested messages", &testpb.Lists{
			Tags:    []string{"ok", "", "Bad", "ok"},
			Kinds:   []testpb.Kind{1, 2, 3},
			Scalars: []*testpb.Scalars{{}, {}, {}},
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := fromProtovalidate(t, v, tt.msg)
			got := generated(tt.msg)
			if !sameSet(got, want) || !hasMaps(tt.msg.ProtoReflect().Descriptor(), map[protoreflect.FullName]bool{}) && !slices.Equal(got, want) {
				t.Fatalf("generated:%s\nprotovalidate:%s", format(got), format(want))
			}
			if tt.want == nil {
				return
			}
			var short []string
			for _, w := range want {
				short = append(short, w.Field+" "+w.RuleID)
			}
			if !slices.Equal(short, tt.want) {
				t.Errorf("protovalidate reports %q, the test expects %q", short, tt.want)
			}
		})
	}
}
