package ids

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
)

func TestNewFormat(t *testing.T) {
	before := time.Now().UTC().Truncate(time.Millisecond)
	id := New("cus")
	after := time.Now().UTC()

	if !strings.HasPrefix(id, "cus_") || len(id) != len("cus_")+26 {
		t.Fatalf("New = %q, want cus_ and 26 characters", id)
	}
	if !Valid("cus", id) {
		t.Errorf("Valid(cus, %q) = false", id)
	}
	got, err := Time(id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Location() != time.UTC {
		t.Errorf("Time location = %v, want UTC", got.Location())
	}
	if got.Before(before) || got.After(after) {
		t.Errorf("Time = %v, want between %v and %v", got, before, after)
	}
}

func TestNewSortsInSequence(t *testing.T) {
	const n = 10000
	got := make([]string, n)
	for i := range got {
		got[i] = New("ord")
	}
	if !slices.IsSorted(got) {
		t.Fatal("ids generated in sequence do not sort in sequence")
	}
	for i := 1; i < n; i++ {
		if got[i] == got[i-1] {
			t.Fatalf("duplicate id %q", got[i])
		}
	}
}

func TestNewConcurrent(t *testing.T) {
	const goroutines, each = 16, 2000
	results := make([][]string, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			ids := make([]string, each)
			for i := range ids {
				ids[i] = New("evt")
			}
			results[g] = ids
		})
	}
	wg.Wait()
	seen := make(map[string]bool, goroutines*each)
	for g, ids := range results {
		if !slices.IsSorted(ids) {
			t.Errorf("goroutine %d: its own ids are not in order", g)
		}
		for _, id := range ids {
			if seen[id] {
				t.Fatalf("duplicate id %q", id)
			}
			seen[id] = true
		}
	}
}

func TestGeneratorMonotonic(t *testing.T) {
	base := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		times []time.Time
	}{
		{"same millisecond", []time.Time{base, base, base}},
		{"clock steps back", []time.Time{base, base.Add(-time.Second), base.Add(-time.Hour)}},
		{"clock moves on", []time.Time{base, base.Add(time.Millisecond), base.Add(time.Second)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &generator{entropy: ulid.Monotonic(strings.NewReader(strings.Repeat("\x01", 4096)), 1)}
			var prev ulid.ULID
			for i, now := range tt.times {
				id := g.next(now)
				if i > 0 && id.Compare(prev) <= 0 {
					t.Fatalf("id %d (%s) does not sort after %s", i, id, prev)
				}
				prev = id
			}
		})
	}

	t.Run("entropy exhausted borrows the next millisecond", func(t *testing.T) {
		// All-ones entropy overflows on the first increment.
		g := &generator{entropy: ulid.Monotonic(strings.NewReader(strings.Repeat("\xff", 4096)), 1)}
		a, b := g.next(base), g.next(base)
		if b.Compare(a) <= 0 {
			t.Fatalf("%s does not sort after %s", b, a)
		}
		if b.Time() != a.Time()+1 {
			t.Errorf("second id at ms %d, want %d", b.Time(), a.Time()+1)
		}
	})
}

func TestValid(t *testing.T) {
	id := New("cus")
	tests := []struct {
		name   string
		prefix string
		id     string
		want   bool
	}{
		{"valid", "cus", id, true},
		{"other prefix", "ord", id, false},
		{"no prefix", "cus", id[4:], false},
		{"lower case ulid", "cus", "cus_" + strings.ToLower(id[4:]), false},
		{"short", "cus", id[:len(id)-1], false},
		{"long", "cus", id + "0", false},
		{"bad character", "cus", id[:len(id)-1] + "U", false},
		{"overflowing first character", "cus", "cus_8" + id[5:], false},
		{"empty", "cus", "", false},
		{"invalid prefix asked", "Cus", "Cus_" + id[4:], false},
		{"prefix with a digit", "v2x", "v2x_" + id[4:], true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Valid(tt.prefix, tt.id); got != tt.want {
				t.Errorf("Valid(%q, %q) = %v, want %v", tt.prefix, tt.id, got, tt.want)
			}
		})
	}
}

func TestTime(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6_000_000, time.UTC)
	known := "ord_" + ulid.MustNew(ulid.Timestamp(at), strings.NewReader(strings.Repeat("\x01", 10))).String()
	tests := []struct {
		name    string
		id      string
		want    time.Time
		wantErr bool
	}{
		{"known time", known, at, false},
		{"no separator", "ord" + known[4:], time.Time{}, true},
		{"bad prefix", "ORD_" + known[4:], time.Time{}, true},
		{"bad ulid", "ord_xyz", time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Time(tt.id)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("Time(%q) error = %v, want ErrInvalid", tt.id, err)
				}
				return
			}
			if err != nil || !got.Equal(tt.want) {
				t.Errorf("Time(%q) = %v, %v, want %v", tt.id, got, err, tt.want)
			}
		})
	}
}

func TestNewPanicsOnBadPrefix(t *testing.T) {
	for _, p := range []string{"", "Cus", "1cus", "cus_x", "averyveryverylongprefix"} {
		t.Run(p, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%q) did not panic", p)
				}
			}()
			New(p)
		})
	}
}

func BenchmarkNew(b *testing.B) {
	for b.Loop() {
		New("evt")
	}
}
