package config

import (
	"strings"
	"unicode/utf8"
)

// maxSegments bounds the number of path segments in one compiled pattern,
// so that matching can track its state in one uint64.
const maxSegments = 63

// segKind says how one slash-separated segment of a pattern matches.
type segKind uint8

const (
	segLiteral  segKind = iota // matches one component byte for byte
	segGlob                    // matches one component with *, ? and [...]
	segAnyDirs                 // leading or middle "**": zero or more components
	segTailStar                // trailing "**": one or more components
)

type segment struct {
	kind segKind
	lit  string  // segLiteral
	toks []token // segGlob

	// Fast form of a segGlob that is exactly prefix "*" suffix.
	simple         bool
	prefix, suffix string
}

// tokKind is one element of a glob segment.
type tokKind uint8

const (
	tokLit   tokKind = iota // literal bytes
	tokAny                  // ?: one character
	tokStar                 // *: zero or more characters
	tokClass                // [...]: one character in (or not in) a set
)

type token struct {
	kind  tokKind
	lit   string
	class *charClass
}

type runeRange struct{ lo, hi rune }

type charClass struct {
	negate bool
	ranges []runeRange
}

func (c *charClass) match(r rune) bool {
	in := false
	for _, rr := range c.ranges {
		if rr.lo <= r && r <= rr.hi {
			in = true
			break
		}
	}
	return in != c.negate
}

// decodeChar returns the first character of s and its width in bytes. A byte
// that is not valid UTF-8 is one character of its own, mapped outside the
// Unicode range so that it never equals a character written in a pattern.
func decodeChar(s string) (rune, int) {
	r, w := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && w == 1 {
		return utf8.MaxRune + 1 + rune(s[0]), 1
	}
	return r, w
}

// compiled is the matching form of one pattern.
type compiled struct {
	negate   bool
	dirOnly  bool
	anywhere bool // a single segment that may match at any depth
	anyDirs  bool // segs contain segAnyDirs (needs the general matcher)
	segs     []segment
}

// compilePattern turns one pattern string into its matching form. The error
// text says what is wrong and how to fix it, without repeating the pattern.
func compilePattern(p string) (*compiled, error) {
	if !utf8.ValidString(p) {
		return nil, patternErr("it is not valid UTF-8; write the pattern in UTF-8")
	}
	p = trimTrailingSpaces(p)
	if p == "" {
		return nil, patternErr("it is empty; remove it from the list")
	}
	if p[0] == '#' {
		return nil, patternErr(`a leading "#" would be a comment in .gitignore and is not allowed here; remove the entry, or write "\#" to match a name starting with "#"`)
	}
	c := &compiled{}
	if p[0] == '!' {
		c.negate = true
		p = p[1:]
		if p == "" {
			return nil, patternErr(`"!" needs a pattern after it, e.g. "!Videos/private/"; write "\!" to match a name starting with "!"`)
		}
	}
	anchored := false
	if p[0] == '/' {
		anchored = true
		p = p[1:]
	}
	if strings.HasSuffix(p, "/") && !strings.HasSuffix(p, `\/`) {
		c.dirOnly = true
		p = p[:len(p)-1]
	}
	if p == "" {
		return nil, patternErr(`it names the mount root, which is always encrypted; use "**" to match everything below it`)
	}
	raw, err := splitSegments(p)
	if err != nil {
		return nil, err
	}
	if len(raw) > 1 {
		anchored = true
	}
	for i, s := range raw {
		switch {
		case s == "":
			return nil, patternErr(`it has an empty path segment ("//"); write a single "/"`)
		case s == "." || s == "..":
			return nil, patternErr(`"." and ".." segments never match; write the path relative to the mount root without them`)
		case s == "**":
			kind := segAnyDirs
			if i == len(raw)-1 {
				kind = segTailStar
			}
			// "**/**" is the same as "**".
			if n := len(c.segs); n > 0 && c.segs[n-1].kind == segAnyDirs {
				c.segs[n-1].kind = kind
				continue
			}
			c.segs = append(c.segs, segment{kind: kind})
		default:
			seg, err := compileSegment(s)
			if err != nil {
				return nil, err
			}
			c.segs = append(c.segs, seg)
		}
	}
	if !anchored && c.segs[0].kind != segTailStar {
		c.anywhere = true
	}
	if c.anywhere {
		// Matching at any depth is a leading "**/"; keep it implicit in
		// the fast path but also in segs for clarity of the general one.
		c.segs = append([]segment{{kind: segAnyDirs}}, c.segs...)
	}
	for _, s := range c.segs {
		if s.kind == segAnyDirs {
			c.anyDirs = true
		}
	}
	if len(c.segs) > maxSegments {
		return nil, patternErr("it has too many path segments (the limit is 62); shorten it, e.g. with \"**\"")
	}
	return c, nil
}

// trimTrailingSpaces removes trailing spaces that are not escaped with a
// backslash, as git does.
func trimTrailingSpaces(p string) string {
	for strings.HasSuffix(p, " ") {
		// Count the backslashes right before the last space.
		n := 0
		for i := len(p) - 2; i >= 0 && p[i] == '\\'; i-- {
			n++
		}
		if n%2 == 1 {
			break
		}
		p = p[:len(p)-1]
	}
	return p
}

// splitSegments splits p at each '/', rejecting a backslash before a slash
// or at the end.
func splitSegments(p string) ([]string, error) {
	var segs []string
	start := 0
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\\':
			if i+1 == len(p) {
				return nil, patternErr(`it ends in a lone "\"; remove it or write "\\" to match a backslash`)
			}
			if p[i+1] == '/' {
				return nil, patternErr(`"/" cannot be escaped, it always separates path segments; remove the "\"`)
			}
			i++
		case '/':
			segs = append(segs, p[start:i])
			start = i + 1
		}
	}
	return append(segs, p[start:]), nil
}

// compileSegment compiles one segment that is not "**". A segment without
// wildcards becomes a literal.
func compileSegment(s string) (segment, error) {
	var toks []token
	var lit []byte
	flush := func() {
		if len(lit) > 0 {
			toks = append(toks, token{kind: tokLit, lit: string(lit)})
			lit = nil
		}
	}
	for i := 0; i < len(s); {
		switch c := s[i]; c {
		case '\\':
			// splitSegments guarantees a character follows.
			_, w := decodeChar(s[i+1:])
			lit = append(lit, s[i+1:i+1+w]...)
			i += 1 + w
		case '?':
			flush()
			toks = append(toks, token{kind: tokAny})
			i++
		case '*':
			flush()
			// "a**b" is an ordinary star, as in git.
			if n := len(toks); n == 0 || toks[n-1].kind != tokStar {
				toks = append(toks, token{kind: tokStar})
			}
			i++
		case '[':
			flush()
			cls, n, err := compileClass(s[i:])
			if err != nil {
				return segment{}, err
			}
			toks = append(toks, token{kind: tokClass, class: cls})
			i += n
		default:
			lit = append(lit, c)
			i++
		}
	}
	flush()
	if len(toks) == 1 && toks[0].kind == tokLit {
		return segment{kind: segLiteral, lit: toks[0].lit}, nil
	}
	if len(toks) == 0 {
		// Unreachable: an empty segment is rejected before.
		return segment{kind: segLiteral}, nil
	}
	seg := segment{kind: segGlob, toks: toks}
	// Recognise "*x", "x*" and "x*y", the most common shapes.
	switch {
	case len(toks) == 1 && toks[0].kind == tokStar:
		seg.simple = true
	case len(toks) == 2 && toks[0].kind == tokStar && toks[1].kind == tokLit:
		seg.simple, seg.suffix = true, toks[1].lit
	case len(toks) == 2 && toks[0].kind == tokLit && toks[1].kind == tokStar:
		seg.simple, seg.prefix = true, toks[0].lit
	case len(toks) == 3 && toks[0].kind == tokLit && toks[1].kind == tokStar && toks[2].kind == tokLit:
		seg.simple, seg.prefix, seg.suffix = true, toks[0].lit, toks[2].lit
	}
	return seg, nil
}

// compileClass compiles the character class at the start of s (s[0] == '[')
// and returns it with the number of bytes it spans.
func compileClass(s string) (*charClass, int, error) {
	cls := &charClass{}
	i := 1
	if i < len(s) && (s[i] == '!' || s[i] == '^') {
		cls.negate = true
		i++
	}
	first := true
	for {
		if i >= len(s) {
			return nil, 0, patternErr(`"[" starts a character class that is never closed; add "]" (a class cannot contain "/") or write "\[" to match a literal "["`)
		}
		if s[i] == ']' && !first {
			return cls, i + 1, nil
		}
		if strings.HasPrefix(s[i:], "[:") {
			return nil, 0, patternErr(`POSIX classes such as "[:alpha:]" are not supported; spell out the range, e.g. "[a-zA-Z]"`)
		}
		first = false
		lo, n := classChar(s[i:])
		i += n
		hi := lo
		if i+1 < len(s) && s[i] == '-' && s[i+1] != ']' {
			hi, n = classChar(s[i+1:])
			i += 1 + n
			if hi < lo {
				return nil, 0, patternErr(`a character range in "[...]" runs backwards (e.g. "z-a"); write the lower bound first`)
			}
		}
		cls.ranges = append(cls.ranges, runeRange{lo, hi})
	}
}

// classChar reads one possibly escaped character inside a class. s is
// non-empty.
func classChar(s string) (rune, int) {
	if s[0] == '\\' && len(s) > 1 {
		r, w := decodeChar(s[1:])
		return r, 1 + w
	}
	return decodeChar(s)
}

// matchSegment reports whether the path component name matches seg, which
// is segLiteral or segGlob.
func matchSegment(seg *segment, name string) bool {
	if seg.kind == segLiteral {
		return seg.lit == name
	}
	if seg.simple {
		return len(name) >= len(seg.prefix)+len(seg.suffix) &&
			strings.HasPrefix(name, seg.prefix) && strings.HasSuffix(name, seg.suffix)
	}
	return matchGlob(seg.toks, name)
}

// matchGlob matches name against toks with the classic single-backtrack
// wildcard algorithm: on a mismatch, retry after the last star with that
// star consuming one more character. Runs in O(len(toks)*len(name)).
func matchGlob(toks []token, name string) bool {
	ti, ni := 0, 0
	starT, starN := -1, 0
	for {
		if ti < len(toks) {
			t := &toks[ti]
			switch t.kind {
			case tokStar:
				starT, starN = ti, ni
				ti++
				continue
			case tokLit:
				if strings.HasPrefix(name[ni:], t.lit) {
					ni += len(t.lit)
					ti++
					continue
				}
			case tokAny:
				if ni < len(name) {
					_, w := decodeChar(name[ni:])
					ni += w
					ti++
					continue
				}
			case tokClass:
				if ni < len(name) {
					r, w := decodeChar(name[ni:])
					if t.class.match(r) {
						ni += w
						ti++
						continue
					}
				}
			}
		} else if ni == len(name) {
			return true
		}
		if starT < 0 || starN >= len(name) {
			return false
		}
		_, w := decodeChar(name[starN:])
		starN += w
		ti, ni = starT+1, starN
	}
}

// match reports whether the pattern matches the path given by its
// components, or any of its ancestor directories. isDir says whether the
// full path is a directory; every ancestor is one.
func (c *compiled) match(comps []string, isDir bool) bool {
	n := len(comps)
	if n == 0 {
		return false
	}
	// A match of the first k components counts if k < n (an ancestor,
	// always a directory) or the pattern accepts the path's own type.
	lastOK := !c.dirOnly || isDir
	switch {
	case c.anywhere && len(c.segs) == 2:
		seg := &c.segs[1]
		if !lastOK {
			n--
		}
		for _, name := range comps[:n] {
			if matchSegment(seg, name) {
				return true
			}
		}
		return false
	case !c.anyDirs:
		m := len(c.segs)
		if n < m {
			return false
		}
		for i := range c.segs {
			seg := &c.segs[i]
			if seg.kind != segTailStar && !matchSegment(seg, comps[i]) {
				return false
			}
		}
		return m < n || lastOK
	}
	return c.matchGeneral(comps, lastOK)
}

// matchGeneral simulates the pattern as an automaton over path components.
// Bit i of the state set means "the first i segments have matched".
func (c *compiled) matchGeneral(comps []string, lastOK bool) bool {
	m := len(c.segs)
	done := uint64(1) << uint(m)
	state := c.closure(1)
	for k, name := range comps {
		var next uint64
		for i := 0; i < m; i++ {
			if state&(1<<uint(i)) == 0 {
				continue
			}
			seg := &c.segs[i]
			switch seg.kind {
			case segAnyDirs:
				next |= 1 << uint(i) // "**" eats this component and stays
			case segTailStar:
				next |= 1 << uint(i+1)
			default:
				if matchSegment(seg, name) {
					next |= 1 << uint(i+1)
				}
			}
		}
		state = c.closure(next)
		if state&done != 0 && (k+1 < len(comps) || lastOK) {
			return true
		}
		if state == 0 {
			return false
		}
	}
	return false
}

// closure adds, for every reachable "**" that may match zero components,
// the state after it.
func (c *compiled) closure(state uint64) uint64 {
	for i := range c.segs {
		if c.segs[i].kind == segAnyDirs && state&(1<<uint(i)) != 0 {
			state |= 1 << uint(i+1)
		}
	}
	return state
}
