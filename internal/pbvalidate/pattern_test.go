package pbvalidate

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// TestPatternIsRegexp checks the DFA against package regexp on the
// contracts' patterns and on patterns with what the DFA must get right:
// no anchors, one anchor, alternation, case folding, classes with
// non-ASCII members, counted repetition, and patterns it refuses.
func TestPatternIsRegexp(t *testing.T) {
	patterns := []string{
		`^[A-Z]{3}$`,
		`^[A-Z0-9][A-Z0-9._-]{0,63}$`,
		`^(0|[1-9][0-9]{0,11})(\.[0-9]{1,9})?$`,
		`^[A-Za-z0-9._]{1,200}\*?$`,
		`^([^@\s]+@[^@\s]+\.[^@\s]+)?$`,
		`^[a-z]{2}(-[A-Z]{2})?$`,
		`ab+c`,
		`^ab`,
		`ab$`,
		`(?i)^eu|na$`,
		`a.c`,
		`(?s)a.c`,
		``,
		`^$`,
		`\bword\b`,
		`(?m)^x$`,
		`[é日]x`,
		`^(a|ab)(c|bcd)(d*)$`,
		`x{2,5}?y`,
	}
	alphabet := []string{"a", "b", "c", "d", "x", "y", "A", "Z", "E", "U", "N", "0", "1", "9", ".", "_", "-", "*", "@", " ", "\t", "\n", "é", "日", "w", "o", "r"}
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, expr := range patterns {
		re := regexp.MustCompile(expr)
		p := MustCompile(expr)
		for i := 0; i < 5000; i++ {
			var b strings.Builder
			n := rnd.IntN(12)
			if rnd.IntN(10) == 0 {
				n = 190 + rnd.IntN(20)
			}
			for range n {
				b.WriteString(alphabet[rnd.IntN(len(alphabet))])
			}
			s := b.String()
			if got, want := p.MatchString(s), re.MatchString(s); got != want {
				t.Fatalf("%q on %q: %v, regexp says %v", expr, s, got, want)
			}
		}
	}
	for _, tt := range []struct {
		expr string
		dfa  bool
	}{
		{`^[A-Z]{3}$`, true},
		{`\bword\b`, false},
		{`(?m)^x$`, false},
	} {
		p := MustCompile(tt.expr)
		p.MatchString("")
		if got := p.next != nil; got != tt.dfa {
			t.Errorf("%q: DFA %v, want %v", tt.expr, got, tt.dfa)
		}
	}
}

// FuzzPattern checks the DFA against package regexp on the contracts'
// kinds of patterns and any input.
func FuzzPattern(f *testing.F) {
	patterns := []string{
		`^[A-Z]{3}$`,
		`^-?(0|[1-9][0-9]{0,14})(\.[0-9]{1,6})?$`,
		`^[A-Za-z0-9._]{1,200}\*?$`,
		`^([^@\s]+@[^@\s]+\.[^@\s]+)?$`,
		`(?i)^eu|na$`,
		`a.c`,
	}
	compiled := make([]*Pattern, len(patterns))
	res := make([]*regexp.Regexp, len(patterns))
	for i, p := range patterns {
		compiled[i], res[i] = MustCompile(p), regexp.MustCompile(p)
	}
	for _, s := range []string{"", "EUR", "eur", "12.50", "-0.000001", "01", "a@b.c", "a@b", "NA", "abc", "a\nc", "日本", "x\x80y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for i, p := range compiled {
			if got, want := p.MatchString(s), res[i].MatchString(s); got != want {
				t.Fatalf("%q on %q: %v, regexp says %v", patterns[i], s, got, want)
			}
		}
	})
}
