package keys

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func TestRecoveryKeyVectors(t *testing.T) {
	t.Parallel()
	for _, v := range readVectorLines(t, "recovery-keys.txt") {
		t.Run(v[0], func(t *testing.T) {
			var k [RecoveryKeySize]byte
			if n, err := hex.Decode(k[:], []byte(v[0])); err != nil || n != RecoveryKeySize {
				t.Fatalf("bad vector key %q", v[0])
			}
			if got := FormatRecoveryKey(&k); got != v[1] {
				t.Errorf("FormatRecoveryKey = %s, want %s", got, v[1])
			}
			got, err := ParseRecoveryKey([]byte(v[1]))
			if err != nil || got != k {
				t.Errorf("ParseRecoveryKey = %x, %v; want %x", got, err, k)
			}
		})
	}
}

func TestRecoveryKeyRoundTrip(t *testing.T) {
	t.Parallel()
	for range 200 {
		k, err := NewRecoveryKey()
		if err != nil {
			t.Fatal(err)
		}
		s := FormatRecoveryKey(&k)
		if len(s) != RecoveryKeyLen || strings.Count(s, "-") != 8 {
			t.Fatalf("bad shape %q", s)
		}
		if strings.ContainsAny(s, "ILOU") {
			t.Fatalf("%q uses a letter outside the Crockford alphabet", s)
		}
		got, err := ParseRecoveryKey([]byte(s))
		if err != nil || got != k {
			t.Fatalf("round trip of %q: %x, %v", s, got, err)
		}
	}
}

func TestParseRecoveryKeyLenient(t *testing.T) {
	t.Parallel()
	const canon = "000G-40R4-0M30-E209-185G-R38E-1W81-24GK-WYQB"
	want, err := ParseRecoveryKey([]byte(canon))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, in string }{
		{"lower case", strings.ToLower(canon)},
		{"no dashes", strings.ReplaceAll(canon, "-", "")},
		{"spaces", strings.ReplaceAll(canon, "-", " ")},
		{"surrounding whitespace", "  " + canon + "\n"},
		{"O for 0", strings.ReplaceAll(canon, "0", "O")},
		{"o for 0", strings.ReplaceAll(canon, "0", "o")},
		{"I for 1", strings.ReplaceAll(canon, "1", "I")},
		{"l for 1", strings.ReplaceAll(canon, "1", "l")},
		{"double dashes", strings.ReplaceAll(canon, "-", "--")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRecoveryKey([]byte(tt.in))
			if err != nil || got != want {
				t.Fatalf("ParseRecoveryKey([]byte(%q)) = %x, %v", tt.in, got, err)
			}
		})
	}
}

func TestParseRecoveryKeyTypo(t *testing.T) {
	t.Parallel()
	const canon = "000G-40R4-0M30-E209-185G-R38E-1W81-24GK-WYQB"
	// swap returns canon with the characters at i and j exchanged.
	swap := func(i, j int) string {
		b := []byte(canon)
		b[i], b[j] = b[j], b[i]
		return string(b)
	}
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"one char changed", "100G" + canon[4:]},
		{"checksum char changed", canon[:len(canon)-1] + "C"},
		{"adjacent swap", swap(5, 6)},
		{"group missing", canon[5:]},
		{"extra char", canon + "0"},
		{"letter U", "U" + canon[1:]},
		{"punctuation", canon[:len(canon)-1] + "!"},
		{"non-ASCII", canon[:len(canon)-1] + "é"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRecoveryKey([]byte(tt.in))
			if !errors.Is(err, ErrRecoveryKeyTypo) {
				t.Fatalf("err = %v, want ErrRecoveryKeyTypo", err)
			}
			if got != ([RecoveryKeySize]byte{}) {
				t.Fatalf("key not zero on error")
			}
			if strings.Contains(err.Error(), "000G") {
				t.Fatalf("error repeats the key: %v", err)
			}
		})
	}
}

// TestRecoveryChecksumCatchesSingleErrors: every single-character
// substitution in a random key is caught.
func TestRecoveryChecksumCatchesSingleErrors(t *testing.T) {
	t.Parallel()
	k, err := NewRecoveryKey()
	if err != nil {
		t.Fatal(err)
	}
	s := []byte(FormatRecoveryKey(&k))
	missed := 0
	for i := range s {
		if s[i] == '-' {
			continue
		}
		orig := s[i]
		for j := 0; j < len(crockford); j++ {
			if crockford[j] == orig {
				continue
			}
			s[i] = crockford[j]
			if _, err := ParseRecoveryKey([]byte(string(s))); err == nil {
				missed++
			}
		}
		s[i] = orig
	}
	// 20 checksum bits: a random substitution slips through with p = 2^-20.
	if missed > 1 {
		t.Fatalf("%d single-character errors not detected", missed)
	}
}
