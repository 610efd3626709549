// Package ids makes Millrace's resource identifiers: a short type prefix and
// a ULID, such as cus_01JF8ZQ6V3K8Y2W0N5T4R7M9XB.
//
// The prefix tells an operator or a CRM admin what an id names at a glance
// and lets the edge reject an order id passed where a customer id belongs.
// The ULID part sorts by creation time, so ids used as bbolt keys keep
// records in creation order, and "newest first" lists and page tokens need no
// separate timestamp index.
package ids

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// ulidLen is the length of the Crockford base32 ULID part.
const ulidLen = ulid.EncodedSize

// maxPrefixLen keeps ids short enough to read aloud on a support call.
const maxPrefixLen = 16

// ErrInvalid reports a string that is not a Millrace id.
var ErrInvalid = errors.New("ids: invalid id")

// generator hands out ULIDs that strictly increase for the life of the
// process: within one millisecond the random part is incremented, and if the
// wall clock steps back the last millisecond is reused, so ids made later
// always sort later. The mutex is what makes it safe for concurrent use.
type generator struct {
	mu      sync.Mutex
	lastMS  uint64
	entropy *ulid.MonotonicEntropy
}

var gen = &generator{entropy: ulid.Monotonic(rand.Reader, 0)}

func (g *generator) next(now time.Time) ulid.ULID {
	g.mu.Lock()
	defer g.mu.Unlock()
	ms := max(ulid.Timestamp(now), g.lastMS)
	for {
		id, err := ulid.New(ms, g.entropy)
		if err == nil {
			g.lastMS = ms
			return id
		}
		if !errors.Is(err, ulid.ErrMonotonicOverflow) {
			// crypto/rand does not fail on supported platforms; an id
			// without randomness could collide, so stop rather than
			// hand one out.
			panic(fmt.Sprintf("ids: reading randomness: %v", err))
		}
		// The random part of this millisecond is used up: borrow the next
		// millisecond, which keeps the order and costs at most 1ms of
		// timestamp accuracy.
		ms++
	}
}

// New returns a new id with the given type prefix, for example
// New("cus") == "cus_01JF8ZQ6V3K8Y2W0N5T4R7M9XB". Ids from one process
// sort in the order New returned them. It is safe for concurrent use.
//
// New panics if prefix is not 1 to 16 lowercase letters or digits starting
// with a letter: prefixes are constants in Millrace code, so a bad one is a
// programming error.
func New(prefix string) string {
	if !validPrefix(prefix) {
		panic(fmt.Sprintf("ids: invalid prefix %q", prefix))
	}
	return prefix + "_" + gen.next(time.Now()).String()
}

// Valid reports whether id is a well-formed id with the given prefix. Only
// the canonical upper-case form is valid, so one resource has exactly one
// spelling as a key.
func Valid(prefix, id string) bool {
	rest, ok := strings.CutPrefix(id, prefix+"_")
	if !ok || !validPrefix(prefix) {
		return false
	}
	_, err := parseULID(rest)
	return err == nil
}

// Time returns the UTC creation time encoded in id, to the millisecond.
func Time(id string) (time.Time, error) {
	i := strings.LastIndexByte(id, '_')
	if i < 0 || !validPrefix(id[:i]) {
		return time.Time{}, fmt.Errorf("%w %q: want prefix_ULID", ErrInvalid, id)
	}
	u, err := parseULID(id[i+1:])
	if err != nil {
		return time.Time{}, fmt.Errorf("%w %q: %v", ErrInvalid, id, err)
	}
	return ulid.Time(u.Time()).UTC(), nil
}

func parseULID(s string) (ulid.ULID, error) {
	if len(s) != ulidLen {
		return ulid.ULID{}, ulid.ErrDataSize
	}
	u, err := ulid.ParseStrict(s)
	if err != nil {
		return ulid.ULID{}, err
	}
	if u.String() != s {
		return ulid.ULID{}, errors.New("not in canonical upper case")
	}
	return u, nil
}

func validPrefix(p string) bool {
	if p == "" || len(p) > maxPrefixLen || p[0] < 'a' || p[0] > 'z' {
		return false
	}
	for i := 1; i < len(p); i++ {
		c := p[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}
