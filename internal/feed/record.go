package feed

import (
	"encoding/binary"
	"errors"
	"time"
)

// record is one stored feed entry. The fields the feed filters and sweeps
// by sit in a small header in front of the encoded envelope, so a scan over
// many entries never decodes an envelope it does not return.
type record struct {
	At     time.Time // when the feed appended it, for retention
	ID     string
	Type   string
	Region string
	Env    []byte // proto-encoded eventsv1.Envelope
}

const recordVersion = 1

var errCorruptRecord = errors.New("feed: corrupt record")

func encodeRecord(r record) []byte {
	out := make([]byte, 0, 1+8+3*binary.MaxVarintLen16+len(r.ID)+len(r.Type)+len(r.Region)+len(r.Env))
	out = append(out, recordVersion)
	out = binary.BigEndian.AppendUint64(out, uint64(r.At.UnixNano()))
	for _, s := range []string{r.ID, r.Type, r.Region} {
		out = binary.AppendUvarint(out, uint64(len(s)))
		out = append(out, s...)
	}
	return append(out, r.Env...)
}

// decodeRecord reads a stored entry. The strings and Env are copies, so the
// record outlives the transaction it was read in.
func decodeRecord(b []byte) (record, error) {
	if len(b) < 9 || b[0] != recordVersion {
		return record{}, errCorruptRecord
	}
	r := record{At: time.Unix(0, int64(binary.BigEndian.Uint64(b[1:9]))).UTC()}
	b = b[9:]
	var fields [3]string
	for i := range fields {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return record{}, errCorruptRecord
		}
		fields[i] = string(b[k : k+int(n)])
		b = b[k+int(n):]
	}
	r.ID, r.Type, r.Region = fields[0], fields[1], fields[2]
	r.Env = append([]byte(nil), b...)
	return r, nil
}
