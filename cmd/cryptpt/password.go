package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"cryptpt/keys"

	"golang.org/x/term"
)

// stdinLines reads secrets given line by line on a non-terminal stdin; one
// reader, so a second secret is not lost in the first one's buffer.
var stdinLines = bufio.NewReader(os.Stdin)

// secretSource is where a command reads a password from.
type secretSource struct {
	passfile string
	extpass  string
	// newKDF is the KDF a new password will be wrapped with, for the
	// guess time of a weak one (zero: keys.DefaultKDF).
	newKDF keys.KDFParams
}

func (s *secretSource) register(fs *flag.FlagSet) {
	fs.StringVar(&s.passfile, "passfile", "", "read the password from the first line of `FILE`")
	fs.StringVar(&s.extpass, "extpass", "", "run `CMD` (with sh -c) and use its first output line as the password")
}

func (s *secretSource) interactive() bool {
	return s.passfile == "" && s.extpass == "" && term.IsTerminal(int(os.Stdin.Fd()))
}

// read returns the password. prompt is shown only when reading from a terminal.
func (s *secretSource) read(prompt string) ([]byte, error) {
	pw, err := s.readRaw(prompt)
	if err != nil {
		return nil, err
	}
	if len(pw) == 0 {
		return nil, fail("", "the password is empty")
	}
	return pw, nil
}

// readRaw is read without the check for an empty password.
func (s *secretSource) readRaw(prompt string) ([]byte, error) {
	var pw []byte
	switch {
	case s.passfile != "" && s.extpass != "":
		return nil, fail("", "--passfile and --extpass are mutually exclusive")
	case s.passfile != "":
		data, err := os.ReadFile(s.passfile)
		if err != nil {
			return nil, fail("", "cannot read password file: %v", err)
		}
		pw = firstLine(data)
	case s.extpass != "":
		cmd := exec.Command("/bin/sh", "-c", s.extpass)
		cmd.Stdin = os.Stdin
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fail("", "--extpass command failed: %v", err)
		}
		pw = firstLine(out)
	case term.IsTerminal(int(os.Stdin.Fd())):
		fmt.Fprint(os.Stderr, prompt)
		b, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return nil, fail("", "cannot read password: %v", err)
		}
		pw = b
	default:
		line, err := stdinLines.ReadBytes('\n')
		if err != nil && len(line) == 0 {
			return nil, fail("use --passfile or --extpass, or run it from a terminal", "no password given on standard input")
		}
		pw = firstLine(line)
	}
	return pw, nil
}

// newPasswordTries is how many times readNew asks for a new password on a
// terminal before it gives up.
const newPasswordTries = 3

// readNew reads a new password and warns when it is weak (see
// warnWeakPassword). On a terminal it asks for it twice and, when the two
// differ or it is empty, asks again, up to newPasswordTries times. From
// --passfile, --extpass or a non-terminal stdin it is read once.
func (s *secretSource) readNew(prompt string) ([]byte, error) {
	if !s.interactive() {
		pw, err := s.read(prompt)
		if err == nil {
			s.warnWeakPassword(pw, false)
		}
		return pw, err
	}
	for try := 1; ; try++ {
		pw, err := s.readRaw(prompt)
		if err != nil {
			return nil, err
		}
		why := "The password is empty"
		if len(pw) > 0 {
			s.warnWeakPassword(pw, true)
			again, err := s.readRaw("Repeat: ")
			if err != nil {
				clear(pw)
				return nil, err
			}
			same := bytes.Equal(pw, again)
			clear(again)
			if same {
				return pw, nil
			}
			clear(pw)
			why = "The passwords do not match"
		}
		if try == newPasswordTries {
			return nil, fail("", "no new password: %s (%d tries)", strings.ToLower(why[:1])+why[1:], newPasswordTries)
		}
		fmt.Fprintf(os.Stderr, "%s; try again.\n", why)
	}
}

// warnWeakPassword prints a warning when pw could be guessed in fewer than
// 2^weakBits tries (passwordBits), with how long an offline attacker who
// has the vault config needs for that at the KDF's cost on this machine.
// The time is measured (keys.MeasureKDF) only on a terminal, where someone
// reads it.
func (s *secretSource) warnWeakPassword(pw []byte, measure bool) {
	bits := passwordBits(pw)
	if bits >= weakBits {
		return
	}
	warnf("weak password: a guesser finds it in at most about %s tries (a rough estimate)", powerOfTwo(bits))
	if measure {
		kdf := s.newKDF
		if kdf == (keys.KDFParams{}) {
			kdf = keys.DefaultKDF
		}
		per := keys.MeasureKDF(kdf)
		all := math.Exp2(bits) * per.Seconds()
		warnf("someone with a copy of the vault config tries them all in %s on one machine like this (%s per try), %s on a thousand",
			humanDuration(all), per.Round(time.Millisecond), humanDuration(all/1000))
	}
	hintf("use four or more random words, or 12 or more random characters")
}

// openVault asks for the password and opens the vault at dir. The caller
// wipes the returned vault's key.
func (s *secretSource) openVault(dir string) (*keys.Vault, error) {
	pw, err := s.read("Password: ")
	if err != nil {
		return nil, err
	}
	v, err := keys.Open(dir, pw)
	clear(pw)
	if err != nil {
		return nil, vaultError(err, dir)
	}
	return v, nil
}

func firstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	return bytes.TrimSuffix(b, []byte("\r"))
}

// weakBits is the estimate (passwordBits) below which a new password is
// called weak: 2^45 tries take about a million years at DefaultKDF's cost
// on one machine like the one it was tuned on, a thousand years on a
// thousand.
const weakBits = 45

// commonPasswords are among the most used passwords of the public leak
// lists (and their usual stems); a password made of one of them, perhaps
// capitalised or in leetspeak, with digits or symbols after it, is among
// the first things a guesser tries.
var commonPasswords = []string{
	"password", "passwort", "qwerty", "qwertz", "azerty", "letmein", "iloveyou", "admin",
	"welcome", "monkey", "dragon", "master", "login", "princess", "sunshine", "football",
	"baseball", "shadow", "superman", "trustno", "hello", "freedom", "whatever", "secret",
	"starwars", "batman", "michael", "jennifer", "abc", "test", "guest", "root", "changeme",
	"cryptpt", "vault", "default", "asdf", "zxcvbn", "pass", "love",
}

// passwordBits estimates log2 of the number of tries a guesser needs to find
// pw, as the least of three simple models:
//
//   - brute force over the character classes pw uses (lower case 26, upper
//     case 26, digits 10, ASCII symbols and space 33, anything else 100);
//   - a word followed by digits or symbols: when what precedes the trailing
//     digits and symbols is letters only (after undoing leetspeak such as
//     4->a, 0->o, 3->e), at most 12 long and looks like a word (no more
//     than three consonants in a row, which random letters rarely avoid),
//     it is taken for a word: 2^17 tries (a big dictionary; 2^6 for
//     commonPasswords), one more bit each for capitals and for leetspeak,
//     and brute force for the tail;
//   - one character repeated, or a run like "abcd", "4321" or a keyboard row.
//
// It knows no dictionary, so it errs low for rare words and high for
// phrases built from a few common words; it is meant to catch the obvious.
func passwordBits(pw []byte) float64 {
	s := string(pw)
	if !utf8.ValidString(s) {
		return bruteBits(s)
	}
	bits := bruteBits(s)
	// A word and a tail of digits and symbols.
	stem := strings.TrimRightFunc(s, func(r rune) bool { return r < 128 && !unicode.IsLetter(r) })
	tail := s[len(stem):]
	word, leet := unleet(stem)
	if n := utf8.RuneCountInString(word); n > 0 && n <= 12 && looksLikeWord(word) {
		w := 17.0
		for _, c := range commonPasswords {
			if strings.EqualFold(word, c) {
				w = 6
			}
		}
		if word != strings.ToLower(word) {
			w++
		}
		if leet {
			w++
		}
		bits = math.Min(bits, w+bruteBits(tail))
	}
	if isRun(s) {
		bits = math.Min(bits, 5+math.Log2(float64(len(s))))
	}
	return bits
}

// bruteBits is len(s) * log2(size of the character classes s uses).
func bruteBits(s string) float64 {
	var lower, upper, digit, symbol, other bool
	n := 0
	for _, r := range s {
		n++
		switch {
		case 'a' <= r && r <= 'z':
			lower = true
		case 'A' <= r && r <= 'Z':
			upper = true
		case '0' <= r && r <= '9':
			digit = true
		case r < 128:
			symbol = true
		default:
			other = true
		}
	}
	pool := 0
	for _, c := range []struct {
		used bool
		size int
	}{{lower, 26}, {upper, 26}, {digit, 10}, {symbol, 33}, {other, 100}} {
		if c.used {
			pool += c.size
		}
	}
	if n == 0 {
		return 0
	}
	return float64(n) * math.Log2(float64(pool))
}

// unleet undoes the usual leetspeak substitutions and reports whether it
// changed anything.
func unleet(s string) (string, bool) {
	r := strings.NewReplacer("4", "a", "@", "a", "8", "b", "3", "e", "6", "g", "1", "i", "!", "i", "0", "o", "5", "s", "$", "s", "7", "t", "+", "t")
	u := r.Replace(s)
	return u, u != s
}

// looksLikeWord reports whether s is letters only, with no more than three
// ASCII consonants in a row.
func looksLikeWord(s string) bool {
	run := 0
	for _, r := range strings.ToLower(s) {
		switch {
		case !unicode.IsLetter(r):
			return false
		case 'a' <= r && r <= 'z' && !strings.ContainsRune("aeiouy", r):
			if run++; run > 3 {
				return false
			}
		default:
			run = 0
		}
	}
	return true
}

// isRun reports whether s (lower-cased) is one character repeated, or a
// piece of the alphabet, the digits or a keyboard row, forwards or
// backwards.
func isRun(s string) bool {
	s = strings.ToLower(s)
	rev := []rune(s)
	if len(rev) == 0 || strings.Count(s, string(rev[0])) == len(rev) {
		return true
	}
	slices.Reverse(rev)
	for _, seq := range []string{"abcdefghijklmnopqrstuvwxyz", "01234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm", "qwertzuiop", "azertyuiop", "1qaz2wsx3edc"} {
		if strings.Contains(seq, s) || strings.Contains(seq, string(rev)) {
			return true
		}
	}
	return false
}

// powerOfTwo writes 2^bits for people: "17576" or "3.5e+13".
func powerOfTwo(bits float64) string {
	n := math.Exp2(bits)
	if n < 1e6 {
		return fmt.Sprintf("%.0f", n)
	}
	return fmt.Sprintf("%.1e", n)
}

// humanDuration writes a time of sec seconds in the largest unit that
// fits: "40 seconds", "3.9 hours", "120 years".
func humanDuration(sec float64) string {
	const year = 365.25 * 24 * 3600
	if sec >= 1e6*year {
		return "over a million years"
	}
	for _, u := range []struct {
		sec  float64
		name string
	}{{year, "years"}, {24 * 3600, "days"}, {3600, "hours"}, {60, "minutes"}, {1, "seconds"}} {
		if sec >= u.sec {
			v := sec / u.sec
			if v >= 10 {
				return fmt.Sprintf("%.0f %s", v, u.name)
			}
			return fmt.Sprintf("%.1f %s", v, u.name)
		}
	}
	return "under a second"
}
