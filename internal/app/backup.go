package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	"github.com/millrace/millrace/internal/storage"
)

// backup copies every store in --data-dir into --out. While a server holds
// the stores, the copy is streamed from it (hot and consistent: one read
// transaction per store); when none runs, the files are copied directly.
// Every copy is checked with bbolt's consistency check before the command
// reports success.
func backup(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", envOr(getenv, "MILLRACE_DATA_DIR", "./data"), "directory of the stores (MILLRACE_DATA_DIR)")
	out := fs.String("out", "", "directory to write the copies to (created; must be empty)")
	addr := fs.String("grpc-addr", envOr(getenv, "MILLRACE_GRPC_ADDR", "localhost:9090"), "gRPC address of the running server (MILLRACE_GRPC_ADDR)")
	key := fs.String("key", "", "API key with the ops or admin role (prefer MILLRACE_API_KEY)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%v", err)
	}
	if *out == "" {
		return usagef("backup needs --out DIR")
	}
	if *key == "" {
		*key = getenv("MILLRACE_API_KEY")
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return usagef("cannot create --out %s: %v", *out, unwrapPath(err))
	}
	if entries, _ := os.ReadDir(*out); len(entries) > 0 {
		return usagef("--out %s is not empty", *out)
	}
	files, _ := filepath.Glob(filepath.Join(*dataDir, "*.db"))
	if len(files) == 0 {
		return usagef("no stores (*.db) in --data-dir %s", *dataDir)
	}
	var written []string
	var err error
	if storage.InUse(files[0], 200*time.Millisecond) {
		if *key == "" {
			return usagef("the stores are in use by a running server: pass an ops or admin key (--key or MILLRACE_API_KEY) to back up through it")
		}
		fmt.Fprintf(stderr, "stores are held by a running server; streaming a hot copy from %s\n", *addr)
		written, err = backupRemote(ctx, *addr, *key, *out, stderr)
	} else {
		written, err = backupLocal(files, *out, stderr)
	}
	if err != nil {
		return err
	}
	for _, f := range written {
		if err := storage.Check(f); err != nil {
			return fmt.Errorf("the copy %s failed its consistency check: %w", f, err)
		}
	}
	// The key that encrypts webhook signing secrets lives beside the stores;
	// without it the copy of integration.db cannot sign deliveries.
	if keyFile := filepath.Join(*dataDir, "webhook-secret.key"); fileExists(keyFile) {
		if err := copyFile(keyFile, filepath.Join(*out, "webhook-secret.key")); err != nil {
			return fmt.Errorf("copy the webhook key: %w", err)
		}
		fmt.Fprintf(stderr, "  %s (secret: keep this backup private)\n", filepath.Join(*out, "webhook-secret.key"))
	}
	fmt.Fprintf(stdout, "backed up %d stores to %s; every copy passed the consistency check\n", len(written), *out)
	return nil
}

func backupLocal(files []string, out string, stderr io.Writer) ([]string, error) {
	var written []string
	for _, src := range files {
		dst := filepath.Join(out, filepath.Base(src))
		if err := copyFile(src, dst); err != nil {
			return written, err
		}
		fmt.Fprintf(stderr, "  %s\n", dst)
		written = append(written, dst)
	}
	return written, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, in); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func backupRemote(ctx context.Context, addr, key, out string, stderr io.Writer) ([]string, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, usagef("invalid --grpc-addr %q: %v", addr, err)
	}
	defer conn.Close()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
	stream, err := integrationv1.NewOperationsServiceClient(conn).Backup(ctx, &integrationv1.BackupRequest{})
	if err != nil {
		return nil, fmt.Errorf("start backup: %w", err)
	}
	var written []string
	var f *os.File
	var tmp, name string
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if f != nil {
				f.Close()
				os.Remove(tmp)
			}
			return written, fmt.Errorf("backup: %w", err)
		}
		if f == nil || msg.GetFileName() != name {
			name = filepath.Base(msg.GetFileName())
			if name == "." || strings.ContainsAny(name, `/\`) || !strings.HasSuffix(name, ".db") {
				return written, fmt.Errorf("backup: server sent an unexpected file name %q", msg.GetFileName())
			}
			tmp = filepath.Join(out, "."+name+".partial")
			if f, err = os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err != nil {
				return written, err
			}
		}
		if _, err := f.Write(msg.GetData()); err != nil {
			return written, err
		}
		if msg.GetLast() {
			if err := f.Sync(); err != nil {
				return written, err
			}
			f.Close()
			f = nil
			dst := filepath.Join(out, name)
			if err := os.Rename(tmp, dst); err != nil {
				return written, err
			}
			fmt.Fprintf(stderr, "  %s (%d bytes)\n", dst, msg.GetSize())
			written = append(written, dst)
		}
	}
	return written, nil
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}
