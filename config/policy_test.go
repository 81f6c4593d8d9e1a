package config

import (
	"errors"
	"strings"
	"testing"
)

type probe struct {
	path  string
	isDir bool
	want  bool // plaintext
}

func TestPatternSyntax(t *testing.T) {
	t.Parallel()
	f, d := false, true // isDir
	tests := []struct {
		name     string
		patterns []string
		probes   []probe
	}{
		{"literal name at any depth", []string{"foo"}, []probe{
			{"foo", f, true}, {"foo", d, true}, {"a/foo", f, true}, {"a/b/foo", d, true},
			{"foo/x", f, true}, {"foobar", f, false}, {"xfoo", f, false}, {"a/xfoo", f, false},
		}},
		{"star extension at any depth", []string{"*.iso"}, []probe{
			{"x.iso", f, true}, {"deep/x.iso", f, true}, {"a/b/c/x.iso", f, true},
			{".iso", f, true}, {"x.iso.part", f, false}, {"x.isoo", f, false}, {"iso", f, false},
			{"dir.iso/inner", f, true},
		}},
		{"star does not cross slash", []string{"a*b"}, []probe{
			{"ab", f, true}, {"axxb", f, true}, {"a/b", f, false}, {"x/a-b", f, true},
		}},
		{"star matches leading dot", []string{"*"}, []probe{
			{".bashrc", f, true}, {"x", f, true}, {"a/b", f, true},
		}},
		{"question mark", []string{"?.txt"}, []probe{
			{"a.txt", f, true}, {"é.txt", f, true}, {"ab.txt", f, false}, {".txt", f, false},
		}},
		{"slash in middle anchors", []string{"docs/*.md"}, []probe{
			{"docs/a.md", f, true}, {"docs/sub/a.md", f, false}, {"x/docs/a.md", f, false},
			{"docs", d, false}, {"docs/a.md/inner", f, true},
		}},
		{"leading slash anchors", []string{"/Videos/"}, []probe{
			{"Videos", d, true}, {"Videos/a.mp4", f, true}, {"x/Videos/a.mp4", f, false},
			{"Videos", f, false},
		}},
		{"leading slash on a name", []string{"/foo"}, []probe{
			{"foo", f, true}, {"a/foo", f, false},
		}},
		{"unanchored dir rule at any depth", []string{"Videos/"}, []probe{
			{"Videos", d, true}, {"Work/Videos", d, true}, {"Work/Videos/x", f, true},
			{"Videos", f, false}, {"Work/Videos", f, false}, {"VideosX/a", f, false},
		}},
		{"trailing slash file vs dir", []string{"build/"}, []probe{
			{"build", d, true}, {"build", f, false}, {"build/x", f, true}, {"a/build", f, false},
			{"a/build/x", f, true},
		}},
		{"leading double star", []string{"**/foo"}, []probe{
			{"foo", f, true}, {"a/foo", f, true}, {"a/b/foo", f, true}, {"afoo", f, false},
			{"foo/bar", f, true},
		}},
		{"leading double star with dir", []string{"**/foo/bar"}, []probe{
			{"foo/bar", f, true}, {"a/foo/bar", f, true}, {"a/foo/x/bar", f, false}, {"foo", d, false},
		}},
		{"trailing double star", []string{"foo/**"}, []probe{
			{"foo", d, false}, {"foo/x", f, true}, {"foo/x/y", f, true}, {"a/foo/x", f, false},
			{"foox/y", f, false},
		}},
		{"middle double star", []string{"a/**/b"}, []probe{
			{"a/b", f, true}, {"a/x/b", f, true}, {"a/x/y/b", f, true}, {"ab/x/b", f, false},
			{"a/xb", f, false}, {"a/b/c", f, true}, {"x/a/b", f, false}, {"a", d, false},
		}},
		{"double star alone", []string{"**"}, []probe{
			{"x", f, true}, {"a/b/c", d, true},
		}},
		{"double star dir only", []string{"foo/**/"}, []probe{
			{"foo/x", f, false}, {"foo/x", d, true}, {"foo/x/y", f, true},
		}},
		{"repeated double star", []string{"a/**/**/b"}, []probe{
			{"a/b", f, true}, {"a/x/y/b", f, true}, {"b", f, false},
		}},
		{"many double stars", []string{"**/a/**/a/**/b"}, []probe{
			{"a/a/b", f, true}, {"x/a/y/a/z/b", f, true}, {"a/b", f, false},
			{strings.Repeat("a/", 40) + "c", f, false},
		}},
		{"double star inside a name is a star", []string{"a**b"}, []probe{
			{"axyb", f, true}, {"a/b", f, false},
		}},
		{"class", []string{"[abc].txt"}, []probe{
			{"a.txt", f, true}, {"c.txt", f, true}, {"d.txt", f, false}, {"ab.txt", f, false},
		}},
		{"class range", []string{"log[0-9]"}, []probe{
			{"log0", f, true}, {"log9", f, true}, {"loga", f, false}, {"log", f, false},
		}},
		{"class negated with bang", []string{"x[!a-z]"}, []probe{
			{"x1", f, true}, {"xA", f, true}, {"xa", f, false}, {"x", f, false},
		}},
		{"class negated with caret", []string{"x[^a-z]"}, []probe{
			{"x1", f, true}, {"xq", f, false},
		}},
		{"class literal bracket and dash", []string{"[]a-]", "[!]]z"}, []probe{
			{"]", f, true}, {"-", f, true}, {"a", f, true}, {"b", f, false},
			{"az", f, true}, {"]z", f, false},
		}},
		{"class with unicode range", []string{"[à-ÿ]"}, []probe{
			{"é", f, true}, {"e", f, false},
		}},
		{"class with escape", []string{`[\]x]`}, []probe{
			{"]", f, true}, {"x", f, true}, {`\`, f, false},
		}},
		{"escaped bang", []string{`\!important`}, []probe{
			{"!important", f, true}, {"important", f, false},
		}},
		{"escaped hash", []string{`\#notes`}, []probe{
			{"#notes", f, true},
		}},
		{"escaped star", []string{`a\*`}, []probe{
			{"a*", f, true}, {"ab", f, false},
		}},
		{"escaped bracket", []string{`a\[1]`}, []probe{
			{"a[1]", f, true}, {"a1", f, false},
		}},
		{"trailing spaces trimmed", []string{"foo  "}, []probe{
			{"foo", f, true}, {"foo  ", f, false},
		}},
		{"escaped trailing space kept", []string{`foo\ `}, []probe{
			{"foo ", f, true}, {"foo", f, false},
		}},
		{"escaped backslash then space trimmed", []string{`foo\\ `}, []probe{
			{`foo\`, f, true},
		}},
		{"negation after directory rule", []string{"Videos/", "!Videos/private/"}, []probe{
			{"Videos", d, true}, {"Videos/a.mp4", f, true}, {"Videos/private", d, false},
			{"Videos/private/x", f, false}, {"Videos/private", f, true}, {"Videos/privateX", f, true},
		}},
		{"re-include below re-encrypted", []string{"Videos/", "!Videos/private/", "Videos/private/trailers/"}, []probe{
			{"Videos/private/x", f, false}, {"Videos/private/trailers/t.mp4", f, true},
		}},
		{"last match wins", []string{"*.iso", "!secret.iso"}, []probe{
			{"a.iso", f, true}, {"secret.iso", f, false}, {"x/secret.iso", f, false},
		}},
		{"order matters", []string{"!secret.iso", "*.iso"}, []probe{
			{"secret.iso", f, true},
		}},
		{"negation only", []string{"!foo"}, []probe{
			{"foo", f, false}, {"bar", f, false},
		}},
		{"case sensitive", []string{"Videos/"}, []probe{
			{"videos/x", f, false}, {"VIDEOS/x", f, false},
		}},
		{"no unicode normalisation", []string{"caf\u00e9/"}, []probe{
			{"caf\u00e9/x", f, true}, {"cafe\u0301/x", f, false},
		}},
		{"invalid utf-8 in path", []string{"?", "!a?"}, []probe{
			{"\xff", f, true}, {"a\xff", f, false}, {"a\xff\xfe", f, false},
		}},
		{"queried path normalisation", []string{"/a/b"}, []probe{
			{"/a/b", f, true}, {"a//b", f, true}, {"a/b/", f, true}, {"//a/b", f, true},
			{"", d, false}, {"/", d, false},
		}},
		{"empty policy", nil, []probe{{"x", f, false}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := NewPolicy(tc.patterns)
			if err != nil {
				t.Fatalf("NewPolicy(%q): %v", tc.patterns, err)
			}
			for _, pr := range tc.probes {
				got := p.Decide(pr.path, pr.isDir)
				if got.Plaintext != pr.want {
					t.Errorf("Decide(%q, dir=%v) = %v (rule %v), want %v", pr.path, pr.isDir, got.Plaintext, got.Rule, pr.want)
				}
				if got.Plaintext && got.Rule == nil {
					t.Errorf("Decide(%q): plaintext without a rule", pr.path)
				}
			}
		})
	}
}

func TestDecideRule(t *testing.T) {
	t.Parallel()
	p, err := NewPolicy([]string{"Videos/", ".cache/", "*.iso", "!Videos/private/"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		path      string
		wantIndex int // -1: default
		wantPlain bool
	}{
		{"dir rule", "Videos/a.mp4", 0, true},
		{"negation", "Videos/private/a", 3, false},
		{"extension", "x/y.iso", 2, true},
		{"default", "Documents/a.txt", -1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := p.Decide(tc.path, false)
			if d.Plaintext != tc.wantPlain {
				t.Errorf("plaintext = %v, want %v", d.Plaintext, tc.wantPlain)
			}
			if tc.wantIndex < 0 {
				if d.Rule != nil {
					t.Errorf("rule = %v, want nil", d.Rule)
				}
				return
			}
			if d.Rule == nil || d.Rule.Index != tc.wantIndex {
				t.Errorf("rule = %v, want index %d", d.Rule, tc.wantIndex)
			}
		})
	}
	if !p.HasPlaintextRules() {
		t.Error("HasPlaintextRules = false")
	}
	if got := p.Rules()[0].String(); got != `"Videos/" (pattern 1)` {
		t.Errorf("String() = %s", got)
	}
}

func TestHasPlaintextRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		patterns []string
		want     bool
	}{
		{"none", nil, false},
		{"only negations", []string{"!a", "!b/"}, false},
		{"one plaintext", []string{"!a", "b"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := NewPolicy(tc.patterns)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.HasPlaintextRules(); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	var nilPolicy *Policy
	if nilPolicy.HasPlaintextRules() || nilPolicy.Decide("x", false).Plaintext {
		t.Error("nil policy is not all-encrypted")
	}
}

func TestBadPatterns(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		pattern string
		msg     string // substring of the message
	}{
		{"empty", "", "empty"},
		{"only spaces", "   ", "empty"},
		{"only bang", "!", `needs a pattern`},
		{"only slash", "/", "mount root"},
		{"bang slash", "!/", "mount root"},
		{"comment", "#foo", "comment"},
		{"unterminated class", "a[bc", "never closed"},
		{"unterminated negated class", "[!", "never closed"},
		{"bracket only", "[", "never closed"},
		{"empty class", "[]", "never closed"},
		{"class across slash", "[a/b]", "never closed"},
		{"posix class", "[[:alpha:]]", "POSIX"},
		{"backwards range", "[z-a]", "backwards"},
		{"trailing backslash", `foo\`, `lone "\"`},
		{"escaped slash", `a\/b`, "cannot be escaped"},
		{"empty segment", "a//b", "empty path segment"},
		{"double trailing slash", "a//", "empty path segment"},
		{"dot segment", "./a", `"."`},
		{"dotdot segment", "a/../b", `".."`},
		{"invalid utf-8", "a\xff", "UTF-8"},
		{"too deep", strings.Repeat("a/", 70) + "b", "too many"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := NewPolicy([]string{"ok/", tc.pattern})
			if err == nil {
				t.Fatalf("NewPolicy(%q) succeeded", tc.pattern)
			}
			if p != nil {
				t.Error("non-nil policy with error")
			}
			if !errors.Is(err, ErrBadPattern) {
				t.Errorf("error %v is not ErrBadPattern", err)
			}
			var pe *PatternError
			if !errors.As(err, &pe) || pe.Index != 1 {
				t.Fatalf("error %v: want *PatternError with Index 1", err)
			}
			if !strings.Contains(pe.Msg, tc.msg) {
				t.Errorf("message %q does not contain %q", pe.Msg, tc.msg)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("message spans lines: %q", err.Error())
			}
		})
	}
}

func TestDecideNoAlloc(t *testing.T) {
	p := benchPolicy(t)
	allocs := testing.AllocsPerRun(100, func() {
		p.Decide("home/user/Videos/private/2024/holiday/clip.mp4", false)
	})
	if allocs != 0 {
		t.Errorf("Decide allocates %v times per call", allocs)
	}
}

func benchPolicy(tb testing.TB) *Policy {
	tb.Helper()
	p, err := NewPolicy([]string{
		"Videos/", ".cache/", "*.iso", "!Videos/private/", "/Games/**/data/",
		"node_modules/", "*.qcow2", "Downloads/*.part", "[Tt]mp/", "!**/secret*",
	})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func BenchmarkDecide(b *testing.B) {
	p := benchPolicy(b)
	paths := []struct {
		name string
		path string
	}{
		{"shallow", "notes.txt"},
		{"deep", "home/user/projects/cryptpt/config/policy_test.go"},
		{"match", "Videos/2024/holiday/clip.mp4"},
	}
	for _, pc := range paths {
		b.Run(pc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Decide(pc.path, false)
			}
		})
	}
}
