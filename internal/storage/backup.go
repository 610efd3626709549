package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// WriteBackup writes a consistent copy of the whole store to w while the
// service keeps running. The copy is the state of one read transaction, so
// it never contains half of a write; writers are not blocked while it runs.
func (db *DB) WriteBackup(w io.Writer) (int64, error) {
	var n int64
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("backup store %s: %w", db.path, err)
	}
	return n, nil
}

// BackupFile writes a hot backup of db to dst atomically: the copy goes to a
// temporary file beside dst, is synced, and only then renamed over dst, so a
// crash or a full disk never leaves a truncated backup under the real name.
func BackupFile(db *DB, dst string) (err error) {
	if same, _ := sameFile(db.path, dst); same {
		return fmt.Errorf("backup store %s: destination is the live store file", db.path)
	}
	dir := filepath.Dir(dst)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return fmt.Errorf("backup store %s: %w", db.path, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(fileMode); err != nil {
		return fmt.Errorf("backup store %s: %w", db.path, err)
	}
	if _, err = db.WriteBackup(tmp); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("backup store %s: sync: %w", db.path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("backup store %s: %w", db.path, err)
	}
	if err = os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("backup store %s: %w", db.path, err)
	}
	// Sync the directory so the rename itself survives a crash.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

func sameFile(a, b string) (bool, error) {
	ai, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	bi, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(ai, bi), nil
}

// Check opens the store file at path read-only and verifies it: bbolt's page
// consistency check plus the presence of Millrace schema metadata. It
// returns every problem found, joined, or nil for a sound file. Run it on a
// backup, or on a store whose service is stopped: a running service holds
// the file lock and Check then reports ErrLocked.
func Check(path string) error {
	bdb, err := bbolt.Open(path, fileMode, &bbolt.Options{ReadOnly: true, Timeout: DefaultLockTimeout})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return fmt.Errorf("store %s is %w", path, ErrLocked)
		}
		return fmt.Errorf("check store %s: %w", path, err)
	}
	defer bdb.Close()
	var errs []error
	err = bdb.View(func(tx *bbolt.Tx) error {
		for cerr := range tx.Check() {
			errs = append(errs, cerr)
		}
		meta := tx.Bucket(bucketMeta)
		if meta == nil || meta.Get(metaKeyName) == nil || len(meta.Get(metaKeyVersion)) != 8 {
			errs = append(errs, errors.New("no Millrace schema metadata"))
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("check store %s: %w", path, errors.Join(errs...))
	}
	return nil
}
