package platform

import (
	"bytes"
	"io"
	"reflect"
	"sync"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/millrace/millrace/internal/pbjson"
)

// fastJSON is the REST edge's JSON marshaler. Millrace's own messages go
// through their generated codec (internal/pbjson), which produces and accepts
// what the wrapped JSONPb does, several times faster; anything else (errors,
// HttpBody, non-message values) goes to the JSONPb itself.
type fastJSON struct {
	*runtime.JSONPb
}

// newFastJSON returns j with Millrace's messages going through their
// generated codec, or j itself when its options are not the ones the codec
// implements: protojson's defaults (JSON names, unpopulated fields left out,
// unknown fields refused). The codec caps nesting at pbjson.MaxDepth (100)
// messages where protojson's default is 10000.
func newFastJSON(j *runtime.JSONPb) runtime.Marshaler {
	defaults := j.MarshalOptions == (protojson.MarshalOptions{}) &&
		j.UnmarshalOptions == (protojson.UnmarshalOptions{})
	if !defaults {
		return j
	}
	return &fastJSON{JSONPb: j}
}

// Marshal returns the JSON form of v.
func (j *fastJSON) Marshal(v any) ([]byte, error) {
	if m, ok := v.(pbjson.Marshaler); ok {
		return pbjson.Marshal(m)
	}
	return j.JSONPb.Marshal(v)
}

// Unmarshal reads v from data.
func (j *fastJSON) Unmarshal(data []byte, v any) error {
	if m := decodeTarget(v); m != nil {
		return pbjson.Unmarshal(data, m)
	}
	return j.JSONPb.Unmarshal(data, v)
}

// NewDecoder returns a Decoder reading one value from r, as the gateway reads
// a request body: into the request (&req) or, for a body mapped to one
// field, into that field (&req.Customer). Like the JSONPb's, it reports
// io.EOF for an empty body, which the gateway takes as "no body"; unlike it,
// it refuses data after the value, as protojson does.
func (j *fastJSON) NewDecoder(r io.Reader) runtime.Decoder {
	return runtime.DecoderFunc(func(v any) error {
		m := decodeTarget(v)
		if m == nil {
			return j.JSONPb.NewDecoder(r).Decode(v)
		}
		buf := bodyPool.Get().(*bytes.Buffer)
		defer putBody(buf)
		if _, err := buf.ReadFrom(r); err != nil {
			return err
		}
		if onlySpace(buf.Bytes()) {
			return io.EOF
		}
		// The decoded message shares no memory with the body, which can go
		// back to the pool.
		return pbjson.Unmarshal(buf.Bytes(), m)
	})
}

// NewEncoder returns an Encoder writing each value to w followed by the
// delimiter.
func (j *fastJSON) NewEncoder(w io.Writer) runtime.Encoder {
	return runtime.EncoderFunc(func(v any) error {
		m, ok := v.(pbjson.Marshaler)
		if !ok {
			return j.JSONPb.NewEncoder(w).Encode(v)
		}
		return pbjson.MarshalFunc(m, func(b []byte) error {
			if _, err := w.Write(b); err != nil {
				return err
			}
			_, err := w.Write(j.Delimiter())
			return err
		})
	})
}

var unmarshalerType = reflect.TypeFor[pbjson.Unmarshaler]()

// decodeTarget returns the message to decode into for v: v itself, or for
// a pointer to a message field the message, allocated first when nil as the
// JSONPb does (so that an empty body still leaves an empty message). It
// returns nil for anything else.
func decodeTarget(v any) pbjson.Unmarshaler {
	if m, ok := v.(pbjson.Unmarshaler); ok {
		return m
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return nil
	}
	field := rv.Elem()
	if field.Kind() != reflect.Pointer || !field.Type().Implements(unmarshalerType) {
		return nil
	}
	if field.IsNil() {
		field.Set(reflect.New(field.Type().Elem()))
	}
	return field.Interface().(pbjson.Unmarshaler)
}

func onlySpace(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
		default:
			return false
		}
	}
	return true
}

var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func putBody(b *bytes.Buffer) {
	if b.Cap() > 1<<20 {
		return
	}
	b.Reset()
	bodyPool.Put(b)
}
