package keys

import (
	"errors"
	"slices"
	"testing"
)

// FuzzParseConfig: no panic; nil config exactly when an error; every error is
// ErrCorrupt or ErrVersion; a parsed config re-encodes to one that parses to
// the same values.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(renderConfig(nil, nil)))
	f.Add([]byte(renderConfig(map[string]string{"version": "3"}, nil)))
	f.Add([]byte(renderConfig(v1, nil)))
	f.Add([]byte(renderConfig(map[string]string{"kdf.salt": `"!!"`}, nil)))
	f.Add([]byte(renderConfig(map[string]string{"features.flags": `["x"]`}, nil)))
	f.Add([]byte(""))
	f.Add([]byte("[[a]]\nb = 1\n[[a]]\n"))
	cfg := &Config{Version: Version, KDF: DefaultKDF}
	if data, err := cfg.encode(); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data)
		if err != nil {
			if cfg != nil {
				t.Fatal("non-nil config with error")
			}
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("error is neither corrupt nor version: %v", err)
			}
			return
		}
		if cfg == nil {
			t.Fatal("nil config without error")
		}
		re, err := cfg.encode()
		if err != nil {
			t.Fatal(err)
		}
		cfg2, err := ParseConfig(re)
		if err != nil {
			t.Fatalf("re-encoded config does not parse: %v\n%s", err, re)
		}
		if cfg2.Version != cfg.Version || cfg2.KDF != cfg.KDF || cfg2.Salt != cfg.Salt ||
			cfg2.PasswordWrap != cfg.PasswordWrap || cfg2.RecoveryWrap != cfg.RecoveryWrap || cfg2.MAC != cfg.MAC ||
			!slices.Equal(cfg2.Flags, cfg.Flags) {
			t.Fatal("re-encoded config differs")
		}
	})
}

// FuzzParseRecoveryKey: no panic; a zero key with every error, always
// ErrRecoveryKeyTypo; an accepted key formats to a string that parses back.
func FuzzParseRecoveryKey(f *testing.F) {
	for _, s := range []string{
		"0000-0000-0000-0000-0000-0000-0000-0000-VS3W",
		"000G-40R4-0M30-E209-185G-R38E-1W81-24GK-WYQB",
		"zzzz zzzz zzzz zzzz zzzz zzzz zzzz zzzz ka6w",
		"OOOO-OOOO-OOOO-OOOO-OOOO-OOOO-OOOO-OOOO-VS3W",
		"", "-", "UUUU",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseRecoveryKey([]byte(s))
		if err != nil {
			if !errors.Is(err, ErrRecoveryKeyTypo) {
				t.Fatalf("error is not ErrRecoveryKeyTypo: %v", err)
			}
			if k != ([RecoveryKeySize]byte{}) {
				t.Fatal("non-zero key with error")
			}
			return
		}
		k2, err := ParseRecoveryKey([]byte(FormatRecoveryKey(&k)))
		if err != nil || k2 != k {
			t.Fatalf("canonical form does not round trip: %v", err)
		}
	})
}
