package crypt

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/hkdf"
)

// vector is one record of a testdata vector file: "key: value" lines
// (values hex unless the key is "name"), records separated by blank lines,
// '#' comment lines. Repeated keys accumulate.
type vector struct {
	name   string
	fields map[string][][]byte
}

func (v vector) get(t *testing.T, k string) []byte {
	t.Helper()
	vs := v.fields[k]
	if len(vs) != 1 {
		t.Fatalf("%s: field %q appears %d times", v.name, k, len(vs))
	}
	return vs[0]
}

func loadVectors(t *testing.T, file string) []vector {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []vector
	var cur *vector
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "#"):
			continue
		case line == "":
			cur = nil
			continue
		}
		k, val, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("%s: bad line %q", file, line)
		}
		val = strings.TrimSpace(val)
		if cur == nil {
			out = append(out, vector{fields: map[string][][]byte{}})
			cur = &out[len(out)-1]
		}
		if k == "name" {
			cur.name = val
			continue
		}
		b, err := hex.DecodeString(val)
		if err != nil {
			t.Fatalf("%s: %s: %v", file, k, err)
		}
		cur.fields[k] = append(cur.fields[k], b)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no vectors", file)
	}
	return out
}

func TestCMACVectors(t *testing.T) {
	t.Parallel()
	for _, v := range loadVectors(t, "cmac_rfc4493.txt") {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			b, err := aes.NewCipher(v.get(t, "key"))
			if err != nil {
				t.Fatal(err)
			}
			got := newCMAC(b).sum(v.get(t, "msg"))
			if want := v.get(t, "mac"); !bytes.Equal(got[:], want) {
				t.Errorf("CMAC = %x, want %x", got, want)
			}
		})
	}
	t.Run("subkeys", func(t *testing.T) {
		b, _ := aes.NewCipher(mustHex("2b7e151628aed2a6abf7158809cf4f3c"))
		c := newCMAC(b)
		if hex.EncodeToString(c.k1[:]) != "fbeed618357133667c85e08f7236a8de" ||
			hex.EncodeToString(c.k2[:]) != "f7ddac306ae266ccf90bc11ee46d513b" {
			t.Errorf("subkeys K1=%x K2=%x", c.k1, c.k2)
		}
	})
}

func TestSIVVectors(t *testing.T) {
	t.Parallel()
	files := []string{"siv_rfc5297.txt", "siv512_crosscheck.txt"}
	for _, file := range files {
		for _, v := range loadVectors(t, file) {
			t.Run(file+"/"+v.name, func(t *testing.T) {
				t.Parallel()
				s, err := newSIV(v.get(t, "key"))
				if err != nil {
					t.Fatal(err)
				}
				ad := v.fields["ad"]
				pt, want := v.get(t, "plaintext"), v.get(t, "out")
				got := s.seal(nil, ad, pt)
				if !bytes.Equal(got, want) {
					t.Fatalf("seal = %x, want %x", got, want)
				}
				back, err := s.open(ad, want)
				if err != nil || !bytes.Equal(back, pt) {
					t.Fatalf("open = %x, %v", back, err)
				}
				bad := bytes.Clone(want)
				bad[len(bad)-1] ^= 1
				if p, err := s.open(ad, bad); err != ErrAuth || p != nil {
					t.Fatalf("open(tampered) = %x, %v", p, err)
				}
			})
		}
	}
	if _, err := newSIV(make([]byte, 48)); err == nil {
		t.Error("newSIV accepted a 48-byte key")
	}
}

func TestGCMVectors(t *testing.T) {
	t.Parallel()
	for _, v := range loadVectors(t, "gcm_mcgrew_viega.txt") {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			key := v.get(t, "key")
			if len(key) != 32 {
				t.Fatalf("want an AES-256 vector, key is %d bytes", len(key))
			}
			b, err := aes.NewCipher(key)
			if err != nil {
				t.Fatal(err)
			}
			a, err := cipher.NewGCM(b)
			if err != nil {
				t.Fatal(err)
			}
			iv, ad, pt := v.get(t, "iv"), v.get(t, "ad"), v.get(t, "plaintext")
			want := append(bytes.Clone(v.get(t, "ciphertext")), v.get(t, "tag")...)
			if got := a.Seal(nil, iv, pt, ad); !bytes.Equal(got, want) {
				t.Fatalf("Seal = %x, want %x", got, want)
			}
			if got, err := a.Open(nil, iv, want, ad); err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("Open = %x, %v", got, err)
			}
			// Content must use this AEAD with the nonce and tag sizes of the
			// format (the AD layout is checked in TestCrossCheck).
			k := (*[32]byte)(key)
			c, err := newContent(k)
			if err != nil {
				t.Fatal(err)
			}
			if c.aead.NonceSize() != NonceSize || c.aead.Overhead() != TagSize {
				t.Fatalf("GCM nonce/tag sizes %d/%d", c.aead.NonceSize(), c.aead.Overhead())
			}
		})
	}
}

func TestHKDFVectors(t *testing.T) {
	t.Parallel()
	for _, v := range loadVectors(t, "hkdf_rfc5869.txt") {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			want := v.get(t, "okm")
			got := make([]byte, len(want))
			r := hkdf.New(sha256.New, v.get(t, "ikm"), v.get(t, "salt"), v.get(t, "info"))
			if _, err := io.ReadFull(r, got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("OKM = %x, want %x", got, want)
			}
		})
	}
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
