package config

import (
	"strconv"
	"strings"
)

// The TOML decoder does not expose where keys and values are, so after it
// has accepted a file, a small scanner walks the same text and records the
// position of every key, every value and every element of an array. The
// scanner trusts that the text is valid TOML; on anything it does not
// understand it stops, and the positions it has not found stay unknown.

// srcPos is a 1-based line and byte column.
type srcPos struct{ Line, Col int }

// sourceMap holds positions by key path (see pathKey).
type sourceMap struct {
	keys  map[string]srcPos   // where the last segment of the key is written
	vals  map[string]srcPos   // where its value starts
	elems map[string][]srcPos // where each element of an array value starts
}

// pathKey joins key segments into a map key.
func pathKey(path ...string) string { return strings.Join(path, "\x00") }

// maxScanDepth bounds nesting of arrays and inline tables.
const maxScanDepth = 512

type scanner struct {
	src       string
	i         int
	line, col int
	depth     int
	failed    bool
	m         *sourceMap
}

// scanSource records the positions of keys and values in src, which the
// TOML decoder has accepted.
func scanSource(src string) *sourceMap {
	m := &sourceMap{
		keys:  map[string]srcPos{},
		vals:  map[string]srcPos{},
		elems: map[string][]srcPos{},
	}
	// The decoder skips a UTF-8 byte order mark and counts columns after it.
	src = strings.TrimPrefix(src, "\xef\xbb\xbf")
	s := &scanner{src: src, line: 1, col: 1, m: m}
	var table []string
	for !s.failed {
		s.skipBlank()
		if s.eof() {
			break
		}
		start := s.i
		if s.peek() == '[' {
			s.adv()
			if s.peek() == '[' {
				s.adv()
			}
			segs, poss := s.key()
			if s.failed {
				break
			}
			table = segs
			s.recordKeys(nil, segs, poss)
			s.skipWS()
			for s.peek() == ']' {
				s.adv()
			}
		} else {
			s.keyVal(table)
		}
		s.skipWS()
		s.skipComment()
		if s.i == start {
			break
		}
	}
	return m
}

func (s *scanner) eof() bool { return s.i >= len(s.src) }

func (s *scanner) peek() byte {
	if s.i < len(s.src) {
		return s.src[s.i]
	}
	return 0
}

func (s *scanner) pos() srcPos { return srcPos{s.line, s.col} }

func (s *scanner) adv() {
	if s.i >= len(s.src) {
		s.failed = true
		return
	}
	if s.src[s.i] == '\n' {
		s.line++
		s.col = 1
	} else {
		s.col++
	}
	s.i++
}

func (s *scanner) advN(n int) {
	for ; n > 0; n-- {
		s.adv()
	}
}

func (s *scanner) skipWS() {
	for c := s.peek(); c == ' ' || c == '\t'; c = s.peek() {
		s.adv()
	}
}

func (s *scanner) skipComment() {
	if s.peek() != '#' {
		return
	}
	for !s.eof() && s.peek() != '\n' {
		s.adv()
	}
}

// skipBlank skips whitespace, newlines and comments.
func (s *scanner) skipBlank() {
	for !s.eof() {
		switch s.peek() {
		case ' ', '\t', '\r', '\n':
			s.adv()
		case '#':
			s.skipComment()
		default:
			return
		}
	}
}

func isBareKeyChar(c byte) bool {
	return c != 0 && !strings.ContainsRune(" \t\r\n=.[]\"'#,{}", rune(c))
}

// key reads a possibly dotted key and returns its segments and their
// positions.
func (s *scanner) key() (segs []string, poss []srcPos) {
	for !s.failed {
		s.skipWS()
		p := s.pos()
		var k string
		switch c := s.peek(); {
		case c == '"':
			k = s.basicString()
		case c == '\'':
			k = s.literalString()
		default:
			st := s.i
			for !s.eof() && isBareKeyChar(s.peek()) {
				s.adv()
			}
			if s.i == st {
				s.failed = true
				return nil, nil
			}
			k = s.src[st:s.i]
		}
		segs = append(segs, k)
		poss = append(poss, p)
		s.skipWS()
		if s.peek() != '.' {
			break
		}
		s.adv()
	}
	return segs, poss
}

// recordKeys records the first position of every prefix of prefix+segs
// that extends prefix.
func (s *scanner) recordKeys(prefix, segs []string, poss []srcPos) {
	path := append([]string(nil), prefix...)
	for j, seg := range segs {
		path = append(path, seg)
		k := pathKey(path...)
		if _, ok := s.m.keys[k]; !ok {
			s.m.keys[k] = poss[j]
		}
	}
}

func (s *scanner) keyVal(prefix []string) {
	segs, poss := s.key()
	if s.failed {
		return
	}
	s.recordKeys(prefix, segs, poss)
	s.skipWS()
	if s.peek() != '=' {
		s.failed = true
		return
	}
	s.adv()
	s.skipWS()
	path := append(append([]string(nil), prefix...), segs...)
	s.value(path)
}

func (s *scanner) value(path []string) {
	s.depth++
	defer func() { s.depth-- }()
	if s.depth > maxScanDepth {
		s.failed = true
		return
	}
	k := pathKey(path...)
	if _, ok := s.m.vals[k]; !ok {
		s.m.vals[k] = s.pos()
	}
	rest := s.src[s.i:]
	switch {
	case strings.HasPrefix(rest, `"""`):
		s.multiLine(`"""`, true)
	case strings.HasPrefix(rest, `'''`):
		s.multiLine(`'''`, false)
	case strings.HasPrefix(rest, `"`):
		s.basicString()
	case strings.HasPrefix(rest, `'`):
		s.literalString()
	case strings.HasPrefix(rest, "["):
		s.adv()
		elem := append(append([]string(nil), path...), "[]")
		for !s.failed {
			s.skipBlank()
			if s.peek() == ']' {
				s.adv()
				return
			}
			s.m.elems[k] = append(s.m.elems[k], s.pos())
			s.value(elem)
			s.skipBlank()
			switch s.peek() {
			case ',':
				s.adv()
			case ']':
				s.adv()
				return
			default:
				s.failed = true
			}
		}
	case strings.HasPrefix(rest, "{"):
		s.adv()
		for !s.failed {
			s.skipBlank()
			if s.peek() == '}' {
				s.adv()
				return
			}
			s.keyVal(path)
			s.skipBlank()
			switch s.peek() {
			case ',':
				s.adv()
			case '}':
				s.adv()
				return
			default:
				s.failed = true
			}
		}
	default:
		// Number, boolean or date-time; a date-time may contain a space.
		st := s.i
		for !s.eof() && !strings.ContainsRune(",]}#\r\n", rune(s.peek())) {
			s.adv()
		}
		if s.i == st {
			s.failed = true
		}
	}
}

// basicString reads a "..." string and returns its value.
func (s *scanner) basicString() string {
	s.adv()
	var b strings.Builder
	for !s.failed {
		if s.eof() || s.peek() == '\n' {
			s.failed = true
			break
		}
		c := s.peek()
		if c == '"' {
			s.adv()
			break
		}
		if c != '\\' {
			b.WriteByte(c)
			s.adv()
			continue
		}
		s.adv()
		e := s.peek()
		s.adv()
		switch e {
		case 'b':
			b.WriteByte('\b')
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'f':
			b.WriteByte('\f')
		case 'r':
			b.WriteByte('\r')
		case 'e':
			b.WriteByte(0x1b)
		case 'x', 'u', 'U':
			n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
			if s.i+n > len(s.src) {
				s.failed = true
				break
			}
			v, err := strconv.ParseUint(s.src[s.i:s.i+n], 16, 32)
			if err != nil {
				s.failed = true
				break
			}
			b.WriteRune(rune(v))
			s.advN(n)
		default:
			b.WriteByte(e)
		}
	}
	return b.String()
}

// literalString reads a '...' string and returns its value.
func (s *scanner) literalString() string {
	s.adv()
	st := s.i
	for !s.eof() && s.peek() != '\'' && s.peek() != '\n' {
		s.adv()
	}
	if s.peek() != '\'' {
		s.failed = true
		return ""
	}
	v := s.src[st:s.i]
	s.adv()
	return v
}

// multiLine skips a multi-line string delimited by delim. Up to two extra
// quotes right before the closing delimiter belong to the content.
func (s *scanner) multiLine(delim string, escapes bool) {
	s.advN(3)
	for !s.failed {
		if s.eof() {
			s.failed = true
			return
		}
		if escapes && s.peek() == '\\' {
			s.advN(2)
			continue
		}
		if strings.HasPrefix(s.src[s.i:], delim) {
			s.advN(3)
			for extra := 0; extra < 2 && s.peek() == delim[0]; extra++ {
				s.adv()
			}
			return
		}
		s.adv()
	}
}
