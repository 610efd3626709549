// Package millrace registers the benchmark scenarios that drive a real
// Millrace node started in process (app.Start): real bbolt files with
// fsync, the full interceptor chain, the REST gateway over gRPC. Each
// scenario is judged against a ceiling measured in the same run.
package millrace

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/millrace/millrace/internal/app"
)

// adminKey is the bootstrap key of benchmark nodes.
const adminKey = "mr_bench_admin_key_0123456789abcdef"

// node is a running Millrace with clients for the benchmark workers.
type node struct {
	inst *app.Instance
	dir  string // removed by close; empty for a data dir the caller owns
	conn *grpc.ClientConn
	http *http.Client
	base string
}

// startNode starts an all-in-one node on loopback with rate limiting off
// (the benchmarks measure the chain, not the limiter's refusals), in a new
// temporary data dir that close removes.
func startNode(ctx context.Context, concurrency int) (*node, error) {
	dir, err := os.MkdirTemp("", "millrace-bench-*")
	if err != nil {
		return nil, err
	}
	n, err := startNodeIn(ctx, dir, concurrency)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	n.dir = dir
	return n, nil
}

// startNodeIn starts a node like startNode on an existing data dir, which
// close leaves in place: the one-shot measurements prepare stores first.
func startNodeIn(ctx context.Context, dir string, concurrency int) (*node, error) {
	inst, err := app.Start(ctx, []string{
		"--data-dir", dir, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--rate-limit", "0", "--log-level", "error",
	}, map[string]string{"MILLRACE_ADMIN_KEY": adminKey}, io.Discard)
	if err != nil {
		return nil, fmt.Errorf("start millrace: %w", err)
	}
	conn, err := grpc.NewClient(inst.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		inst.Stop()
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = concurrency * 2
	tr.MaxIdleConnsPerHost = concurrency * 2
	return &node{inst: inst, conn: conn, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}, base: "http://" + inst.HTTPAddr}, nil
}

// close stops the node and removes its data dir when startNode made it.
func (n *node) close() {
	n.conn.Close()
	n.http.CloseIdleConnections()
	_ = n.inst.Stop()
	if n.dir != "" {
		os.RemoveAll(n.dir)
	}
}

// authed returns ctx carrying the admin key, as a client would send it.
func authed(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+adminKey)
}

// get performs an authenticated REST GET and drains the body.
func (n *node) get(ctx context.Context, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+adminKey)
	return n.do(req)
}

// post performs an authenticated REST POST of a JSON body and drains the
// answer.
func (n *node) post(ctx context.Context, path string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+adminKey)
	req.Header.Set("Content-Type", "application/json")
	return n.do(req)
}

func (n *node) do(req *http.Request) error {
	resp, err := n.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: HTTP %d", req.Method, req.URL.Path, resp.StatusCode)
	}
	return nil
}
