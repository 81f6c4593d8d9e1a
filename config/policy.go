package config

import (
	"errors"
	"fmt"
	"strconv"
)

// ErrBadPattern is wrapped by every error about a pattern in the plaintext
// list: NewPolicy's *PatternError and Parse's *ParseError.
var ErrBadPattern = errors.New("bad pattern")

// PatternError reports a bad pattern passed to NewPolicy.
type PatternError struct {
	Index   int    // position in the list, from 0
	Pattern string // the pattern as given
	Msg     string // what is wrong and how to fix it
}

var _ error = (*PatternError)(nil)

func (e *PatternError) Error() string {
	return fmt.Sprintf("bad pattern %d %s: %s", e.Index+1, strconv.Quote(e.Pattern), e.Msg)
}

// Unwrap returns ErrBadPattern.
func (e *PatternError) Unwrap() error { return ErrBadPattern }

// patternMsg is the message of a pattern error before the pattern's index
// and position are known.
type patternMsg string

func (m patternMsg) Error() string { return string(m) }

func patternErr(msg string) error { return patternMsg(msg) }

// Rule is one compiled pattern of the plaintext list.
type Rule struct {
	Pattern string // as written in the list
	Index   int    // position in the list, from 0
	File    string // config file it came from; "" for NewPolicy
	Line    int    // line of the pattern's string literal, from 1; 0 if unknown
	Col     int    // byte column of its opening quote, from 1; 0 if unknown

	c *compiled
}

// Negated reports whether the rule starts with "!", i.e. re-encrypts.
func (r *Rule) Negated() bool { return r.c.negate }

// String names the rule for messages, e.g. `"Videos/" (config.toml:7:14)`,
// or `"Videos/" (pattern 1)` when it has no position.
func (r *Rule) String() string {
	q := strconv.Quote(r.Pattern)
	if r.Line > 0 {
		return fmt.Sprintf("%s (%s:%d:%d)", q, r.File, r.Line, r.Col)
	}
	return fmt.Sprintf("%s (pattern %d)", q, r.Index+1)
}

// Policy decides the mode of new entries. It is immutable after creation
// and safe for concurrent use.
type Policy struct {
	rules    []*Rule
	hasPlain bool
}

// Decision is the outcome of Policy.Decide.
type Decision struct {
	Plaintext bool  // the new entry is stored in plaintext
	Rule      *Rule // the last matching rule; nil means no rule matched (encrypted)
}

// NewPolicy compiles a plaintext list. On error it returns a *PatternError
// for the first bad pattern. An empty list encrypts everything.
func NewPolicy(patterns []string) (*Policy, error) {
	p := &Policy{rules: make([]*Rule, 0, len(patterns))}
	for i, pat := range patterns {
		r, err := newRule(i, pat)
		if err != nil {
			return nil, &PatternError{Index: i, Pattern: pat, Msg: err.Error()}
		}
		p.add(r)
	}
	return p, nil
}

func newRule(i int, pat string) (*Rule, error) {
	c, err := compilePattern(pat)
	if err != nil {
		return nil, err
	}
	return &Rule{Pattern: pat, Index: i, c: c}, nil
}

func (p *Policy) add(r *Rule) {
	p.rules = append(p.rules, r)
	if !r.c.negate {
		p.hasPlain = true
	}
}

// Rules returns the rules in list order. The caller must not modify them.
func (p *Policy) Rules() []*Rule {
	if p == nil {
		return nil
	}
	return append([]*Rule(nil), p.rules...)
}

// HasPlaintextRules reports whether any rule can make an entry plaintext.
// A policy without one encrypts everything. A nil Policy has none.
func (p *Policy) HasPlaintextRules() bool { return p != nil && p.hasPlain }

// maxStackComps is the path depth Decide handles without allocating.
const maxStackComps = 32

// Decide returns the mode of a new entry at path, which is relative to the
// mount root and slash-separated (a leading "/" and empty components are
// ignored; "." and ".." are not resolved, so pass a clean path); isDir says whether the entry is a directory. The last rule that
// matches the path or one of its ancestor directories decides; without one
// the entry is encrypted. A nil Policy encrypts everything.
func (p *Policy) Decide(path string, isDir bool) Decision {
	if p == nil || len(p.rules) == 0 {
		return Decision{}
	}
	var buf [maxStackComps]string
	comps := buf[:0]
	for len(path) > 0 {
		i := 0
		for i < len(path) && path[i] != '/' {
			i++
		}
		if i > 0 {
			comps = append(comps, path[:i])
		}
		if i == len(path) {
			break
		}
		path = path[i+1:]
	}
	for i := len(p.rules) - 1; i >= 0; i-- {
		r := p.rules[i]
		if r.c.match(comps, isDir) {
			return Decision{Plaintext: !r.c.negate, Rule: r}
		}
	}
	return Decision{}
}
