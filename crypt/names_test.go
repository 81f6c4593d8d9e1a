package crypt

import (
	"errors"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		stored string
		want   NameKind
	}{
		{"hello.txt", Plain},
		{"~hello", Plain},
		{"a~~b", Plain},
		{"~~cAAAA", Encrypted},
		{"~~lAAAA", Long},
		{"~~nAAAA", Sidecar},
		{"~~diriv", DirIV},
		{"~~vault.toml", VaultConfig},
		{"~~tXYZ", Temp},
		{"~~", Reserved},
		{"~~c", Reserved},
		{"~~l", Reserved},
		{"~~diriv2", Reserved},
		{"~~x", Reserved},
	}
	for _, tt := range tests {
		t.Run(tt.stored, func(t *testing.T) {
			if got := Classify(tt.stored); got != tt.want {
				t.Errorf("Classify(%q) = %v, want %v", tt.stored, got, tt.want)
			}
		})
	}
	if Reserved.String() != "reserved" || NameKind(99).String() != "NameKind(99)" {
		t.Error("NameKind.String")
	}
	tmp, err := TempName()
	if err != nil || Classify(tmp) != Temp {
		t.Errorf("TempName = %q, %v", tmp, err)
	}
}

func TestNamesRoundTrip(t *testing.T) {
	t.Parallel()
	n := testKeys(t).Names()
	iv, _ := NewDirIV()
	iv2, _ := NewDirIV()
	names := []string{"a", "hello.txt", ".hidden", "~~looks-reserved", "日本語のファイル名",
		strings.Repeat("x", 173), strings.Repeat("y", 174), strings.Repeat("z", 255), "with space\tand\nnewline"}
	for _, name := range names {
		t.Run(name[:min(len(name), 20)], func(t *testing.T) {
			stored, sidecar, err := n.Encrypt(iv, name)
			if err != nil {
				t.Fatal(err)
			}
			if len(stored) > MaxNameLen {
				t.Fatalf("stored name %d bytes", len(stored))
			}
			wantLong := len(name) > 173
			if kind := Classify(stored); (kind == Long) != wantLong || (kind != Long && kind != Encrypted) {
				t.Fatalf("Classify(stored) = %v for %d-byte name", kind, len(name))
			}
			if (sidecar != nil) != wantLong {
				t.Fatalf("sidecar %q", sidecar)
			}
			if wantLong && (len(SidecarName(stored)) != len(stored) || Classify(SidecarName(stored)) != Sidecar) {
				t.Fatalf("SidecarName(%q) = %q", stored, SidecarName(stored))
			}
			again, sc2, _ := n.Encrypt(iv, name)
			if again != stored || string(sc2) != string(sidecar) {
				t.Fatal("Encrypt is not deterministic")
			}
			if other, _, _ := n.Encrypt(iv2, name); other == stored {
				t.Fatal("same stored name under two dir IVs")
			}
			got, err := n.Decrypt(iv, stored, sidecar)
			if err != nil || got != name {
				t.Fatalf("Decrypt = %q, %v", got, err)
			}
			// Wrong directory IV.
			if got, err := n.Decrypt(iv2, stored, sidecar); !errors.Is(err, ErrAuth) || got != "" {
				t.Fatalf("Decrypt(wrong IV) = %q, %v", got, err)
			}
		})
	}
	if SidecarName("~~cabc") != "" {
		t.Error("SidecarName of a non-long name")
	}
}

func TestNamesInvalid(t *testing.T) {
	t.Parallel()
	n := testKeys(t).Names()
	iv, _ := NewDirIV()
	for _, name := range []string{"", ".", "..", "a/b", "/", "a\x00b", strings.Repeat("x", 256)} {
		if s, sc, err := n.Encrypt(iv, name); !errors.Is(err, ErrName) || s != "" || sc != nil {
			t.Errorf("Encrypt(%q) = %q, %v", name, s, err)
		}
	}
	// Encrypting an invalid name directly with SIV, then decrypting.
	for _, name := range []string{".", "..", "a/b", "x\x00"} {
		ct := n.siv.seal(nil, [][]byte{iv[:]}, []byte(name))
		if got, err := n.Decrypt(iv, EncryptedPrefix+b64.EncodeToString(ct), nil); !errors.Is(err, ErrName) || got != "" {
			t.Errorf("Decrypt(sealed %q) = %q, %v", name, got, err)
		}
	}
}

func TestNamesTamper(t *testing.T) {
	t.Parallel()
	n := testKeys(t).Names()
	iv, _ := NewDirIV()
	short, _, _ := n.Encrypt(iv, "secret.txt")
	long, sidecar, _ := n.Encrypt(iv, strings.Repeat("L", 200))
	otherLong, otherSidecar, _ := n.Encrypt(iv, strings.Repeat("M", 200))
	ct, _ := b64.DecodeString(short[len(EncryptedPrefix):])
	reenc := func(mod func([]byte)) string {
		c := append([]byte(nil), ct...)
		mod(c)
		return EncryptedPrefix + b64.EncodeToString(c)
	}
	tests := []struct {
		name    string
		stored  string
		sidecar []byte
		want    error
	}{
		{"flip tag bit", reenc(func(c []byte) { c[0] ^= 1 }), nil, ErrAuth},
		{"flip ciphertext bit", reenc(func(c []byte) { c[len(c)-1] ^= 0x80 }), nil, ErrAuth},
		{"truncated ciphertext", EncryptedPrefix + b64.EncodeToString(ct[:len(ct)-1]), nil, ErrAuth},
		{"tag only", EncryptedPrefix + b64.EncodeToString(ct[:sivTagSize]), nil, ErrName},
		{"bad base64", short[:5] + "*" + short[6:], nil, ErrName},
		{"padded base64", short + "=", nil, ErrName},
		{"noncanonical base64", EncryptedPrefix + "AB", nil, ErrName},
		{"newline in base64", short[:8] + "\n" + short[8:], nil, ErrName},
		{"CR in long hash", long[:8] + "\r" + long[8:], sidecar, ErrName},
		{"plain name", "hello", nil, ErrName},
		{"diriv", DirIVName, nil, ErrName},
		{"sidecar name", SidecarName(long), sidecar, ErrName},
		{"long without sidecar", long, nil, ErrName},
		{"long with other sidecar", long, otherSidecar, ErrAuth},
		{"long with flipped sidecar", long, flip(sidecar, 50), ErrAuth},
		{"long with short sidecar", longName(short), []byte(short), ErrName},
		{"long with bad hash", LongPrefix + "AAAA", sidecar, ErrName},
		{"swapped long names", otherLong, sidecar, ErrAuth},
		{"encrypted form over 255", string(sidecar), nil, ErrName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := n.Decrypt(iv, tt.stored, tt.sidecar)
			if !errors.Is(err, tt.want) || got != "" {
				t.Errorf("Decrypt = %q, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestDirIV(t *testing.T) {
	t.Parallel()
	iv, err := NewDirIV()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseDirIV(iv[:])
	if err != nil || *got != *iv {
		t.Fatalf("ParseDirIV = %x, %v", got, err)
	}
	for _, b := range [][]byte{nil, make([]byte, 15), make([]byte, 17)} {
		if got, err := ParseDirIV(b); !errors.Is(err, ErrDirIV) || got != nil {
			t.Errorf("ParseDirIV(%d bytes) = %v, %v", len(b), got, err)
		}
	}
}
