package keys

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"
)

// readVectorLines returns the non-comment, non-blank lines of a testdata file,
// split on spaces.
func readVectorLines(t *testing.T, name string) [][]string {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Fields(line))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestArgon2idKAT checks x/crypto's Argon2id against the reference
// implementation's known answers (testdata/argon2id-phc-kat.txt).
func TestArgon2idKAT(t *testing.T) {
	t.Parallel()
	vecs := readVectorLines(t, "argon2id-phc-kat.txt")
	if len(vecs) != 8 {
		t.Fatalf("got %d vectors, want 8", len(vecs))
	}
	for _, v := range vecs {
		if len(v) != 6 {
			t.Fatalf("bad vector line %q", v)
		}
		name := fmt.Sprintf("t=%s,m=%s,p=%s,%s,%s", v[0], v[1], v[2], v[3], v[4])
		// Sequential on purpose: one vector needs 256 MiB.
		t.Run(name, func(t *testing.T) {
			tm, err1 := strconv.ParseUint(v[0], 10, 32)
			m, err2 := strconv.ParseUint(v[1], 10, 32)
			p, err3 := strconv.ParseUint(v[2], 10, 8)
			want, err4 := hex.DecodeString(v[5])
			for _, err := range []error{err1, err2, err3, err4} {
				if err != nil {
					t.Fatal(err)
				}
			}
			got := argon2.IDKey([]byte(v[3]), []byte(v[4]), uint32(tm), uint32(m), uint8(p), uint32(len(want)))
			if hex.EncodeToString(got) != v[5] {
				t.Errorf("got %x, want %s", got, v[5])
			}
		})
	}
}

// TestArgon2idRFC9106 documents why the RFC 9106 vector is not run here.
func TestArgon2idRFC9106(t *testing.T) {
	if _, err := os.Stat("testdata/argon2id-rfc9106.txt"); err != nil {
		t.Fatal(err)
	}
	t.Skip("RFC 9106 §5.3 needs secret and associated data, which argon2.IDKey does not take; " +
		"x/crypto's own tests check it (see testdata/argon2id-rfc9106.txt)")
}

// TestPasswordKeyMatchesIDKey pins passwordKey to Argon2id with the stored
// parameters and a 32-byte output.
func TestPasswordKeyMatchesIDKey(t *testing.T) {
	t.Parallel()
	var salt [SaltSize]byte
	copy(salt[:], "0123456789abcdef0123456789abcdef")
	got := passwordKey([]byte("pw"), &salt, MinKDF)
	want := argon2.IDKey([]byte("pw"), salt[:], MinKDF.Time, MinKDF.MemoryKiB, MinKDF.Threads, 32)
	if hex.EncodeToString(got[:]) != hex.EncodeToString(want) {
		t.Fatalf("passwordKey differs from argon2.IDKey")
	}
}

func TestKDFParamsCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		p     KDFParams
		field string
	}{
		{"default", DefaultKDF, ""},
		{"fast", MinKDF, ""},
		{"time 0", KDFParams{0, MinMemoryKiB, 1}, "kdf.time"},
		{"time 1, below OWASP's 2", KDFParams{1, MinMemoryKiB, 1}, "kdf.time"},
		{"time huge", KDFParams{MaxTime + 1, MinMemoryKiB, 1}, "kdf.time"},
		{"memory below floor", KDFParams{2, MinMemoryKiB - 1, 1}, "kdf.memory_kib"},
		{"memory 8 MiB, the old floor", KDFParams{2, 8192, 1}, "kdf.memory_kib"},
		{"memory above 4 GiB", KDFParams{2, MaxMemoryKiB + 1, 1}, "kdf.memory_kib"},
		{"threads 0", KDFParams{2, MinMemoryKiB, 0}, "kdf.threads"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			field, err := tt.p.check()
			if field != tt.field || (err != nil) != (tt.field != "") {
				t.Fatalf("check() = %q, %v; want field %q", field, err, tt.field)
			}
		})
	}
}

// BenchmarkArgon2id measures candidate parameters for DefaultKDF:
//
//	go test -run='^$' -bench=BenchmarkArgon2id -benchtime=5x ./keys
func BenchmarkArgon2id(b *testing.B) {
	salt := make([]byte, SaltSize)
	for _, p := range []KDFParams{
		MinKDF,
		{1, 64 << 10, 2}, {8, 64 << 10, 2}, {16, 64 << 10, 2}, {24, 64 << 10, 2},
		{32, 64 << 10, 2}, {32, 64 << 10, 1}, {8, 256 << 10, 2},
	} {
		b.Run(fmt.Sprintf("t=%d,m=%dMiB,p=%d", p.Time, p.MemoryKiB>>10, p.Threads), func(b *testing.B) {
			for b.Loop() {
				argon2.IDKey([]byte("password"), salt, p.Time, p.MemoryKiB, p.Threads, KeySize)
			}
		})
	}
}
