package platform

import (
	"context"
	"net"
	"reflect"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Channel is a gRPC client connection to services running in the same
// process. A unary call runs the server's interceptor chain and handler
// exactly as a call over the network would — metadata becomes incoming
// metadata, response headers and trailers come back through grpc.Header
// and grpc.Trailer — but without HTTP/2 framing or a second encoding.
// The all-in-one server routes the REST gateway and the services' calls
// to each other through it; streams go to the fallback connection.
type Channel struct {
	unary    grpc.UnaryServerInterceptor
	fallback grpc.ClientConnInterface

	mu       sync.RWMutex
	handlers map[string]inprocHandler
}

type inprocHandler struct {
	impl any
	desc grpc.MethodDesc
}

// NewChannel returns a channel whose calls run through unary (the same
// interceptor chain the gRPC server uses); streaming calls go to fallback.
func NewChannel(unary grpc.UnaryServerInterceptor, fallback grpc.ClientConnInterface) *Channel {
	return &Channel{unary: unary, fallback: fallback, handlers: map[string]inprocHandler{}}
}

// RegisterService implements grpc.ServiceRegistrar.
func (c *Channel) RegisterService(sd *grpc.ServiceDesc, impl any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range sd.Methods {
		c.handlers["/"+sd.ServiceName+"/"+m.MethodName] = inprocHandler{impl: impl, desc: m}
	}
}

var inprocPeer = &peer.Peer{Addr: inprocAddr{}}

type inprocAddr struct{}

func (inprocAddr) Network() string { return "inproc" }
func (inprocAddr) String() string  { return "inproc" }

var _ net.Addr = inprocAddr{}

// Invoke implements grpc.ClientConnInterface. The handler gets a copy of
// args and the caller a copy of the answer, as across a network: either
// side may keep or change its message afterwards.
func (c *Channel) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return c.invoke(ctx, method, args, reply, false, opts)
}

// Handoff returns a view of the channel for a caller that gives its request
// up when it calls and only reads the answer: the REST gateway, whose
// messages live for one HTTP request. The handler takes the request and the
// caller the answer by moving their fields (sub-messages and lists
// included) instead of copying them; everything else is as on c.
func (c *Channel) Handoff() grpc.ClientConnInterface { return handoff{c} }

type handoff struct{ c *Channel }

func (h handoff) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return h.c.invoke(ctx, method, args, reply, true, opts)
}

func (h handoff) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return h.c.NewStream(ctx, desc, method, opts...)
}

// moveMessage makes dst hold what src holds by taking over its fields,
// without copying sub-messages or lists; src must not be used afterwards.
// It reports false when the two are not the same message type.
func moveMessage(dst, src proto.Message) bool {
	dv, sv := reflect.ValueOf(dst), reflect.ValueOf(src)
	if dv.Type() != sv.Type() || dv.Kind() != reflect.Pointer || dv.IsNil() || sv.IsNil() || dv.Pointer() == sv.Pointer() {
		return false
	}
	dv.Elem().Set(sv.Elem())
	return true
}

func (c *Channel) invoke(ctx context.Context, method string, args, reply any, move bool, opts []grpc.CallOption) error {
	c.mu.RLock()
	h, ok := c.handlers[method]
	c.mu.RUnlock()
	if !ok {
		return status.Errorf(codes.Unimplemented, "unknown method %s", method)
	}
	in, ok1 := args.(proto.Message)
	out, ok2 := reply.(proto.Message)
	if !ok1 || !ok2 {
		return status.Errorf(codes.Internal, "in-process call %s with non-proto messages", method)
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	// The server side sees the caller's metadata as incoming and starts
	// with no outgoing metadata of its own, as across a network: a handler
	// calling another service must not forward its caller's credentials.
	sctx := metadata.NewOutgoingContext(ctx, metadata.MD{})
	sctx = metadata.NewIncomingContext(sctx, md.Copy())
	sctx = peer.NewContext(sctx, inprocPeer)
	st := &inprocStream{method: method}
	sctx = grpc.NewContextWithServerTransportStream(sctx, st)
	dec := func(m any) error {
		if !move || !moveMessage(m.(proto.Message), in) {
			copyMessage(m.(proto.Message), in)
		}
		return nil
	}
	resp, err := h.desc.Handler(h.impl, sctx, dec, c.unary)
	for _, o := range opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			*o.HeaderAddr = st.headerMD()
		case grpc.TrailerCallOption:
			*o.TrailerAddr = st.trailerMD()
		}
	}
	if err != nil {
		return err
	}
	rm, ok := resp.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "in-process call %s answered %T", method, resp)
	}
	if !move || !moveMessage(out, rm) {
		copyMessage(out, rm)
	}
	return nil
}

// vtCloner is a message with the generated deep copy of
// protoc-gen-go-vtproto, which every Millrace message has.
type vtCloner interface{ CloneMessageVT() proto.Message }

// copyMessage makes dst a deep copy of src, replacing what dst held: with
// the generated copy when src has one (no reflection), with proto.Merge
// otherwise.
func copyMessage(dst, src proto.Message) {
	if c, ok := src.(vtCloner); ok && moveMessage(dst, c.CloneMessageVT()) {
		return
	}
	proto.Reset(dst)
	proto.Merge(dst, src)
}

// NewStream implements grpc.ClientConnInterface by handing streams to the
// fallback connection.
func (c *Channel) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if c.fallback == nil {
		return nil, status.Errorf(codes.Unimplemented, "streaming call %s needs a network connection", method)
	}
	return c.fallback.NewStream(ctx, desc, method, opts...)
}

// WithToken returns a connection adding "authorization: Bearer token" to
// every call: the credential Millrace services present to each other.
func WithToken(conn grpc.ClientConnInterface, token string) grpc.ClientConnInterface {
	return tokenConn{conn: conn, token: token}
}

type tokenConn struct {
	conn  grpc.ClientConnInterface
	token string
}

func (t tokenConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return t.conn.Invoke(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+t.token), method, args, reply, opts...)
}

func (t tokenConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return t.conn.NewStream(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+t.token), desc, method, opts...)
}

// inprocStream collects the headers and trailers a handler sets.
type inprocStream struct {
	method  string
	mu      sync.Mutex
	header  metadata.MD
	trailer metadata.MD
}

func (s *inprocStream) Method() string { return s.method }

func (s *inprocStream) SetHeader(md metadata.MD) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.header = metadata.Join(s.header, md)
	return nil
}

func (s *inprocStream) SendHeader(md metadata.MD) error { return s.SetHeader(md) }

func (s *inprocStream) SetTrailer(md metadata.MD) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trailer = metadata.Join(s.trailer, md)
	return nil
}

func (s *inprocStream) headerMD() metadata.MD {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.header == nil {
		return metadata.MD{}
	}
	return s.header.Copy()
}

func (s *inprocStream) trailerMD() metadata.MD {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.trailer == nil {
		return metadata.MD{}
	}
	return s.trailer.Copy()
}

// Registrars registers a service on several registrars at once: the gRPC
// server and the in-process channel.
type Registrars []grpc.ServiceRegistrar

// RegisterService implements grpc.ServiceRegistrar.
func (r Registrars) RegisterService(sd *grpc.ServiceDesc, impl any) {
	for _, reg := range r {
		reg.RegisterService(sd, impl)
	}
}
