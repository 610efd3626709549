package pbvalidate

import (
	"regexp"
	"regexp/syntax"
	"slices"
	"sync"
)

// maxStates bounds the automaton a pattern is compiled to; a pattern that
// needs more is matched by package regexp alone.
const maxStates = 2048

// Pattern is a compiled string.pattern rule. It matches exactly as
// regexp.MatchString does, which is what protovalidate uses; ASCII input
// runs on a DFA built on first use (some patterns take a millisecond, and
// most processes use few of them), other input on package regexp.
type Pattern struct {
	re   *regexp.Regexp
	expr string
	once sync.Once
	// next[s*128+c] is the state after ASCII byte c in state s; 0 is the
	// dead state, 1 the start state. nil when the pattern has no DFA.
	next []uint16
	// accept[s] says a match ends at the end of input in state s; done[s]
	// that a match was already found, whatever follows.
	accept, done []bool
}

// MustCompile compiles expr, panicking if it does not compile, like
// regexp.MustCompile.
func MustCompile(expr string) *Pattern {
	return &Pattern{re: regexp.MustCompile(expr), expr: expr}
}

// MatchString reports whether s contains a match of the pattern.
func (p *Pattern) MatchString(s string) bool {
	p.once.Do(p.build)
	if p.next == nil {
		return p.re.MatchString(s)
	}
	st := uint16(1)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			return p.re.MatchString(s)
		}
		if p.done[st] {
			return true
		}
		st = p.next[int(st)*128+int(c)]
		if st == 0 {
			// No thread is alive; a non-ASCII byte later would not
			// change that, but stay exact and let regexp decide.
			for j := i + 1; j < len(s); j++ {
				if s[j] >= 0x80 {
					return p.re.MatchString(s)
				}
			}
			return false
		}
	}
	return p.done[st] || p.accept[st]
}

// build makes the DFA by subset construction over the program of expr,
// simulating an unanchored search: every step also starts a new thread at
// the program's start, as regexp does.
func (p *Pattern) build() {
	re, err := syntax.Parse(p.expr, syntax.Perl)
	if err != nil {
		return
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return
	}
	for _, in := range prog.Inst {
		if in.Op == syntax.InstEmptyWidth && syntax.EmptyOp(in.Arg)&^(syntax.EmptyBeginText|syntax.EmptyEndText) != 0 {
			return // word boundaries, line anchors: not handled
		}
	}
	// closure adds to set the instructions reachable from pc without
	// consuming input; begin-of-text holds only at the start. End-of-text
	// instructions are kept in the set and resolved by accepts.
	var closure func(set []uint32, pc uint32, atStart bool) []uint32
	closure = func(set []uint32, pc uint32, atStart bool) []uint32 {
		if slices.Contains(set, pc) {
			return set
		}
		set = append(set, pc)
		in := &prog.Inst[pc]
		switch in.Op {
		case syntax.InstAlt, syntax.InstAltMatch:
			set = closure(set, in.Out, atStart)
			set = closure(set, in.Arg, atStart)
		case syntax.InstCapture, syntax.InstNop:
			set = closure(set, in.Out, atStart)
		case syntax.InstEmptyWidth:
			if syntax.EmptyOp(in.Arg) == syntax.EmptyBeginText && atStart {
				set = closure(set, in.Out, atStart)
			}
		}
		return set
	}
	// atEnd reports whether a match completes from pc at the end of input.
	var atEnd func(pc uint32, seen map[uint32]bool) bool
	atEnd = func(pc uint32, seen map[uint32]bool) bool {
		if seen[pc] {
			return false
		}
		seen[pc] = true
		in := &prog.Inst[pc]
		switch in.Op {
		case syntax.InstMatch:
			return true
		case syntax.InstAlt, syntax.InstAltMatch:
			return atEnd(in.Out, seen) || atEnd(in.Arg, seen)
		case syntax.InstCapture, syntax.InstNop:
			return atEnd(in.Out, seen)
		case syntax.InstEmptyWidth:
			return syntax.EmptyOp(in.Arg) == syntax.EmptyEndText && atEnd(in.Out, seen)
		}
		return false
	}
	key := func(set []uint32) string {
		slices.Sort(set)
		b := make([]byte, 0, 4*len(set))
		for _, pc := range set {
			b = append(b, byte(pc), byte(pc>>8), byte(pc>>16), byte(pc>>24))
		}
		return string(b)
	}
	restart := closure(nil, uint32(prog.Start), false)
	states := [][]uint32{nil, closure(nil, uint32(prog.Start), true)}
	index := map[string]uint16{key(slices.Clone(states[1])): 1}
	next := make([]uint16, 2*128)
	for s := 1; s < len(states); s++ {
		for c := 0; c < 128; c++ {
			var set []uint32
			for _, pc := range states[s] {
				in := &prog.Inst[pc]
				switch in.Op {
				case syntax.InstRune, syntax.InstRune1, syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
					if in.MatchRune(rune(c)) {
						set = closure(set, in.Out, false)
					}
				}
			}
			for _, pc := range restart {
				set = closure(set, pc, false)
			}
			k := key(set)
			id, ok := index[k]
			if !ok {
				if len(states) >= maxStates {
					return
				}
				id = uint16(len(states))
				index[k] = id
				states = append(states, set)
				next = append(next, make([]uint16, 128)...)
			}
			next[s*128+c] = id
		}
	}
	accept := make([]bool, len(states))
	done := make([]bool, len(states))
	for s, set := range states {
		for _, pc := range set {
			if prog.Inst[pc].Op == syntax.InstMatch {
				done[s] = true
			}
			if atEnd(pc, map[uint32]bool{}) {
				accept[s] = true
			}
		}
	}
	p.next, p.accept, p.done = next, accept, done
}
