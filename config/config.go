package config

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Sentinel errors, each wrapped by a *ParseError.
var (
	// ErrSyntax: the file is not valid TOML.
	ErrSyntax = errors.New("invalid TOML")
	// ErrUnknownKey: the file sets a key this program does not know,
	// usually a typo.
	ErrUnknownKey = errors.New("unknown key")
	// ErrType: a key has a value of the wrong type.
	ErrType = errors.New("wrong type")
	// ErrBadPath: a vault path is empty, relative or cannot be expanded.
	ErrBadPath = errors.New("bad path")
)

// ParseError is a problem in a config file with its position. Err is one of
// ErrSyntax, ErrUnknownKey, ErrType, ErrBadPath or ErrBadPattern.
type ParseError struct {
	File string // as given to Parse or Load
	Line int    // from 1; 0 if unknown
	Col  int    // byte column from 1; 0 if unknown
	Msg  string // one line: what is wrong and what to do
	Err  error
}

var _ error = (*ParseError)(nil)

// Error returns "FILE:LINE:COL: MSG".
func (e *ParseError) Error() string {
	if e.Line <= 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Unwrap returns the sentinel that classifies the error.
func (e *ParseError) Unwrap() error { return e.Err }

// Config is the user's configuration file.
type Config struct {
	File             string  // where it was read from
	Backing          string  // vault.backing: absolute and clean, "" if unset
	Mountpoint       string  // vault.mountpoint: absolute and clean, "" if unset
	UntrustedStorage bool    // vault.untrusted_storage
	Policy           *Policy // policy.plaintext; never nil
}

// DefaultPath returns $XDG_CONFIG_HOME/cryptpt/config.toml, or
// ~/.config/cryptpt/config.toml when XDG_CONFIG_HOME is unset or not
// absolute (the XDG spec says to ignore a relative value).
func DefaultPath() (string, error) {
	if dir := os.Getenv("XDG_CONFIG_HOME"); filepath.IsAbs(dir) {
		return filepath.Join(dir, "cryptpt", "config.toml"), nil
	}
	home, err := ExpandHome("~")
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".config", "cryptpt", "config.toml"), nil
}

// ExpandHome replaces a leading "~" or "~/" in p with the home directory
// ($HOME). Other paths are returned unchanged. "~user" is not supported.
func ExpandHome(p string) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		if strings.HasPrefix(p, "~") {
			return "", fmt.Errorf("%w: only \"~\" and \"~/\" are expanded, not \"~user\"; write the full path", ErrBadPath)
		}
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil || !filepath.IsAbs(home) {
		// mount(8) runs helpers without $HOME: ask the user database.
		if u, uerr := user.Current(); uerr == nil {
			home, err = u.HomeDir, nil
		}
	}
	if err != nil || !filepath.IsAbs(home) {
		return "", fmt.Errorf("%w: cannot expand \"~\" because $HOME is not set to an absolute path; set it or write the full path", ErrBadPath)
	}
	return filepath.Join(home, p[1:]), nil
}

// Load reads and parses the config file at path. A missing file gives an
// error wrapping fs.ErrNotExist, which callers reading the default path
// may treat as "no config".
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse parses the contents of a config file; file names it in errors and
// in the rules' positions. Every error is a *ParseError; when several
// problems exist, the first one in the file is returned.
func Parse(file string, data []byte) (*Config, error) {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		return nil, syntaxError(file, err)
	}
	v := &validator{file: file, src: scanSource(string(data))}
	cfg := &Config{File: file}
	for _, key := range sortedKeys(raw) {
		switch val := raw[key]; key {
		case "vault":
			if t, ok := v.table(val, "vault"); ok {
				v.vault(t, cfg)
			}
		case "policy":
			if t, ok := v.table(val, "policy"); ok {
				cfg.Policy = v.policy(t)
			}
		default:
			v.errAtKey(ErrUnknownKey, []string{key},
				"unknown key %s; the file has only the [vault] and [policy] tables", strconv.Quote(key))
		}
	}
	if len(v.errs) > 0 {
		sort.SliceStable(v.errs, func(i, j int) bool {
			a, b := v.errs[i], v.errs[j]
			if a.Line != b.Line {
				return a.Line < b.Line
			}
			return a.Col < b.Col
		})
		return nil, v.errs[0]
	}
	if cfg.Policy == nil {
		cfg.Policy = &Policy{}
	}
	return cfg, nil
}

func syntaxError(file string, err error) error {
	pe := &ParseError{File: file, Err: ErrSyntax}
	var te toml.ParseError
	var tp *toml.ParseError
	switch {
	case errors.As(err, &te):
	case errors.As(err, &tp):
		te = *tp
	default:
		pe.Msg = oneLine("invalid TOML: " + err.Error())
		return pe
	}
	pe.Line, pe.Col = te.Position.Line, te.Position.Col
	hint := "fix the syntax here"
	if strings.Contains(te.Message, "invalid escape") {
		hint = `in double-quoted strings write "\\" for a backslash, or use single quotes: '\#x'`
	}
	pe.Msg = oneLine("invalid TOML: " + te.Message + "; " + hint)
	return pe
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// validator checks the decoded TOML against the schema and collects errors
// with positions.
type validator struct {
	file string
	src  *sourceMap
	errs []*ParseError
}

func (v *validator) errAt(p srcPos, sentinel error, format string, args ...any) {
	v.errs = append(v.errs, &ParseError{
		File: v.file, Line: p.Line, Col: p.Col,
		Msg: oneLine(fmt.Sprintf(format, args...)), Err: sentinel,
	})
}

func (v *validator) errAtKey(sentinel error, path []string, format string, args ...any) {
	v.errAt(v.src.keys[pathKey(path...)], sentinel, format, args...)
}

// errAtVal reports at the value of path, or at its key if unknown.
func (v *validator) errAtVal(sentinel error, path []string, format string, args ...any) {
	p, ok := v.src.vals[pathKey(path...)]
	if !ok {
		p = v.src.keys[pathKey(path...)]
	}
	v.errAt(p, sentinel, format, args...)
}

func (v *validator) table(val any, name string) (map[string]any, bool) {
	t, ok := val.(map[string]any)
	if !ok {
		v.errAtKey(ErrType, []string{name},
			"%s must be a table, not %s; write [%s] on a line of its own and its keys below it",
			name, typeName(val), name)
	}
	return t, ok
}

func (v *validator) vault(t map[string]any, cfg *Config) {
	for _, key := range sortedKeys(t) {
		path := []string{"vault", key}
		switch val := t[key]; key {
		case "backing":
			cfg.Backing = v.dirPath(val, path)
		case "mountpoint":
			cfg.Mountpoint = v.dirPath(val, path)
		case "untrusted_storage":
			b, ok := val.(bool)
			if !ok {
				v.errAtVal(ErrType, path, "vault.untrusted_storage must be true or false, not %s", typeName(val))
			}
			cfg.UntrustedStorage = b
		default:
			v.errAtKey(ErrUnknownKey, path,
				"unknown key %s in [vault]; it accepts backing, mountpoint and untrusted_storage",
				strconv.Quote(key))
		}
	}
}

// dirPath validates a vault directory path and returns it expanded and
// cleaned. Relative paths are rejected: the same file is read from
// different working directories, so they would be ambiguous.
func (v *validator) dirPath(val any, path []string) string {
	name := strings.Join(path, ".")
	s, ok := val.(string)
	if !ok {
		v.errAtVal(ErrType, path, "%s must be a string with a directory path, not %s", name, typeName(val))
		return ""
	}
	if s == "" {
		v.errAtVal(ErrBadPath, path, "%s is empty; set a directory path or remove the key", name)
		return ""
	}
	p, err := ExpandHome(s)
	if err != nil {
		v.errAtVal(ErrBadPath, path, "%s: %s", name, strings.TrimPrefix(err.Error(), ErrBadPath.Error()+": "))
		return ""
	}
	if !filepath.IsAbs(p) {
		v.errAtVal(ErrBadPath, path,
			"%s is the relative path %s; write an absolute path or one starting with \"~/\"",
			name, strconv.Quote(s))
		return ""
	}
	return filepath.Clean(p)
}

func (v *validator) policy(t map[string]any) *Policy {
	pol := &Policy{}
	for _, key := range sortedKeys(t) {
		path := []string{"policy", key}
		if key != "plaintext" {
			v.errAtKey(ErrUnknownKey, path,
				"unknown key %s in [policy]; it accepts only plaintext, a list of patterns",
				strconv.Quote(key))
			continue
		}
		list, ok := t[key].([]any)
		if !ok {
			v.errAtVal(ErrType, path,
				`policy.plaintext must be a list of strings, e.g. plaintext = ["Videos/"], not %s`,
				typeName(t[key]))
			continue
		}
		elems := v.src.elems[pathKey(path...)]
		for i, e := range list {
			var p srcPos
			if i < len(elems) {
				p = elems[i]
			} else {
				p = v.src.vals[pathKey(path...)]
			}
			s, ok := e.(string)
			if !ok {
				v.errAt(p, ErrType, "policy.plaintext element %d must be a string with a pattern, not %s; quote it", i+1, typeName(e))
				continue
			}
			r, err := newRule(i, s)
			if err != nil {
				v.errAt(p, ErrBadPattern, "bad pattern %s: %s", strconv.Quote(s), err.Error())
				continue
			}
			r.File, r.Line, r.Col = v.file, p.Line, p.Col
			pol.add(r)
		}
	}
	return pol
}

// typeName names the TOML type of a decoded value, with an article.
func typeName(val any) string {
	switch val.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date-time"
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	}
	if val != nil && reflect.TypeOf(val).Kind() == reflect.Slice {
		return "an array"
	}
	return "a value of another type"
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
