package pbvalidate_test

import (
	"math/rand/v2"
	"regexp/syntax"
	"strings"
	"unicode/utf8"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// filler builds random messages that sit on the edges of their rules:
// strings of exactly the limit in multibyte runes and one more, strings
// that match a pattern and ones that miss it by a character, integers on
// and past their bounds, undefined enum numbers, missing messages, lists
// one item short or long, and invalid items deep inside valid ones.
type filler struct {
	rnd *rand.Rand
}

func newFiller(seed uint64) *filler { return &filler{rnd: rand.New(rand.NewPCG(seed, seed^0x5eed))} }

func (f *filler) chance(p float64) bool { return f.rnd.Float64() < p }

func rulesOf(fd protoreflect.FieldDescriptor) *validate.FieldRules {
	r, _ := proto.GetExtension(fd.Options(), validate.E_Field).(*validate.FieldRules)
	return r
}

func (f *filler) fill(m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.ContainingOneof() != nil && !fd.ContainingOneof().IsSynthetic() && m.WhichOneof(fd.ContainingOneof()) != nil {
			continue
		}
		rules := rulesOf(fd)
		switch {
		case fd.IsMap():
			if f.chance(0.3) && depth < 4 {
				mp := m.Mutable(fd).Map()
				for range f.rnd.IntN(3) {
					k := f.scalar(fd.MapKey(), nil).MapKey()
					if fd.MapValue().Message() != nil {
						v := mp.NewValue()
						f.fill(v.Message(), depth+1)
						mp.Set(k, v)
					} else {
						mp.Set(k, f.scalar(fd.MapValue(), nil))
					}
				}
			}
		case fd.IsList():
			n := f.rnd.IntN(4)
			if rep := rules.GetRepeated(); rep != nil && f.chance(0.4) {
				switch f.rnd.IntN(3) {
				case 0:
					n = int(rep.GetMinItems())
				case 1:
					if rep.HasMaxItems() && rep.GetMaxItems() < 300 {
						n = int(rep.GetMaxItems()) + f.rnd.IntN(2)
					}
				case 2:
					n = max(0, int(rep.GetMinItems())-1)
				}
			}
			if depth >= 4 {
				n = min(n, 1)
			}
			if n == 0 {
				continue
			}
			l := m.Mutable(fd).List()
			for range n {
				if fd.Message() != nil {
					v := l.NewElement()
					if f.chance(0.9) {
						f.fill(v.Message(), depth+1)
					}
					l.Append(v)
				} else {
					l.Append(f.scalar(fd, rules.GetRepeated().GetItems()))
				}
			}
		case fd.Message() != nil:
			if depth < 5 && f.chance(0.75) {
				v := m.NewField(fd)
				if f.chance(0.9) {
					f.fill(v.Message(), depth+1)
				}
				m.Set(fd, v)
			}
		default:
			if fd.HasPresence() && f.chance(0.3) {
				continue
			}
			if f.chance(0.15) {
				m.Set(fd, fd.Default()) // zero: unset for implicit presence
				if !fd.HasPresence() {
					m.Clear(fd)
				}
				continue
			}
			m.Set(fd, f.scalar(fd, rules))
		}
	}
}

func (f *filler) scalar(fd protoreflect.FieldDescriptor, rules *validate.FieldRules) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(f.str(rules.GetString()))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(f.str(nil)))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(f.chance(0.5))
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		var n int32
		switch r := rules.GetEnum(); {
		case f.chance(0.7):
			n = int32(vals.Get(f.rnd.IntN(vals.Len())).Number())
		case len(r.GetIn()) > 0 && f.chance(0.5):
			n = r.GetIn()[f.rnd.IntN(len(r.GetIn()))]
		case len(r.GetNotIn()) > 0 && f.chance(0.5):
			n = r.GetNotIn()[f.rnd.IntN(len(r.GetNotIn()))]
		default:
			n = []int32{-1, int32(vals.Len()) + 3, 99, 1 << 20}[f.rnd.IntN(4)]
		}
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(n))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(f.int32(rules.GetInt32()))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(f.rnd.Int64N(1<<40) - 1<<39)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(f.rnd.Uint32())
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(f.rnd.Uint64())
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(f.rnd.Float32() * 1000)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(f.rnd.NormFloat64() * 1000)
	}
	panic("unexpected kind " + fd.Kind().String())
}

func (f *filler) int32(r *validate.Int32Rules) int32 {
	var edges []int32
	if r.HasGte() {
		edges = append(edges, r.GetGte(), r.GetGte()-1, r.GetGte()+1)
	}
	if r.HasGt() {
		edges = append(edges, r.GetGt(), r.GetGt()+1)
	}
	if r.HasLte() {
		edges = append(edges, r.GetLte(), r.GetLte()+1, r.GetLte()-1)
	}
	if r.HasLt() {
		edges = append(edges, r.GetLt(), r.GetLt()-1)
	}
	edges = append(edges, r.GetIn()...)
	edges = append(edges, r.GetNotIn()...)
	if len(edges) > 0 && f.chance(0.7) {
		return edges[f.rnd.IntN(len(edges))]
	}
	return []int32{0, 1, -1, 1 << 30, -1 << 31, int32(f.rnd.IntN(1000))}[f.rnd.IntN(6)]
}

var runes = []rune("aZ9_-.@ /:é日𝄞\u00a0\t")

func (f *filler) runesOf(n int) string {
	var b strings.Builder
	wide := f.chance(0.5) // multibyte runes: byte length far above rune length
	for range n {
		if wide {
			b.WriteRune([]rune("é日𝄞")[f.rnd.IntN(3)])
		} else {
			b.WriteRune(runes[f.rnd.IntN(len(runes))])
		}
	}
	return b.String()
}

func (f *filler) str(r *validate.StringRules) string {
	var choices []func() string
	if r.HasPattern() {
		re, err := syntax.Parse(r.GetPattern(), syntax.Perl)
		if err == nil {
			choices = append(choices,
				func() string { return f.matching(re.Simplify()) },
				func() string { return f.almost(f.matching(re.Simplify())) },
			)
		}
	}
	if r.HasMaxLen() {
		choices = append(choices,
			func() string { return f.runesOf(int(r.GetMaxLen())) },
			func() string { return f.runesOf(int(r.GetMaxLen()) + 1) },
		)
	}
	if r.HasMinLen() {
		choices = append(choices,
			func() string { return f.runesOf(int(r.GetMinLen())) },
			func() string { return f.runesOf(max(0, int(r.GetMinLen())-1)) },
		)
	}
	if in := append(r.GetIn(), r.GetNotIn()...); len(in) > 0 {
		choices = append(choices,
			func() string { return in[f.rnd.IntN(len(in))] },
			func() string { return in[f.rnd.IntN(len(in))] },
			func() string { return f.almost(in[f.rnd.IntN(len(in))]) },
		)
	}
	if r.GetUri() {
		choices = append(choices, func() string {
			return []string{"https://hooks.example.com/x?y=1#z", "https://[::1]:8443/a", "http://ex ample.com", "not a uri", "https:", "mailto:ap@acme.example", "https://ex%zz.com/", ""}[f.rnd.IntN(8)]
		})
	}
	choices = append(choices,
		func() string { return "" },
		func() string { return f.runesOf(f.rnd.IntN(12)) },
	)
	return choices[f.rnd.IntN(len(choices))]()
}

// almost changes one rune of s, or adds or drops one.
func (f *filler) almost(s string) string {
	rs := []rune(s)
	switch k := f.rnd.IntN(3); {
	case k == 0 || len(rs) == 0:
		i := f.rnd.IntN(len(rs) + 1)
		rs = append(rs[:i], append([]rune{runes[f.rnd.IntN(len(runes))]}, rs[i:]...)...)
	case k == 1:
		i := f.rnd.IntN(len(rs))
		rs = append(rs[:i], rs[i+1:]...)
	default:
		rs[f.rnd.IntN(len(rs))] = runes[f.rnd.IntN(len(runes))]
	}
	return string(rs)
}

// matching writes a string that re matches.
func (f *filler) matching(re *syntax.Regexp) string {
	var b strings.Builder
	f.gen(&b, re)
	return b.String()
}

func (f *filler) gen(b *strings.Builder, re *syntax.Regexp) {
	switch re.Op {
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			b.WriteRune(r)
		}
	case syntax.OpCharClass:
		var n int
		for i := 0; i < len(re.Rune); i += 2 {
			n += int(min(re.Rune[i+1], 0x10FFFF)-re.Rune[i]) + 1
		}
		k := f.rnd.IntN(max(n, 1))
		for i := 0; i < len(re.Rune); i += 2 {
			size := int(min(re.Rune[i+1], 0x10FFFF)-re.Rune[i]) + 1
			if k < size {
				r := re.Rune[i] + rune(k)
				if !utf8.ValidRune(r) {
					r = re.Rune[i]
				}
				b.WriteRune(r)
				return
			}
			k -= size
		}
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		b.WriteRune(runes[f.rnd.IntN(5)])
	case syntax.OpCapture:
		f.gen(b, re.Sub[0])
	case syntax.OpConcat:
		for _, s := range re.Sub {
			f.gen(b, s)
		}
	case syntax.OpAlternate:
		f.gen(b, re.Sub[f.rnd.IntN(len(re.Sub))])
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat:
		lo, hi := 0, 3
		switch re.Op {
		case syntax.OpPlus:
			lo = 1
		case syntax.OpQuest:
			hi = 1
		case syntax.OpRepeat:
			lo, hi = re.Min, re.Max
			if hi < 0 {
				hi = lo + 3
			}
		}
		n := lo + f.rnd.IntN(hi-lo+1)
		if f.chance(0.3) {
			n = hi // the longest match
		}
		for range n {
			f.gen(b, re.Sub[0])
		}
	}
}
