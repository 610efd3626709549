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

// NewGRPCServer returns a gRPC server with the Millrace interceptor chain,
// the standard health service and server reflection. Register services on
// it, then call MarkServing for each.
func NewGRPCServer(chain *Chain, tlsConf *tls.Config) (*grpc.Server, *health.Server) {
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(chain.Unary()...),
		grpc.ChainStreamInterceptor(chain.Stream()...),
		grpc.MaxRecvMsgSize(MaxMessageBytes),
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
