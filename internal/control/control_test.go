package control

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"cryptpt/config"
	"cryptpt/fs"
	"cryptpt/internal/testvault"
)

func newServer(t *testing.T, tv *testvault.Vault) *Server {
	t.Helper()
	s := &Server{
		Mount:  tv.Mount,
		Log:    "test",
		Config: func() (string, bool) { return "", false },
		Reload: func() (*Reload, error) { return nil, errors.New("no file") },
		Logf:   t.Logf,
	}
	if err := s.Start(tv.Mnt); err != nil {
		t.Fatal(err)
	}
	return s
}

// A request and its answer, through a real socket to a real mount.
func TestRoundTrip(t *testing.T) {
	tv := testvault.New(t, testvault.Options{Plaintext: []string{"media/"}})
	s := newServer(t, tv)
	if err := os.WriteFile(tv.Path("doc"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Dial(tv.Mnt)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Mountpoint != tv.Mnt || st.PID != os.Getpid() || len(st.Policy) != 1 || st.Policy[0] != "media/" || st.Log != "test" {
		t.Errorf("status: %+v", st)
	}
	res, err := c.Migrate("doc", nil)
	if err != nil || res.Converted || res.To != fs.ModeEncrypted {
		t.Errorf("migrate doc: %+v, %v", res, err)
	}
	if _, err := c.Migrate("missing", nil); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("migrate of a missing entry: %v, want ENOENT", err)
	}
	if _, err := c.Reload(); err == nil || err.Error() != "no file" {
		t.Errorf("reload: %v", err)
	}
	path := s.Path()
	s.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket left after Close: %v", err)
	}
	if _, err := Dial(tv.Mnt); !errors.Is(err, ErrNoSocket) {
		t.Errorf("dial after Close: %v, want ErrNoSocket", err)
	}
}

// Sockets are only made and used in directories of mode 0700 owned by the
// daemon's uid.
func TestPrivateDir(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := privateDir(open, os.Getuid()); err == nil {
		t.Error("a 0755 directory counts as private")
	}
	if err := makeSocketDir(filepath.Join(dir, "new"), os.Getuid()); err != nil {
		t.Errorf("a new directory: %v", err)
	}
	if err := privateDir(filepath.Join(dir, "new"), os.Getuid()+1); err == nil {
		t.Error("another uid's directory counts as private")
	}
}

// Migrate finds entries the kernel has not looked up yet, a path at a time,
// and converts them toward the running policy only.
func TestMigrateUnvisitedPath(t *testing.T) {
	tv := testvault.New(t, testvault.Options{Plaintext: []string{"media/"}})
	if err := os.MkdirAll(tv.Path("media/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tv.Path("media/sub/f"), []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	tv.Unmount(t)
	tv.Remount(t) // nothing looked up yet
	tv.Mount.SetPolicy(mustPolicy(t, "media/", "!media/sub/f"))
	s := newServer(t, tv)
	defer s.Close()
	c, err := Dial(tv.Mnt)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Migrate("media/sub/f", nil)
	if err != nil || !res.Converted || res.From != fs.ModePlaintext || res.To != fs.ModeEncrypted {
		t.Fatalf("migrate media/sub/f: %+v, %v", res, err)
	}
	if got, err := os.ReadFile(tv.Path("media/sub/f")); err != nil || string(got) != "content" {
		t.Errorf("after migrate: %q, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(tv.Backing, "media/sub/f")); !os.IsNotExist(err) {
		t.Errorf("the plaintext file is still in the vault: %v", err)
	}
}

func mustPolicy(t *testing.T, patterns ...string) *config.Policy {
	t.Helper()
	p, err := config.NewPolicy(patterns)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMigrateProgress: converting a large file sends progress lines before
// the answer, rising to the file's size, so migrate's bar moves inside it.
func TestMigrateProgress(t *testing.T) {
	tv := testvault.New(t, testvault.Options{Plaintext: []string{"media/"}})
	newServer(t, tv)
	if err := os.Mkdir(tv.Path("media"), 0o755); err != nil {
		t.Fatal(err)
	}
	const size = 3*progressEvery + 12345
	if err := os.WriteFile(tv.Path("media/big"), make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	// Encrypted first, where the policy says plaintext: migrate converts it.
	tv.Mount.SetPolicy(mustPolicy(t))
	c, err := Dial(tv.Mnt)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Migrate("media/big", nil); err != nil {
		t.Fatal(err)
	}
	tv.Mount.SetPolicy(mustPolicy(t, "media/"))
	var seen []int64
	res, err := c.Migrate("media/big", func(done int64) { seen = append(seen, done) })
	if err != nil || !res.Converted {
		t.Fatalf("migrate: %+v, %v", res, err)
	}
	if len(seen) < 3 {
		t.Fatalf("%d progress lines for a %d-byte file: %v", len(seen), size, seen)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] <= seen[i-1] || seen[i] > size {
			t.Fatalf("progress not rising within the file: %v", seen)
		}
	}
}
