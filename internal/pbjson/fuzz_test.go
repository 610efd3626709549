package pbjson_test

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/millrace/millrace/internal/pbjson"
)

// FuzzUnmarshal checks that the codec accepts exactly the documents protojson
// accepts, reads them to the same message, and writes that message as
// protojson does. The first argument picks the message type.
//
// There are no known differences: the codec follows protojson's tokenizer
// down to its quirks (an integer written "1e" before a delimiter reads as 1),
// and its nesting limit is set on protojson here. With protojson's default
// limit (10000) instead, documents nesting messages more than MaxDepth (100)
// deep are refused by the codec only.
func FuzzUnmarshal(f *testing.F) {
	types := messageTypes()
	index := map[string]uint16{}
	for i, mt := range types {
		index[string(mt.Descriptor().FullName())] = uint16(i)
	}
	for _, tt := range append(append([]docCase(nil), invalidDocs...), validDocs...) {
		f.Add(index[tt.typ], []byte(tt.doc))
	}
	fill := newFiller(1)
	for i, mt := range types {
		m := mt.New().Interface()
		fill.fill(m.ProtoReflect(), 0)
		data, err := gatewayMarshal.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint16(i), data)
	}
	f.Fuzz(func(t *testing.T, which uint16, data []byte) {
		mt := types[int(which)%len(types)]
		want := mt.New().Interface()
		wantErr := gatewayUnmarshal.Unmarshal(data, want)
		got := newCodec(t, mt)
		err := pbjson.Unmarshal(data, got)
		switch {
		case err != nil && wantErr == nil:
			t.Fatalf("%s: the codec refuses what protojson accepts: %v\n%q", mt.Descriptor().FullName(), err, data)
		case err == nil && wantErr != nil:
			t.Fatalf("%s: the codec accepts what protojson refuses (%v)\n%q", mt.Descriptor().FullName(), wantErr, data)
		case err != nil:
			var e *pbjson.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not a *pbjson.Error", err)
			}
			return
		}
		if !proto.Equal(got, want) {
			t.Fatalf("%s: read\n%v\nprotojson reads\n%v\nfrom %q", mt.Descriptor().FullName(), got, want, data)
		}
		out, err := pbjson.Marshal(got)
		wantOut, wantErr := gatewayMarshal.Marshal(want)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("%s: writing: codec %v, protojson %v", mt.Descriptor().FullName(), err, wantErr)
		}
		if err == nil && !sameJSON(t, out, wantOut) {
			t.Fatalf("%s: wrote\n%s\nprotojson writes\n%s", mt.Descriptor().FullName(), out, wantOut)
		}
	})
}
