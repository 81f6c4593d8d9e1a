package config

import (
	"errors"
	"strings"
	"testing"
)

// FuzzPattern compiles a newline-separated list of patterns and decides a
// path. Invariants: no panic; a nil policy exactly when there is an error;
// the decision agrees with its rule; the fast matchers agree with the
// general ones.
func FuzzPattern(f *testing.F) {
	f.Add("Videos/\n.cache/\n*.iso\n!Videos/private/", "Videos/private/a", false)
	f.Add("a/**/b", "a/x/y/b", false)
	f.Add("**/foo\nfoo/**", "x/foo", true)
	f.Add("docs/*.md\n[!a-z]?\\#x", "docs/a.md", false)
	f.Add("x[]a-]\n[^0-9]*\\ ", "x-", true)
	f.Add("[", "a", false)
	f.Fuzz(func(t *testing.T, patterns, path string, isDir bool) {
		list := strings.Split(patterns, "\n")
		p, err := NewPolicy(list)
		if err != nil {
			if p != nil {
				t.Fatal("non-nil policy with error")
			}
			if !errors.Is(err, ErrBadPattern) {
				t.Fatalf("error %v is not ErrBadPattern", err)
			}
			return
		}
		d := p.Decide(path, isDir)
		if d.Plaintext && (d.Rule == nil || d.Rule.Negated()) {
			t.Fatalf("plaintext decided by %v", d.Rule)
		}
		if !d.Plaintext && d.Rule != nil && !d.Rule.Negated() {
			t.Fatalf("encrypted decided by %v", d.Rule)
		}
		var comps []string
		for _, c := range strings.Split(path, "/") {
			if c != "" {
				comps = append(comps, c)
			}
		}
		for _, r := range p.Rules() {
			c := r.c
			lastOK := !c.dirOnly || isDir
			if got, want := c.match(comps, isDir), len(comps) > 0 && c.matchGeneral(comps, lastOK); got != want {
				t.Fatalf("pattern %q on %q: match %v, matchGeneral %v", r.Pattern, path, got, want)
			}
			for i := range c.segs {
				seg := &c.segs[i]
				if !seg.simple {
					continue
				}
				for _, name := range comps {
					if got, want := matchSegment(seg, name), matchGlob(seg.toks, name); got != want {
						t.Fatalf("segment of %q on %q: fast %v, glob %v", r.Pattern, name, got, want)
					}
				}
			}
		}
	})
}

// FuzzParse parses arbitrary bytes as a config file. Invariants: no panic;
// a nil config exactly when there is an error; every error is a
// *ParseError; every position the scanner should find is found.
func FuzzParse(f *testing.F) {
	f.Add([]byte(exampleConfig))
	f.Add([]byte("[policy]\nplaintext = [\n  \"a/\", # c\n  'b[',\n]\n"))
	f.Add([]byte("policy = { plaintext = [ \"a\" , 'b' ] }\nvault.x = 1\n"))
	f.Add([]byte("[vault]\nbacking = \"\"\"/x\"\"\"\"\n[[policy]]\n"))
	f.Add([]byte("\ufeffa = 1979-05-27 07:32:00Z\nb = [[1, 2], {c = 'd'}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		t.Setenv("HOME", "/home/u")
		cfg, err := Parse("f.toml", data)
		if err != nil {
			if cfg != nil {
				t.Fatal("non-nil config with error")
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *ParseError", err)
			}
			if !errors.Is(err, ErrSyntax) && pe.Line <= 0 {
				t.Fatalf("no position for %v", err)
			}
			return
		}
		if cfg.Policy == nil {
			t.Fatal("nil policy")
		}
		for _, r := range cfg.Policy.Rules() {
			if r.Line <= 0 || r.Col <= 0 {
				t.Fatalf("no position for rule %v", r)
			}
		}
	})
}
