// Package app is the Millrace binary as a library: command-line parsing,
// configuration, and the wiring of stores, services, the event bus and the
// REST edge into one running node. cmd/millrace calls Run; tests and
// benchmarks call Start to run a real node in process.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
)

// ExitCode prints err on one line and returns the process exit code:
// configuration mistakes exit 2, other failures 1.
func ExitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "millrace: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// Run runs one millrace command until ctx ends.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printUsage(stderr)
		return usagef("missing command: serve, backup or version")
	}
	switch args[0] {
	case "serve":
		cfg, specs, err := parseServe(args[1:], getenv, stderr)
		if err != nil {
			return err
		}
		return serve(ctx, cfg, specs, TuneGC(getenv), stdout, stderr)
	case "backup":
		return backup(ctx, args[1:], getenv, stdout, stderr)
	case "version":
		printVersion(stdout)
		return nil
	case "-h", "--help", "help":
		printUsage(stdout)
		return nil
	}
	printUsage(stderr)
	return usagef("unknown command %q", args[0])
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `usage: millrace <command> [flags]

commands:
  serve     run Millrace (all services in one process by default; -h for flags)
  backup    take a hot, consistent copy of every store (-h for flags)
  version   print the version and the contract baseline served
`)
}

// Instance is a node started in process by Start.
type Instance struct {
	GRPCAddr string // host:port of the gRPC server
	HTTPAddr string // host:port of the REST edge
	AdminKey string // the bootstrap admin key (from MILLRACE_ADMIN_KEY or generated)
	stop     context.CancelFunc
	done     chan error
}

// Stop shuts the node down gracefully and waits for it.
func (i *Instance) Stop() error {
	i.stop()
	return <-i.done
}

// Start runs `millrace serve` with args and env in process and returns once
// it serves. Listen addresses may use port 0. Logs go to logOut.
func Start(ctx context.Context, args []string, env map[string]string, logOut io.Writer) (*Instance, error) {
	getenv := func(k string) string { return env[k] }
	cfg, _, err := parseServe(args, getenv, io.Discard)
	if err != nil {
		return nil, err
	}
	log := newLogger(cfg.LogLevel, logOut)
	n, err := newNode(cfg, log, io.Discard)
	if err != nil {
		return nil, err
	}
	n.started = make(chan struct{})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		err := n.run(runCtx)
		n.closeStores()
		done <- err
	}()
	select {
	case <-n.started:
	case err := <-done:
		cancel()
		if err == nil {
			err = errors.New("millrace stopped before serving")
		}
		return nil, err
	}
	return &Instance{GRPCAddr: n.addrs[0], HTTPAddr: n.addrs[1], AdminKey: n.adminKey, stop: cancel, done: done}, nil
}
