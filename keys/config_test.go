package keys

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cryptpt/crypt"
)

// Valid base64 values for hand-written configs.
var (
	b64Salt = strings.Repeat("A", 43) + "=" // 32 zero bytes
	b64Wrap = strings.Repeat("A", 80)       // 60 zero bytes
	b64MAC  = strings.Repeat("A", 43) + "=" // 32 zero bytes
)

// configFields are the lines of a valid config, keyed by dotted field name,
// in table order. renderConfig writes them with overrides.
var configFields = []struct{ table, key, value string }{
	{"", "format", `"cryptpt-vault"`},
	{"", "version", `2`},
	{"kdf", "algorithm", `"argon2id"`},
	{"kdf", "time", `2`},
	{"kdf", "memory_kib", `19456`},
	{"kdf", "threads", `1`},
	{"kdf", "salt", `"` + b64Salt + `"`},
	{"keys", "password", `"` + b64Wrap + `"`},
	{"keys", "recovery", `"` + b64Wrap + `"`},
	{"keys", "mac", `"` + b64MAC + `"`},
	{"features", "flags", `[]`},
}

// v1 overrides renderConfig's fields into a version-1 config (no MAC).
var v1 = map[string]string{"version": "1", "keys.mac": ""}

// renderConfig returns a config text; over maps "table.key" (or "key") to a
// raw TOML value, or to "" to drop the line. extra is appended per table.
func renderConfig(over map[string]string, extra map[string]string) string {
	var b strings.Builder
	cur := ""
	for _, f := range configFields {
		if f.table != cur {
			if e := extra[cur]; e != "" {
				b.WriteString(e + "\n")
			}
			cur = f.table
			fmt.Fprintf(&b, "\n[%s]\n", cur)
		}
		name := f.key
		if f.table != "" {
			name = f.table + "." + f.key
		}
		v, ok := over[name]
		if !ok {
			v = f.value
		}
		if v != "" {
			fmt.Fprintf(&b, "%s = %s\n", f.key, v)
		}
	}
	if e := extra[cur]; e != "" {
		b.WriteString(e + "\n")
	}
	return b.String()
}

func TestParseConfigValid(t *testing.T) {
	t.Parallel()
	cfg, err := ParseConfig([]byte(renderConfig(nil, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Version != 2 || cfg.KDF != MinKDF || len(cfg.Flags) != 0 {
		t.Fatalf("unexpected config %+v", cfg)
	}
	cfg, err = ParseConfig([]byte(renderConfig(v1, nil)))
	if err != nil || cfg.Version != 1 || cfg.MAC != ([MACSize]byte{}) {
		t.Fatalf("version 1: %+v, %v", cfg, err)
	}
	// [features] may be absent.
	text := renderConfig(nil, nil)
	text = text[:strings.Index(text, "[features]")]
	if _, err := ParseConfig([]byte(text)); err != nil {
		t.Fatalf("without [features]: %v", err)
	}
}

func TestConfigEncodeRoundTrip(t *testing.T) {
	t.Parallel()
	in := &Config{Version: Version, KDF: DefaultKDF}
	for i := range in.Salt {
		in.Salt[i] = byte(i)
	}
	for i := range in.PasswordWrap {
		in.PasswordWrap[i] = byte(i * 3)
		in.RecoveryWrap[i] = byte(i * 7)
	}
	for i := range in.MAC {
		in.MAC[i] = byte(i * 5)
	}
	data, err := in.encode()
	if err != nil {
		t.Fatal(err)
	}
	out, err := ParseConfig(data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if out.Version != in.Version || out.KDF != in.KDF || out.Salt != in.Salt ||
		out.PasswordWrap != in.PasswordWrap || out.RecoveryWrap != in.RecoveryWrap || out.MAC != in.MAC || len(out.Flags) != 0 {
		t.Fatalf("round trip mismatch:\n%+v\n%+v", in, out)
	}
	for _, want := range []string{"format = \"cryptpt-vault\"", "version = 2", "[kdf]", "memory_kib = 65536", "[keys]", "mac = ", "[features]", "flags = []"} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("encoded config lacks %q:\n%s", want, data)
		}
	}
}

func TestParseConfigCorrupt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		over  map[string]string
		extra map[string]string
		raw   string // used instead of renderConfig when set
		field string // expected CorruptError.Field
	}{
		{name: "not toml", raw: "format = \n[[[", field: ""},
		{name: "empty file", raw: " ", field: "format"},
		{name: "format missing", over: map[string]string{"format": ""}, field: "format"},
		{name: "format wrong", over: map[string]string{"format": `"gocryptfs"`}, field: "format"},
		{name: "format not string", over: map[string]string{"format": `1`}, field: "format"},
		{name: "version missing", over: map[string]string{"version": ""}, field: "version"},
		{name: "version string", over: map[string]string{"version": `"1"`}, field: "version"},
		{name: "version negative", over: map[string]string{"version": `-1`}, field: "version"},
		{name: "version float", over: map[string]string{"version": `1.0`}, field: "version"},
		{name: "unknown top-level key", extra: map[string]string{"": "color = \"blue\""}, field: "color"},
		{name: "unknown table", extra: map[string]string{"features": "[extra]\nx = 1"}, field: "extra"},
		{name: "kdf missing", raw: "format = \"cryptpt-vault\"\nversion = 1\n[keys]\n", field: "kdf"},
		{name: "kdf not a table", raw: "format = \"cryptpt-vault\"\nversion = 1\nkdf = 3\n", field: "kdf"},
		{name: "algorithm missing", over: map[string]string{"kdf.algorithm": ""}, field: "kdf.algorithm"},
		{name: "algorithm scrypt", over: map[string]string{"kdf.algorithm": `"scrypt"`}, field: "kdf.algorithm"},
		{name: "time missing", over: map[string]string{"kdf.time": ""}, field: "kdf.time"},
		{name: "time 0", over: map[string]string{"kdf.time": `0`}, field: "kdf.time"},
		{name: "time 1, below floor", over: map[string]string{"kdf.time": `1`}, field: "kdf.time"},
		{name: "time 1, below floor, version 1", over: map[string]string{"version": "1", "keys.mac": "", "kdf.time": `1`}, field: "kdf.time"},
		{name: "time huge", over: map[string]string{"kdf.time": `1000000`}, field: "kdf.time"},
		{name: "time string", over: map[string]string{"kdf.time": `"1"`}, field: "kdf.time"},
		{name: "memory 0", over: map[string]string{"kdf.memory_kib": `0`}, field: "kdf.memory_kib"},
		{name: "memory below floor", over: map[string]string{"kdf.memory_kib": `19455`}, field: "kdf.memory_kib"},
		{name: "memory 8 MiB, the old floor", over: map[string]string{"kdf.memory_kib": `8192`}, field: "kdf.memory_kib"},
		{name: "memory above 4 GiB", over: map[string]string{"kdf.memory_kib": `4194305`}, field: "kdf.memory_kib"},
		{name: "memory negative", over: map[string]string{"kdf.memory_kib": `-8192`}, field: "kdf.memory_kib"},
		{name: "memory missing", over: map[string]string{"kdf.memory_kib": ""}, field: "kdf.memory_kib"},
		{name: "threads 0", over: map[string]string{"kdf.threads": `0`}, field: "kdf.threads"},
		{name: "threads 256", over: map[string]string{"kdf.threads": `256`}, field: "kdf.threads"},
		{name: "threads missing", over: map[string]string{"kdf.threads": ""}, field: "kdf.threads"},
		{name: "salt missing", over: map[string]string{"kdf.salt": ""}, field: "kdf.salt"},
		{name: "salt bad base64", over: map[string]string{"kdf.salt": `"!!!!"`}, field: "kdf.salt"},
		{name: "salt short", over: map[string]string{"kdf.salt": `"AAAA"`}, field: "kdf.salt"},
		{name: "salt long", over: map[string]string{"kdf.salt": `"` + strings.Repeat("A", 400) + `"`}, field: "kdf.salt"},
		{name: "salt base64url", over: map[string]string{"kdf.salt": `"` + strings.Repeat("_", 43) + `="`}, field: "kdf.salt"},
		{name: "salt unpadded", over: map[string]string{"kdf.salt": `"` + strings.Repeat("A", 43) + `"`}, field: "kdf.salt"},
		{name: "salt not string", over: map[string]string{"kdf.salt": `[1, 2]`}, field: "kdf.salt"},
		{name: "unknown kdf key", extra: map[string]string{"kdf": "pepper = 1"}, field: "kdf.pepper"},
		{name: "keys missing", raw: renderConfig(nil, nil)[:strings.Index(renderConfig(nil, nil), "[keys]")], field: "keys"},
		{name: "password missing", over: map[string]string{"keys.password": ""}, field: "keys.password"},
		{name: "password bad base64", over: map[string]string{"keys.password": `"AA*A"`}, field: "keys.password"},
		{name: "password short", over: map[string]string{"keys.password": `"` + strings.Repeat("A", 76) + `"`}, field: "keys.password"},
		{name: "password long", over: map[string]string{"keys.password": `"` + strings.Repeat("A", 84) + `"`}, field: "keys.password"},
		{name: "recovery missing", over: map[string]string{"keys.recovery": ""}, field: "keys.recovery"},
		{name: "recovery bad base64", over: map[string]string{"keys.recovery": `"A"`}, field: "keys.recovery"},
		{name: "recovery int", over: map[string]string{"keys.recovery": `7`}, field: "keys.recovery"},
		{name: "unknown keys key", extra: map[string]string{"keys": "backup = \"x\""}, field: "keys.backup"},
		{name: "mac missing", over: map[string]string{"keys.mac": ""}, field: "keys.mac"},
		{name: "mac short", over: map[string]string{"keys.mac": `"AAAA"`}, field: "keys.mac"},
		{name: "mac in version 1", over: map[string]string{"version": "1"}, field: "keys.mac"},
		{name: "flags not array", over: map[string]string{"features.flags": `"x"`}, field: "features.flags"},
		{name: "flags not strings", over: map[string]string{"features.flags": `[1]`}, field: "features.flags"},
		{name: "unknown features key", extra: map[string]string{"features": "other = 1"}, field: "features.other"},
		{name: "features not a table", raw: "features = 1\n" + strings.Replace(renderConfig(nil, nil), "[features]\nflags = []", "", 1), field: "features"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			text := tt.raw
			if text == "" {
				text = renderConfig(tt.over, tt.extra)
			}
			cfg, err := ParseConfig([]byte(text))
			if cfg != nil {
				t.Errorf("non-nil config with error")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt\n%s", err, text)
			}
			if errors.Is(err, ErrWrongPassword) || errors.Is(err, ErrVersion) {
				t.Fatalf("corrupt error also matches another sentinel: %v", err)
			}
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Field != tt.field {
				t.Fatalf("err = %v, want field %q", err, tt.field)
			}
			if tt.field != "" && !strings.Contains(err.Error(), "field "+tt.field+":") {
				t.Errorf("message %q does not name field %q", err, tt.field)
			}
		})
	}
}

func TestCorruptErrorMessage(t *testing.T) {
	t.Parallel()
	_, err := ParseConfig([]byte(renderConfig(map[string]string{"kdf.salt": `"!!!!"`}, nil)))
	const want = "vault config corrupted: field kdf.salt: illegal base64 data at input byte 0"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

func TestParseConfigVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		text string
	}{
		{"version 3", renderConfig(map[string]string{"version": "3"}, nil)},
		{"version 0", renderConfig(map[string]string{"version": "0"}, nil)},
		// A newer version may have keys this one does not know: still ErrVersion.
		{"version 3 with new keys", renderConfig(map[string]string{"version": "3", "kdf.salt": ""}, map[string]string{"kdf": "new = 1"})},
		{"unknown flag", renderConfig(map[string]string{"features.flags": `["longnames2"]`}, nil)},
		{"unknown flag with new keys", renderConfig(map[string]string{"features.flags": `["x"]`}, map[string]string{"keys": "fido2 = \"AAAA\""})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := ParseConfig([]byte(tt.text))
			if cfg != nil || !errors.Is(err, ErrVersion) || errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, %v; want ErrVersion only", cfg, err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	t.Run("missing", func(t *testing.T) {
		t.Parallel()
		cfg, err := Load(t.TempDir())
		if cfg != nil || !errors.Is(err, ErrNotVault) || !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("got %v, %v; want ErrNotVault and fs.ErrNotExist", cfg, err)
		}
	})
	t.Run("missing dir", func(t *testing.T) {
		t.Parallel()
		_, err := Load(filepath.Join(t.TempDir(), "nope"))
		if !errors.Is(err, ErrNotVault) || !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		data := renderConfig(nil, nil) + "#" + strings.Repeat("x", maxConfigSize) + "\n"
		if err := os.WriteFile(filepath.Join(dir, crypt.VaultConfigName), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(dir); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("got %v, want ErrCorrupt", err)
		}
	})
	t.Run("ok", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, crypt.VaultConfigName), []byte(renderConfig(nil, nil)), 0o600); err != nil {
			t.Fatal(err)
		}
		if cfg, err := Load(dir); err != nil || cfg.KDF != MinKDF {
			t.Fatalf("got %+v, %v", cfg, err)
		}
	})
}
