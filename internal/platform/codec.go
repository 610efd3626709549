package platform

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// Millrace's messages carry generated marshal and unmarshal methods
// (protoc-gen-go-vtproto: SizeVT, MarshalToSizedBufferVT, UnmarshalVT) that
// skip protobuf reflection: about twice as fast to write and a quarter
// faster to read. The gRPC codec below uses them and falls back to the
// standard one for every other message (health, reflection, errors).
//
// One difference matters: UnmarshalVT does not check that string fields
// are valid UTF-8, which proto.Unmarshal does. Servers therefore read
// requests with the standard, checking decoder (ServerCodec), since a
// request comes from anyone and a string that is not UTF-8 would be stored
// and then fail every JSON answer that holds it. Clients read answers with
// the generated one: an answer comes from a Millrace server, which only
// sends what it encoded itself.

// vtMessage is a message with generated marshal and unmarshal methods.
type vtMessage interface {
	SizeVT() int
	MarshalToSizedBufferVT(dAtA []byte) (int, error)
	UnmarshalVT(dAtA []byte) error
}

// codec is the gRPC codec registered as "proto" for the process's clients;
// with checked set it is the servers' (ServerCodec).
type codec struct {
	checked bool
	std     encoding.CodecV2
}

// ServerCodec is the codec Millrace's gRPC servers use: generated methods
// to write answers, the standard decoder (which checks UTF-8) to read
// requests.
var ServerCodec encoding.CodecV2

func init() {
	std := encoding.GetCodecV2(grpcproto.Name)
	if std == nil {
		panic("platform: grpc's proto codec is not registered")
	}
	ServerCodec = codec{checked: true, std: std}
	encoding.RegisterCodecV2(codec{std: std})
}

func (c codec) Name() string { return grpcproto.Name }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(vtMessage)
	if !ok {
		return c.std.Marshal(v)
	}
	size := m.SizeVT()
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf := make([]byte, size)
		if err := marshalVT(m, buf); err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	if err := marshalVT(m, (*buf)[:size]); err != nil {
		pool.Put(buf)
		return nil, err
	}
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

// marshalVT fills buf, whose length is m's size, with m's encoding.
func marshalVT(m vtMessage, buf []byte) error {
	n, err := m.MarshalToSizedBufferVT(buf)
	if err != nil {
		return err
	}
	if n != len(buf) {
		return fmt.Errorf("proto: %T changed while it was being marshalled (%d of %d bytes)", m, n, len(buf))
	}
	return nil
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(vtMessage)
	if c.checked || !ok {
		return c.std.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	// UnmarshalVT merges into what is there; proto.Unmarshal starts afresh.
	if pm, ok := v.(proto.Message); ok {
		proto.Reset(pm)
	}
	// It copies strings and bytes out of buf, so buf can be freed.
	return m.UnmarshalVT(buf.ReadOnlyData())
}
