package edge

import (
	"fmt"
	"path/filepath"

	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	"github.com/millrace/millrace/internal/storage"
)

// backupChunk is the size of one streamed backup message.
const backupChunk = 1 << 20

// OperationsServer implements the OperationsService.
type OperationsServer struct {
	integrationv1.UnimplementedOperationsServiceServer
	// Stores are the stores this process holds, backed up in order.
	Stores []*storage.DB
}

// Backup streams a hot, consistent copy of every store: each is written
// from one read transaction, so it is a snapshot even while writes go on.
// Each file ends with a message that has last set and the file's size.
func (s *OperationsServer) Backup(_ *integrationv1.BackupRequest, stream integrationv1.OperationsService_BackupServer) error {
	for _, db := range s.Stores {
		w := &chunkWriter{name: filepath.Base(db.Path()), send: stream.Send}
		if _, err := db.WriteBackup(w); err != nil {
			return fmt.Errorf("back up %s: %w", db.Name(), err)
		}
		if err := w.flush(); err != nil {
			return err
		}
		if err := stream.Send(&integrationv1.BackupResponse{FileName: w.name, Offset: w.off, Last: true, Size: w.off}); err != nil {
			return err
		}
	}
	return nil
}

// chunkWriter turns a store's byte stream into backup messages without
// holding the whole file in memory.
type chunkWriter struct {
	name string
	send func(*integrationv1.BackupResponse) error
	buf  []byte
	off  int64
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		room := backupChunk - len(w.buf)
		take := min(room, len(p))
		w.buf = append(w.buf, p[:take]...)
		p = p[take:]
		if len(w.buf) == backupChunk {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	msg := &integrationv1.BackupResponse{FileName: w.name, Data: w.buf, Offset: w.off}
	if err := w.send(msg); err != nil {
		return err
	}
	w.off += int64(len(w.buf))
	w.buf = make([]byte, 0, backupChunk)
	return nil
}
