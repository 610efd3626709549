// Command millrace runs Millrace: the governed business API and event layer
// that keeps a manufacturer's CRM and ERP-side operations in sync.
//
//	millrace serve      run every service in one process (or one with --service)
//	millrace backup     take a hot, consistent copy of every store
//	millrace version    print the version and the contract baseline served
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/millrace/millrace/internal/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := app.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(app.ExitCode(err, os.Stderr))
}
