package idempotency

import (
	"encoding/binary"
	"errors"
	"time"
)

// Claim states.
const (
	stateInFlight  byte = 1
	stateCompleted byte = 2
)

// entryVersion leads every encoded entry so the layout can change without a
// schema migration: a future decoder can still read version 1.
const entryVersion byte = 1

// errCorrupt reports an entry that does not decode; it means the file was
// damaged or written by an incompatible build.
var errCorrupt = errors.New("corrupt idempotency record")

// entry is what the store keeps per key: the claim and, once completed, the
// answer.
type entry struct {
	state      byte
	hash       []byte
	leaseUntil time.Time
	expiresAt  time.Time
	rec        Record
	// resource is the id of what the request created, attached by the
	// handler in the transaction that created it (see Attach); only an
	// in-flight claim carries one.
	resource string
}

func (e entry) expired(now time.Time) bool { return !now.Before(e.expiresAt) }

// encode lays the entry out as length-prefixed fields. A hand-rolled layout
// keeps records compact and independent of any message schema the caller
// uses for the response bytes it stores.
func (e entry) encode() []byte {
	n := 2 + 6*binary.MaxVarintLen64 + len(e.hash) + len(e.rec.Response) + len(e.rec.Message) + len(e.resource)
	for _, d := range e.rec.Details {
		n += binary.MaxVarintLen64 + len(d)
	}
	b := make([]byte, 0, n)
	b = append(b, entryVersion, e.state)
	b = appendBytes(b, e.hash)
	b = binary.AppendVarint(b, timeNanos(e.leaseUntil))
	b = binary.AppendVarint(b, timeNanos(e.expiresAt))
	b = binary.AppendUvarint(b, uint64(e.rec.Code))
	b = appendBytes(b, e.rec.Response)
	b = appendBytes(b, []byte(e.rec.Message))
	b = binary.AppendUvarint(b, uint64(len(e.rec.Details)))
	for _, d := range e.rec.Details {
		b = appendBytes(b, d)
	}
	b = binary.AppendVarint(b, timeNanos(e.rec.CompletedAt))
	if e.resource != "" {
		// Optional and last, so records without one keep their layout.
		b = appendBytes(b, []byte(e.resource))
	}
	return b
}

// decodeEntry parses an encoded entry. Everything it returns is copied out of
// data, which may be bbolt memory valid only inside the transaction.
func decodeEntry(data []byte) (entry, error) {
	d := decoder{b: data}
	var e entry
	if v := d.byte(); v != entryVersion {
		return entry{}, errCorrupt
	}
	e.state = d.byte()
	if e.state != stateInFlight && e.state != stateCompleted {
		return entry{}, errCorrupt
	}
	e.hash = d.bytes()
	e.leaseUntil = nanosTime(d.varint())
	e.expiresAt = nanosTime(d.varint())
	code := d.uvarint()
	if code > 1<<32-1 {
		return entry{}, errCorrupt
	}
	e.rec.Code = uint32(code)
	e.rec.Response = d.bytes()
	e.rec.Message = string(d.bytes())
	// Each detail takes at least its one-byte length, which bounds the
	// count before anything is allocated for it.
	if n := d.uvarint(); n > 0 && n <= uint64(len(d.b)) {
		e.rec.Details = make([][]byte, n)
		for i := range e.rec.Details {
			e.rec.Details[i] = d.bytes()
		}
	} else if n > 0 {
		return entry{}, errCorrupt
	}
	e.rec.CompletedAt = nanosTime(d.varint())
	if len(d.b) > 0 && !d.err {
		// An attached resource id; when present it is never empty.
		if e.resource = string(d.bytes()); e.resource == "" {
			return entry{}, errCorrupt
		}
	}
	if d.err || len(d.b) != 0 {
		return entry{}, errCorrupt
	}
	return e, nil
}

func appendBytes(b, v []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(v))), v...)
}

// timeNanos encodes the zero time as 0 so an unset time survives a round
// trip as the zero time.
func timeNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func nanosTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// decoder reads fields in order and remembers the first failure, so the
// caller checks once at the end.
type decoder struct {
	b   []byte
	err bool
}

func (d *decoder) byte() byte {
	if d.err || len(d.b) == 0 {
		d.err = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err || n > uint64(len(d.b)) {
		d.err = true
		return nil
	}
	if n == 0 {
		return nil
	}
	v := make([]byte, n)
	copy(v, d.b)
	d.b = d.b[n:]
	return v
}
