package config

import (
	"errors"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

const exampleConfig = `# cryptpt config
[vault]
backing    = "/data/vault"
mountpoint = "~/Private"
untrusted_storage = true

[policy]
plaintext = ["Videos/", ".cache/", "*.iso", "!Videos/private/"]
`

func TestParseExample(t *testing.T) {
	t.Setenv("HOME", "/home/u")
	cfg, err := Parse("config.toml", []byte(exampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.File != "config.toml" || cfg.Backing != "/data/vault" || cfg.Mountpoint != "/home/u/Private" || !cfg.UntrustedStorage {
		t.Errorf("got %+v", cfg)
	}
	rules := cfg.Policy.Rules()
	wantCols := []int{14, 25, 36, 45}
	if len(rules) != 4 {
		t.Fatalf("got %d rules", len(rules))
	}
	for i, r := range rules {
		if r.Line != 8 || r.Col != wantCols[i] || r.Index != i || r.File != "config.toml" {
			t.Errorf("rule %d: %+v, want line 8 col %d", i, r, wantCols[i])
		}
	}
	if got, want := rules[0].String(), `"Videos/" (config.toml:8:14)`; got != want {
		t.Errorf("String() = %s, want %s", got, want)
	}
	d := cfg.Policy.Decide("Videos/private/x", false)
	if d.Plaintext || d.Rule != rules[3] {
		t.Errorf("Decide = %+v", d)
	}
}

func TestParseValid(t *testing.T) {
	t.Setenv("HOME", "/home/u")
	tests := []struct {
		name     string
		src      string
		backing  string
		patterns []string
		pos      [][2]int // line, col of each rule
	}{
		{"empty file", "", "", nil, nil},
		{"only comments", "# nothing\n\n", "", nil, nil},
		{"no policy", "[vault]\nbacking = '~'\n", "/home/u", nil, nil},
		{"empty list", "[policy]\nplaintext = []\n", "", nil, nil},
		{"path is cleaned", "[vault]\nbacking = \"/a/b/../c/\"\n", "/a/c", nil, nil},
		{"dotted keys", "policy.plaintext = ['a']\nvault.backing = '/v'\n", "/v", []string{"a"}, [][2]int{{1, 21}}},
		{"inline table", "policy = { plaintext = [ \"a\" , 'b' ] }\n", "", []string{"a", "b"}, [][2]int{{1, 26}, {1, 32}}},
		{"quoted keys", "[\"policy\"]\n'plaintext' = ['x']\n", "", []string{"x"}, [][2]int{{2, 16}}},
		{"multi-line array with comments", "[policy]\nplaintext = [ # first\n  \"a/\",   # dirs\n\n\t'b', # tab\n  # ['nope']\n  \"c\\\"d\"\n  ,\"e\",\n]\n",
			"", []string{"a/", "b", `c"d`, "e"}, [][2]int{{3, 3}, {5, 2}, {7, 3}, {8, 4}}},
		{"multi-line strings before", "[vault]\nbacking = \"\"\"/x\n\"\"\"\n[policy]\nplaintext = ['''a''', \"\"\"b\"\"\"]\n",
			"/x\n", []string{"a", "b"}, [][2]int{{5, 14}, {5, 23}}},
		{"escaped patterns", "[policy]\nplaintext = ['\\#x', \"\\\\!y\"]\n", "", []string{`\#x`, `\!y`}, [][2]int{{2, 14}, {2, 21}}},
		{"crlf", "[policy]\r\nplaintext = [\r\n  'a',\r\n  'b'\r\n]\r\n", "", []string{"a", "b"}, [][2]int{{3, 3}, {4, 3}}},
		{"byte order mark", "\ufeff[policy]\nplaintext = ['a']\n", "", []string{"a"}, [][2]int{{2, 14}}},
		{"other tables before", "[vault]\nbacking = '/v' # c\nmountpoint = '/m'\n\n[policy]\nplaintext=['a']", "/v", []string{"a"}, [][2]int{{6, 12}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("c.toml", []byte(tc.src))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Backing != filepathClean(tc.backing) {
				t.Errorf("backing = %q, want %q", cfg.Backing, tc.backing)
			}
			if cfg.Policy == nil {
				t.Fatal("nil policy")
			}
			rules := cfg.Policy.Rules()
			if len(rules) != len(tc.patterns) {
				t.Fatalf("got %d rules, want %d", len(rules), len(tc.patterns))
			}
			for i, r := range rules {
				if r.Pattern != tc.patterns[i] || r.Line != tc.pos[i][0] || r.Col != tc.pos[i][1] {
					t.Errorf("rule %d = %q at %d:%d, want %q at %d:%d", i, r.Pattern, r.Line, r.Col,
						tc.patterns[i], tc.pos[i][0], tc.pos[i][1])
				}
			}
		})
	}
}

func filepathClean(p string) string {
	if p == "" {
		return ""
	}
	return filepath.Clean(p)
}

func TestParseErrors(t *testing.T) {
	t.Setenv("HOME", "/home/u")
	tests := []struct {
		name     string
		src      string
		sentinel error
		line     int
		col      int    // -1: not checked (the TOML decoder's column)
		msg      string // substring
	}{
		{"syntax unterminated string", "[vault]\nbacking = \"/x\n", ErrSyntax, 2, 14, "invalid TOML"},
		{"syntax missing equals", "[policy]\nplaintext ['a']\n", ErrSyntax, 2, 11, "invalid TOML"},
		{"syntax unclosed array", "[policy]\nplaintext = ['a',\n", ErrSyntax, 2, 18, "invalid TOML"},
		{"syntax invalid escape", "[policy]\nplaintext = [\"\\#x\"]\n", ErrSyntax, 2, 15, "single quotes"},
		{"syntax duplicate key", "[vault]\nbacking = '/a'\nbacking = '/b'\n", ErrSyntax, 3, -1, "already been defined"},
		{"unknown top-level key", "[vault]\nbacking = '/a'\n\nplaintext = ['x']\n", ErrUnknownKey, 4, 1, `"plaintext"`},
		{"unknown top-level table", "\n  [polcy]\nplaintext = ['x']\n", ErrUnknownKey, 2, 4, `unknown key "polcy"`},
		{"unknown key in policy", "[policy]\n  plaintxt = ['x']\n", ErrUnknownKey, 2, 3, `unknown key "plaintxt" in [policy]`},
		{"unknown key in vault", "[vault]\nbacking = '/a'\nmount = '/b'\n", ErrUnknownKey, 3, 1, "in [vault]"},
		{"unknown dotted key", "vault.backing = '/a'\nvault.x.y = 1\n", ErrUnknownKey, 2, 7, `"x"`},
		{"unknown key in inline table", "policy = { plaintext = [], extra = 1 }\n", ErrUnknownKey, 1, 28, `"extra"`},
		{"plaintext is a string", "[policy]\nplaintext = \"Videos/\"\n", ErrType, 2, 13, "must be a list of strings"},
		{"plaintext is a table", "[policy.plaintext]\na = 1\n", ErrType, 1, 9, "not a table"},
		{"backing is an integer", "[vault]\nbacking = 3\n", ErrType, 2, 11, "must be a string"},
		{"untrusted_storage is a string", "[vault]\nuntrusted_storage = \"yes\"\n", ErrType, 2, 21, "true or false"},
		{"vault is a string", "vault = \"/x\"\n", ErrType, 1, 1, "must be a table"},
		{"policy is an array of tables", "[[policy]]\nplaintext = []\n", ErrType, 1, 3, "must be a table"},
		{"element not a string", "[policy]\nplaintext = [\n  'a',\n  42,\n]\n", ErrType, 4, 3, "element 2"},
		{"relative backing", "[vault]\nbacking = 'vault'\n", ErrBadPath, 2, 11, "relative"},
		{"empty mountpoint", "[vault]\nmountpoint = ''\n", ErrBadPath, 2, 14, "empty"},
		{"tilde user", "[vault]\nbacking = '~bob/v'\n", ErrBadPath, 2, 11, "~user"},
		{"bad pattern single line", "[policy]\nplaintext = ['ok/', 'bad[']\n", ErrBadPattern, 2, 21, `bad pattern "bad["`},
		{"bad pattern multi-line", "[policy]\nplaintext = [\n  \"Videos/\",  # ok\n  # 'x[',\n\n    \"a\", '!'\n]\n", ErrBadPattern, 6, 10, `bad pattern "!"`},
		{"bad pattern after escapes", "[policy]\nplaintext = [\"\\u0041\\\"\", \"\"]\n", ErrBadPattern, 2, 26, "empty"},
		{"first error wins", "[vault]\nzzz = 1\n[policy]\nplaintext = ['']\naaa = 2\n", ErrUnknownKey, 2, 1, `"zzz"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("c.toml", []byte(tc.src))
			if err == nil {
				t.Fatalf("no error; config %+v", cfg)
			}
			if cfg != nil {
				t.Error("non-nil config with error")
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v is not a *ParseError", err, err)
			}
			if !errors.Is(err, tc.sentinel) {
				t.Errorf("error %v does not wrap %v", err, tc.sentinel)
			}
			if tc.col < 0 {
				tc.col = pe.Col
			}
			if pe.File != "c.toml" || pe.Line != tc.line || pe.Col != tc.col {
				t.Errorf("error at %s:%d:%d, want c.toml:%d:%d (%v)", pe.File, pe.Line, pe.Col, tc.line, tc.col, err)
			}
			if !strings.Contains(pe.Msg, tc.msg) {
				t.Errorf("message %q does not contain %q", pe.Msg, tc.msg)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("message spans lines: %q", err.Error())
			}
			prefix := "c.toml:" + itoa(tc.line) + ":" + itoa(tc.col) + ": "
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("Error() = %q, want prefix %q", err.Error(), prefix)
			}
		})
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(exampleConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", "/home/u")
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.File != path || !cfg.Policy.HasPlaintextRules() {
		t.Errorf("got %+v", cfg)
	}
	if _, err := Load(filepath.Join(dir, "missing.toml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
}

func TestDefaultPath(t *testing.T) {
	tests := []struct {
		name, xdg, home, want string
	}{
		{"xdg set", "/xdg", "/home/u", "/xdg/cryptpt/config.toml"},
		{"xdg unset", "", "/home/u", "/home/u/.config/cryptpt/config.toml"},
		{"xdg relative is ignored", "rel", "/home/u", "/home/u/.config/cryptpt/config.toml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("XDG_CONFIG_HOME", tc.xdg)
			t.Setenv("HOME", tc.home)
			got, err := DefaultPath()
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	t.Run("no home: the user database answers", func(t *testing.T) {
		// mount(8) runs its helpers without $HOME.
		u, err := user.Current()
		if err != nil || !filepath.IsAbs(u.HomeDir) {
			t.Skip("no home directory in the user database")
		}
		t.Setenv("XDG_CONFIG_HOME", "")
		t.Setenv("HOME", "")
		want := filepath.Join(u.HomeDir, ".config", "cryptpt", "config.toml")
		if got, err := DefaultPath(); err != nil || got != want {
			t.Errorf("got %q, %v; want %q", got, err, want)
		}
	})
}

func TestExpandHome(t *testing.T) {
	t.Setenv("HOME", "/home/u")
	tests := []struct {
		in, want string
		err      bool
	}{
		{"~", "/home/u", false},
		{"~/", "/home/u", false},
		{"~/x/y", "/home/u/x/y", false},
		{"/abs/~", "/abs/~", false},
		{"rel", "rel", false},
		{"~bob", "", true},
		{"~bob/x", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ExpandHome(tc.in)
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("got %q, %v; want %q (error %v)", got, err, tc.want, tc.err)
			}
		})
	}
}
