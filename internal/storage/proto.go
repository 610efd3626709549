package storage

import "google.golang.org/protobuf/proto"

// Records and events stored as protobuf are written and read with the
// generated methods Millrace's messages carry (protoc-gen-go-vtproto), which
// skip protobuf reflection, and with the standard library for any other
// message. What is stored was checked on its way in (requests by the gRPC
// servers' decoder, platform.ServerCodec; events from NATS by the standard
// one in natsbus), so reading it back skips the UTF-8 check of string
// fields that proto.Unmarshal makes.

type vtMarshaler interface{ MarshalVT() ([]byte, error) }

type vtUnmarshaler interface{ UnmarshalVT([]byte) error }

// MarshalProto encodes m as proto.Marshal does.
func MarshalProto(m proto.Message) ([]byte, error) {
	if vt, ok := m.(vtMarshaler); ok {
		return vt.MarshalVT()
	}
	return proto.Marshal(m)
}

// UnmarshalProto decodes b into m, which must be empty: the generated
// decoder merges into what is there.
func UnmarshalProto(b []byte, m proto.Message) error {
	if vt, ok := m.(vtUnmarshaler); ok {
		return vt.UnmarshalVT(b)
	}
	return proto.Unmarshal(b, m)
}
