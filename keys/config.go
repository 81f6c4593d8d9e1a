package keys

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"cryptpt/crypt"

	"github.com/BurntSushi/toml"
)

// Format is the value of the top-level "format" key. Version is the config
// version Create and every password change write; VersionV1 is the first
// one, still read. Version 2 binds the KDF parameters and salt to the
// password wrap and authenticates the whole config with a MAC under a key
// derived from the master key (see doc.go); its vaults write content format
// 2. A password change or reset of a version-1 config writes version 2.
const (
	Format    = "cryptpt-vault"
	Version   = 2
	VersionV1 = 1
)

// Algorithm is the only accepted value of kdf.algorithm.
const Algorithm = "argon2id"

// maxConfigSize bounds how much of a config file is read; a real one is ~0.5 KiB.
const maxConfigSize = 64 << 10

// Config is a parsed vault config file. It holds no secrets: the master key
// appears only wrapped.
type Config struct {
	Version      int
	KDF          KDFParams
	Salt         [SaltSize]byte // Argon2id salt for the password wrap
	PasswordWrap [WrapSize]byte // master key wrapped under the Argon2id key
	RecoveryWrap [WrapSize]byte // master key wrapped under the recovery key
	MAC          [MACSize]byte  // version 2: HMAC-SHA256 of the rest under a key from the master key
	Flags        []string       // feature flags; none are defined in versions 1 and 2
}

// supportedFlag reports whether this build understands a feature flag.
// Versions 1 and 2 define none.
func supportedFlag(string) bool { return false }

// Load reads and parses the config file of the vault at dir, without needing
// a password. A missing file is ErrNotVault (which also matches
// fs.ErrNotExist).
func Load(dir string) (*Config, error) { return loadConfig(dir, strict) }

// kdfBounds says how parseConfig checks the KDF parameters. Load and
// ParseConfig check them against the floor and the ceilings (strict). The
// recovery key path does not run the KDF, and a reset replaces the
// parameters, so it reads them leniently (any value of the field's type):
// a config whose only fault is its KDF parameters (a downgrade, or a vault
// made with parameters below today's floor) can still be reset.
type kdfBounds bool

const (
	strict  kdfBounds = true
	lenient kdfBounds = false
)

func loadConfig(dir string, bounds kdfBounds) (*Config, error) {
	path := filepath.Join(dir, crypt.VaultConfigName)
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s: %w", ErrNotVault, dir, err)
		}
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxConfigSize {
		return nil, &CorruptError{Err: fmt.Errorf("file larger than %d bytes", maxConfigSize)}
	}
	return parseConfig(data, bounds)
}

// ParseConfig parses the bytes of a vault config file. Every structural
// problem is a *CorruptError naming the field; an unknown version or feature
// flag is ErrVersion. The result is nil whenever the error is not.
func ParseConfig(data []byte) (*Config, error) {
	return parseConfig(data, strict)
}

func parseConfig(data []byte, bounds kdfBounds) (*Config, error) {
	var raw map[string]any
	if _, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&raw); err != nil {
		return nil, &CorruptError{Err: err}
	}
	t := table{m: raw}

	// format and version first: a future version may have other keys.
	format, err := t.str("format")
	if err != nil {
		return nil, err
	}
	if format != Format {
		return nil, corrupt("format", "not %q", Format)
	}
	version, err := t.int("version", 0, 1<<31-1)
	if err != nil {
		return nil, err
	}
	if version != VersionV1 && version != Version {
		return nil, fmt.Errorf("%w: vault format version %d, this build reads versions %d and %d", ErrVersion, version, VersionV1, Version)
	}

	// Feature flags next, for the same reason. [features] may be absent.
	var flags []string
	if _, ok := raw["features"]; ok {
		ft, err := t.sub("features")
		if err != nil {
			return nil, err
		}
		if _, ok := ft.m["flags"]; ok {
			if flags, err = ft.strs("flags"); err != nil {
				return nil, err
			}
		}
		for _, f := range flags {
			if !supportedFlag(f) {
				return nil, fmt.Errorf("%w: feature flag %q", ErrVersion, f)
			}
		}
		if err := ft.unknown(); err != nil {
			return nil, err
		}
	}
	t.seen = append(t.seen, "features")

	kt, err := t.sub("kdf")
	if err != nil {
		return nil, err
	}
	keyt, err := t.sub("keys")
	if err != nil {
		return nil, err
	}
	if err := t.unknown(); err != nil {
		return nil, err
	}

	cfg := &Config{Version: int(version), Flags: flags}
	alg, err := kt.str("algorithm")
	if err != nil {
		return nil, err
	}
	if alg != Algorithm {
		return nil, corrupt("kdf.algorithm", "not %q", Algorithm)
	}
	minT, maxT, minM, maxM := int64(MinTime), int64(MaxTime), int64(MinMemoryKiB), int64(MaxMemoryKiB)
	if bounds == lenient {
		minT, maxT, minM, maxM = 0, 1<<32-1, 0, 1<<32-1
	}
	tm, err := kt.int("time", minT, maxT)
	if err != nil {
		return nil, err
	}
	mem, err := kt.int("memory_kib", minM, maxM)
	if err != nil {
		return nil, err
	}
	thr, err := kt.int("threads", MinThreads, 255)
	if err != nil {
		return nil, err
	}
	cfg.KDF = KDFParams{Time: uint32(tm), MemoryKiB: uint32(mem), Threads: uint8(thr)}
	if err := kt.b64("salt", cfg.Salt[:]); err != nil {
		return nil, err
	}
	if err := kt.unknown(); err != nil {
		return nil, err
	}
	if err := keyt.b64("password", cfg.PasswordWrap[:]); err != nil {
		return nil, err
	}
	if err := keyt.b64("recovery", cfg.RecoveryWrap[:]); err != nil {
		return nil, err
	}
	if cfg.Version >= Version {
		if err := keyt.b64("mac", cfg.MAC[:]); err != nil {
			return nil, err
		}
	}
	if err := keyt.unknown(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// table reads typed values out of one decoded TOML table, remembering which
// keys it has read so that unknown() can reject the rest.
type table struct {
	m      map[string]any
	prefix string // "kdf." for the [kdf] table, "" at the top level
	seen   []string
}

func (t *table) get(key string) (any, error) {
	t.seen = append(t.seen, key)
	v, ok := t.m[key]
	if !ok {
		return nil, &CorruptError{Field: t.prefix + key, Err: errMissing}
	}
	return v, nil
}

func (t *table) str(key string) (string, error) {
	v, err := t.get(key)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", corrupt(t.prefix+key, "is a %s, want a string", tomlType(v))
	}
	return s, nil
}

func (t *table) int(key string, lo, hi int64) (int64, error) {
	v, err := t.get(key)
	if err != nil {
		return 0, err
	}
	n, ok := v.(int64)
	if !ok {
		return 0, corrupt(t.prefix+key, "is a %s, want an integer", tomlType(v))
	}
	if n < lo || n > hi {
		return 0, corrupt(t.prefix+key, "%d out of range [%d, %d]", n, lo, hi)
	}
	return n, nil
}

func (t *table) strs(key string) ([]string, error) {
	v, err := t.get(key)
	if err != nil {
		return nil, err
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, corrupt(t.prefix+key, "is a %s, want an array of strings", tomlType(v))
	}
	out := make([]string, 0, len(arr))
	for _, e := range arr {
		s, ok := e.(string)
		if !ok {
			return nil, corrupt(t.prefix+key, "holds a %s, want strings", tomlType(e))
		}
		out = append(out, s)
	}
	return out, nil
}

// b64 decodes a standard-base64 string field into dst, which it must fill exactly.
func (t *table) b64(key string, dst []byte) error {
	s, err := t.str(key)
	if err != nil {
		return err
	}
	if base64.StdEncoding.DecodedLen(len(s)) > len(dst)+2 {
		return corrupt(t.prefix+key, "%d base64 characters, want %d", len(s), base64.StdEncoding.EncodedLen(len(dst)))
	}
	buf := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Strict().Decode(buf, []byte(s))
	if err != nil {
		return &CorruptError{Field: t.prefix + key, Err: err}
	}
	if n != len(dst) {
		return corrupt(t.prefix+key, "%d bytes, want %d", n, len(dst))
	}
	copy(dst, buf[:n])
	return nil
}

func (t *table) sub(key string) (*table, error) {
	v, err := t.get(key)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, corrupt(t.prefix+key, "is a %s, want a table", tomlType(v))
	}
	return &table{m: m, prefix: t.prefix + key + "."}, nil
}

// unknown returns a *CorruptError for the first key (in sorted order) that
// was never read.
func (t *table) unknown() error {
	var extra []string
	for k := range t.m {
		if !slices.Contains(t.seen, k) {
			extra = append(extra, k)
		}
	}
	if len(extra) == 0 {
		return nil
	}
	sort.Strings(extra)
	return corrupt(t.prefix+extra[0], "unknown key")
}

// tomlType names the TOML type of a decoded value for error messages.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case []any, []map[string]any:
		return "array"
	case map[string]any:
		return "table"
	default:
		return "date/time"
	}
}

// fileConfig is the on-disk shape written by Config.encode.
type fileConfig struct {
	Format  string `toml:"format"`
	Version int    `toml:"version"`
	KDF     struct {
		Algorithm string `toml:"algorithm"`
		Time      uint32 `toml:"time"`
		MemoryKiB uint32 `toml:"memory_kib"`
		Threads   uint8  `toml:"threads"`
		Salt      string `toml:"salt"`
	} `toml:"kdf"`
	Keys struct {
		Password string `toml:"password"`
		Recovery string `toml:"recovery"`
		MAC      string `toml:"mac,omitempty"`
	} `toml:"keys"`
	Features struct {
		Flags []string `toml:"flags"`
	} `toml:"features"`
}

const configHeader = "# cryptpt vault config. Do not edit: it holds the wrapped master key.\n" +
	"# Losing or damaging it makes the vault unreadable; keep a backup.\n\n"

// encode returns the TOML text of c.
func (c *Config) encode() ([]byte, error) {
	var f fileConfig
	f.Format = Format
	f.Version = c.Version
	f.KDF.Algorithm = Algorithm
	f.KDF.Time = c.KDF.Time
	f.KDF.MemoryKiB = c.KDF.MemoryKiB
	f.KDF.Threads = c.KDF.Threads
	f.KDF.Salt = base64.StdEncoding.EncodeToString(c.Salt[:])
	f.Keys.Password = base64.StdEncoding.EncodeToString(c.PasswordWrap[:])
	f.Keys.Recovery = base64.StdEncoding.EncodeToString(c.RecoveryWrap[:])
	if c.Version >= Version {
		f.Keys.MAC = base64.StdEncoding.EncodeToString(c.MAC[:])
	}
	f.Features.Flags = append([]string{}, c.Flags...)
	var b bytes.Buffer
	b.WriteString(configHeader)
	enc := toml.NewEncoder(&b)
	enc.Indent = ""
	if err := enc.Encode(f); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
