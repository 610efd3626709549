package pbjson_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// filler populates messages with random values that protojson can write:
// every field kind, lists, maps, oneofs, optional fields, nesting, unicode
// and control characters, and extreme numbers.
type filler struct {
	rnd *rand.Rand
	// maxDepth bounds how deeply messages are nested.
	maxDepth int
}

func newFiller(seed uint64) *filler {
	return &filler{rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), maxDepth: 4}
}

func (f *filler) chance(p float64) bool { return f.rnd.Float64() < p }

// fill sets a random selection of m's fields.
func (f *filler) fill(m protoreflect.Message, depth int) {
	if f.wellKnown(m, depth) {
		return
	}
	fields := m.Descriptor().Fields()
	oneofDone := map[protoreflect.FullName]bool{}
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !f.chance(0.7) {
			continue
		}
		if fd.Message() != nil && !fd.IsMap() && depth >= f.maxDepth {
			continue
		}
		if o := fd.ContainingOneof(); o != nil && !o.IsSynthetic() {
			if oneofDone[o.FullName()] {
				continue
			}
			oneofDone[o.FullName()] = true
		}
		switch {
		case fd.IsList():
			list := m.Mutable(fd).List()
			for n := f.rnd.IntN(4); n > 0; n-- {
				if fd.Message() != nil {
					v := list.NewElement()
					f.fill(v.Message(), depth+1)
					list.Append(v)
				} else {
					list.Append(f.scalar(fd))
				}
			}
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for n := f.rnd.IntN(4); n > 0; n-- {
				k := f.scalar(fd.MapKey()).MapKey()
				if vd := fd.MapValue(); vd.Message() != nil {
					if depth >= f.maxDepth {
						break
					}
					v := mp.NewValue()
					f.fill(v.Message(), depth+1)
					mp.Set(k, v)
				} else {
					mp.Set(k, f.scalar(vd))
				}
			}
		case fd.Message() != nil:
			f.fill(m.Mutable(fd).Message(), depth+1)
		default:
			m.Set(fd, f.scalar(fd))
		}
	}
}

// wellKnown fills the well-known types whose JSON form has rules of its own
// with valid values; it reports false for other messages.
func (f *filler) wellKnown(m protoreflect.Message, depth int) bool {
	switch v := m.Interface().(type) {
	case *timestamppb.Timestamp:
		v.Seconds, v.Nanos = f.timestamp()
	case *durationpb.Duration:
		v.Seconds = f.rnd.Int64N(315576000000*2+1) - 315576000000
		v.Nanos = f.rnd.Int32N(1000000000)
		switch {
		case v.Seconds < 0:
			v.Nanos = -v.Nanos
		case v.Seconds == 0 && f.chance(0.5):
			v.Nanos = -v.Nanos
		}
	case *structpb.Value:
		proto.Merge(v, f.jsonValue(depth))
	case *structpb.Struct:
		proto.Merge(v, f.jsonValue(f.maxDepth).GetStructValue())
		for n := f.rnd.IntN(3); n > 0; n-- {
			if v.Fields == nil {
				v.Fields = map[string]*structpb.Value{}
			}
			v.Fields[f.str()] = f.jsonValue(depth + 1)
		}
	case *structpb.ListValue:
		for n := f.rnd.IntN(3); n > 0; n-- {
			v.Values = append(v.Values, f.jsonValue(depth+1))
		}
	case *anypb.Any:
		if f.chance(0.2) {
			return true // an empty Any
		}
		// Packed deterministically, as protojson packs what it reads, so
		// that proto.Equal can compare the bytes.
		inner := f.anyPayload(depth)
		if err := anypb.MarshalFrom(v, inner, proto.MarshalOptions{Deterministic: true}); err != nil {
			panic(err)
		}
	default:
		if m.Descriptor().FullName() == "google.protobuf.FieldMask" {
			paths := m.Mutable(m.Descriptor().Fields().ByName("paths")).List()
			for n := f.rnd.IntN(4); n > 0; n-- {
				paths.Append(protoreflect.ValueOfString(f.maskPath()))
			}
			return true
		}
		return false
	}
	return true
}

// anyPayload returns a random message to pack in an Any: one of Millrace's,
// or a well-known type, whose JSON form inside an Any is special.
func (f *filler) anyPayload(depth int) proto.Message {
	if f.chance(0.3) {
		switch f.rnd.IntN(3) {
		case 0:
			s, n := f.timestamp()
			return &timestamppb.Timestamp{Seconds: s, Nanos: n}
		case 1:
			return durationpb.New(time.Duration(f.rnd.Int64N(1 << 40)))
		default:
			return f.jsonValue(depth + 1)
		}
	}
	types := messageTypes()
	mt := types[f.rnd.IntN(len(types))]
	m := mt.New()
	if depth < f.maxDepth {
		f.fill(m, depth+1)
	}
	return m.Interface()
}

func (f *filler) jsonValue(depth int) *structpb.Value {
	kind := f.rnd.IntN(6)
	if depth >= f.maxDepth && kind >= 4 {
		kind = 0
	}
	switch kind {
	case 0:
		return structpb.NewNullValue()
	case 1:
		return structpb.NewBoolValue(f.chance(0.5))
	case 2:
		x := f.float64()
		if math.IsNaN(x) || math.IsInf(x, 0) {
			x = 0
		}
		return structpb.NewNumberValue(x)
	case 3:
		return structpb.NewStringValue(f.str())
	case 4:
		l := &structpb.ListValue{}
		for n := f.rnd.IntN(3); n > 0; n-- {
			l.Values = append(l.Values, f.jsonValue(depth+1))
		}
		return structpb.NewListValue(l)
	default:
		s := &structpb.Struct{Fields: map[string]*structpb.Value{}}
		for n := f.rnd.IntN(3); n > 0; n-- {
			s.Fields[f.str()] = f.jsonValue(depth + 1)
		}
		return structpb.NewStructValue(s)
	}
}

func (f *filler) timestamp() (int64, int32) {
	const minSecs, maxSecs = -62135596800, 253402300799
	var s int64
	switch f.rnd.IntN(5) {
	case 0:
		s = minSecs
	case 1:
		s = maxSecs
	case 2:
		s = f.rnd.Int64N(4102444800) // 1970 to 2100
	default:
		s = minSecs + f.rnd.Int64N(maxSecs-minSecs+1)
	}
	var n int32
	switch f.rnd.IntN(5) {
	case 0:
	case 1:
		n = f.rnd.Int32N(1000) * 1000000
	case 2:
		n = f.rnd.Int32N(1000000) * 1000
	case 3:
		n = 999999999
	default:
		n = f.rnd.Int32N(1000000000)
	}
	return s, n
}

// maskPath returns a field mask path that has a lowerCamelCase form.
func (f *filler) maskPath() string {
	var parts []string
	for n := 1 + f.rnd.IntN(3); n > 0; n-- {
		var b strings.Builder
		for w := 1 + f.rnd.IntN(3); w > 0; w-- {
			if b.Len() > 0 {
				b.WriteByte('_')
			}
			b.WriteByte(byte('a' + f.rnd.IntN(26)))
			for k := f.rnd.IntN(5); k > 0; k-- {
				b.WriteByte("abcdefghijklmnopqrstuvwxyz0123456789"[f.rnd.IntN(36)])
			}
		}
		parts = append(parts, b.String())
	}
	return strings.Join(parts, ".")
}

var strPieces = []string{
	"a", "Z", "0", " ", "\"", "\\", "/", "\n", "\r", "\t", "\b", "\f", "\x00", "\x01", "\x1f",
	"\x7f", "é", "ß", "€", "\u2028", "\u2029", "\ufeff", "\ufffd", "😀", "𝄞", "中文", "<", ">", "&",
	"null", "true", "{", "}", "[", "]", ",", ":", "NaN", "-0", "1e5",
}

func (f *filler) str() string {
	var b strings.Builder
	for n := f.rnd.IntN(8); n > 0; n-- {
		if f.chance(0.3) {
			b.WriteRune(rune(f.rnd.IntN(0xd800)))
			continue
		}
		b.WriteString(strPieces[f.rnd.IntN(len(strPieces))])
	}
	return b.String()
}

func (f *filler) float64() float64 {
	switch f.rnd.IntN(14) {
	case 0:
		return math.NaN()
	case 1:
		return math.Inf(1)
	case 2:
		return math.Inf(-1)
	case 3:
		return math.Copysign(0, -1)
	case 4:
		return math.MaxFloat64
	case 5:
		return math.SmallestNonzeroFloat64
	case 6:
		return -1e21
	case 7:
		return 1e-7
	case 8:
		return 123456789012345678
	case 9:
		return 0.1
	default:
		return (f.rnd.Float64() - 0.5) * math.Pow(10, float64(f.rnd.IntN(60)-30))
	}
}

func (f *filler) float32() float32 {
	switch f.rnd.IntN(10) {
	case 0:
		return math.MaxFloat32
	case 1:
		return math.SmallestNonzeroFloat32
	case 2:
		return -1e21
	case 3:
		return float32(math.Copysign(0, -1))
	default:
		return float32(f.float64())
	}
}

func (f *filler) int64() int64 {
	switch f.rnd.IntN(6) {
	case 0:
		return math.MinInt64
	case 1:
		return math.MaxInt64
	case 2:
		return -1
	default:
		return int64(f.rnd.Uint64())
	}
}

func (f *filler) scalar(fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(f.chance(0.5))
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(f.str())
	case protoreflect.BytesKind:
		b := make([]byte, f.rnd.IntN(12))
		for i := range b {
			b[i] = byte(f.rnd.Uint32())
		}
		return protoreflect.ValueOfBytes(b)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		switch f.rnd.IntN(4) {
		case 0:
			return protoreflect.ValueOfInt32(math.MinInt32)
		case 1:
			return protoreflect.ValueOfInt32(math.MaxInt32)
		}
		return protoreflect.ValueOfInt32(int32(f.rnd.Uint32()))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		if f.chance(0.25) {
			return protoreflect.ValueOfUint32(math.MaxUint32)
		}
		return protoreflect.ValueOfUint32(f.rnd.Uint32())
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(f.int64())
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		if f.chance(0.25) {
			return protoreflect.ValueOfUint64(math.MaxUint64)
		}
		return protoreflect.ValueOfUint64(f.rnd.Uint64())
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(f.float32())
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(f.float64())
	case protoreflect.EnumKind:
		values := fd.Enum().Values()
		// protojson writes every google.protobuf.NullValue as null.
		if f.chance(0.15) && fd.Enum().FullName() != "google.protobuf.NullValue" {
			return protoreflect.ValueOfEnum(protoreflect.EnumNumber(f.rnd.Int32N(1000) - 500))
		}
		return protoreflect.ValueOfEnum(values.Get(f.rnd.IntN(values.Len())).Number())
	}
	panic("unexpected kind " + fd.Kind().String())
}

// messageTypes returns every message of Millrace's contracts and of the
// codec's test messages, by full name.
func messageTypes() []protoreflect.MessageType {
	var out []protoreflect.MessageType
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		if strings.HasPrefix(string(mt.Descriptor().FullName()), "millrace.") {
			out = append(out, mt)
		}
		return true
	})
	sortTypes(out)
	return out
}
