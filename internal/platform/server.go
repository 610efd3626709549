package platform

import (
	"crypto/tls"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
)

// MaxMessageBytes bounds a gRPC request; a batch of 1,000 customers fits
// with room to spare.
const MaxMessageBytes = 8 << 20

// StreamWorkers is how many long-lived goroutines serve incoming calls. A
// call handled on a fresh goroutine first grows its stack (request
// validation and the handlers run deep), which costs more CPU than many
// handlers do; a worker's stack has grown already. Calls beyond the
// workers still run, each on a goroutine of its own.
const StreamWorkers = 64

// NewGRPCServer returns a gRPC server with the Millrace interceptor chain,
// the standard health service and server reflection. Register services on
// it, then call MarkServing for each.
func NewGRPCServer(chain *Chain, tlsConf *tls.Config) (*grpc.Server, *health.Server) {
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(chain.Unary()...),
		grpc.ChainStreamInterceptor(chain.Stream()...),
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.NumStreamWorkers(StreamWorkers),
		grpc.ForceServerCodecV2(ServerCodec),
	}
	if tlsConf != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsConf)))
	}
	s := grpc.NewServer(opts...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(s, hs)
	reflection.Register(s)
	return s, hs
}

// MarkServing sets every registered Millrace service, and the server as a
// whole, to SERVING.
func MarkServing(s *grpc.Server, hs *health.Server) {
	for name := range s.GetServiceInfo() {
		if name == healthpb.Health_ServiceDesc.ServiceName {
			continue
		}
		hs.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
}
