package ceilings

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/millrace/millrace/bench/harness"
)

// echoMessage is a small JSON object, shaped like a Millrace REST request.
type echoMessage struct {
	ID       string `json:"id"`
	Customer string `json:"customer"`
	Quantity int    `json:"quantity"`
	Note     string `json:"note"`
}

// HTTPJSONEcho measures a bare net/http server on loopback that decodes a
// small JSON object (about 100 bytes) with encoding/json and encodes it back,
// called by cfg.Concurrency workers through one keep-alive http.Client with
// as many idle connections per host, so each worker keeps its own HTTP/1.1
// connection. The client checks the status and that the echo is byte for byte
// what the server should have written. cfg.Name defaults to HTTPJSONEchoName.
func HTTPJSONEcho(ctx context.Context, cfg harness.Config) (harness.Result, error) {
	if cfg.Name == "" {
		cfg.Name = HTTPJSONEchoName
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return harness.Result{}, fmt.Errorf("http echo: %w", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(echoJSON), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
		<-served
	}()

	msg := echoMessage{ID: "ord-000000000042", Customer: "cus-000000000007", Quantity: 3, Note: strings.Repeat("m", 24)}
	body, err := json.Marshal(msg)
	if err != nil {
		return harness.Result{}, err
	}
	var want bytes.Buffer
	_ = json.NewEncoder(&want).Encode(msg)

	conc := max(cfg.Concurrency, 1)
	transport := &http.Transport{MaxIdleConns: conc, MaxIdleConnsPerHost: conc}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	url := "http://" + ln.Addr().String() + "/echo"
	bufs := make([]bytes.Buffer, conc)

	return harness.Run(ctx, cfg, func(ctx context.Context, worker int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		buf := &bufs[worker]
		buf.Reset()
		if _, err := buf.ReadFrom(resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("http echo: status %s", resp.Status)
		}
		if !bytes.Equal(buf.Bytes(), want.Bytes()) {
			return errors.New("http echo: response differs from request")
		}
		return nil
	}), nil
}

func echoJSON(w http.ResponseWriter, r *http.Request) {
	var m echoMessage
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(m)
}
