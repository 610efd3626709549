package ceilings

import (
	"bytes"
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/millrace/millrace/bench/harness"
)

// GRPCConns is how many ClientConns GRPCEcho spreads its workers over, round
// robin. Millrace's gRPC scenarios should dial as many, so the ratio compares
// like with like.
const GRPCConns = 1

// GRPCEcho measures bare grpc-go unary calls over loopback TCP: the interop
// TestService's UnaryCall, whose server answers with the request's 100-byte
// payload, on a grpc.Server with no options and no interceptors, called by
// cfg.Concurrency workers over GRPCConns insecure ClientConns.
//
// It uses generated protobuf stubs and the default codec rather than raw
// bytes because Millrace's RPCs pay for those too; what it leaves out is
// everything Millrace adds: interceptors, authentication, validation and the
// handler's work. cfg.Name defaults to GRPCEchoName.
func GRPCEcho(ctx context.Context, cfg harness.Config) (harness.Result, error) {
	if cfg.Name == "" {
		cfg.Name = GRPCEchoName
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return harness.Result{}, fmt.Errorf("grpc echo: %w", err)
	}
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, echoServer{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		srv.Stop()
		<-served
	}()

	clients := make([]testpb.TestServiceClient, GRPCConns)
	for i := range clients {
		cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return harness.Result{}, fmt.Errorf("grpc echo: dial: %w", err)
		}
		defer cc.Close()
		clients[i] = testpb.NewTestServiceClient(cc)
	}

	body := bytes.Repeat([]byte{'m'}, payloadSize)
	req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: body}}
	return harness.Run(ctx, cfg, func(ctx context.Context, worker int) error {
		resp, err := clients[worker%len(clients)].UnaryCall(ctx, req)
		if err != nil {
			return err
		}
		if got := len(resp.GetPayload().GetBody()); got != payloadSize {
			return fmt.Errorf("grpc echo: got %d bytes back, want %d", got, payloadSize)
		}
		return nil
	}), nil
}

// echoServer answers UnaryCall with the request's payload and nothing else.
type echoServer struct {
	testpb.UnimplementedTestServiceServer
}

func (echoServer) UnaryCall(_ context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: req.GetPayload()}, nil
}
