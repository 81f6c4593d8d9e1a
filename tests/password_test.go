package tests

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ptySession runs cryptpt with a pseudo-terminal as its stdin, stdout and
// stderr, as a person at a terminal would, and lets the test answer its
// prompts.
type ptySession struct {
	t      *testing.T
	master *os.File
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    strings.Builder
	seen   int // how much of out the test has waited past
	done   chan struct{}
}

func startPTY(t *testing.T, args ...string) *ptySession {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	must(t, err)
	must(t, unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	must(t, err)
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	must(t, err)
	s := &ptySession{t: t, master: master, done: make(chan struct{})}
	s.cmd = exec.Command(binary, args...)
	s.cmd.Stdin, s.cmd.Stdout, s.cmd.Stderr = slave, slave, slave
	must(t, s.cmd.Start())
	slave.Close()
	go func() {
		defer close(s.done)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			s.mu.Lock()
			s.out.Write(buf[:n])
			s.mu.Unlock()
			if err != nil { // EIO once the program has exited
				return
			}
		}
	}()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		master.Close()
	})
	return s
}

// expect waits until the output after what was already seen contains
// want, and moves past it. It fails the test when the program ends (or a
// minute passes, against a hang) without printing it.
func (s *ptySession) expect(want string) string {
	s.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		s.mu.Lock()
		out := s.out.String()
		s.mu.Unlock()
		if i := strings.Index(out[s.seen:], want); i >= 0 {
			got := out[s.seen : s.seen+i]
			s.seen += i + len(want)
			return got
		}
		select {
		case <-s.done:
			s.mu.Lock()
			out = s.out.String()
			s.mu.Unlock()
			if !strings.Contains(out[s.seen:], want) {
				s.t.Fatalf("the program ended without printing %q; after what was seen it printed:\n%s", want, out[s.seen:])
			}
			continue
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no %q after a minute; output so far:\n%s", want, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// send types line and Enter.
func (s *ptySession) send(line string) {
	s.t.Helper()
	if _, err := io.WriteString(s.master, line+"\r"); err != nil {
		s.t.Fatal(err)
	}
}

// wait returns the program's exit code and everything it printed after
// what was already seen.
func (s *ptySession) wait() (int, string) {
	s.t.Helper()
	err := s.cmd.Wait()
	<-s.done
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return code, s.out.String()[s.seen:]
}

// TestNewPasswordOnTerminal: on a terminal, init warns about a weak
// password and says how long an offline guess of it takes; a confirmation
// that does not match asks again instead of quitting, and a strong
// password is taken without a warning.
func TestNewPasswordOnTerminal(t *testing.T) {
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	s := startPTY(t, "init", "--kdf-time", "2", "--kdf-memory", "19456", vault)
	s.expect("New password: ")
	s.send("abc")
	warning := s.expect("Repeat: ")
	for _, want := range []string{"cryptpt: warning: weak password", "tries", "one machine like this", "per try", "cryptpt: hint: "} {
		if !strings.Contains(warning, want) {
			t.Errorf("no %q in the warning about \"abc\":\n%s", want, warning)
		}
	}
	s.send("abd")
	s.expect("do not match")
	between := s.expect("New password: ")
	if strings.Contains(between, "error") {
		t.Errorf("a mismatch is reported as an error:\n%s", between)
	}
	const good = "mulch tundra vesper quorum"
	s.send(good)
	if w := s.expect("Repeat: "); strings.Contains(w, "weak") {
		t.Errorf("a strong password is called weak:\n%s", w)
	}
	s.send(good)
	code, out := s.wait()
	if code != 0 || !strings.Contains(out, "Created a vault") {
		t.Fatalf("init: exit %d\n%s", code, out)
	}
	pw := filepath.Join(dir, "pw")
	must(t, os.WriteFile(pw, []byte(good+"\n"), 0o600))
	run(t, "fsck", "--passfile", pw, vault)
}

// TestNewPasswordMismatchGivesUp: after three confirmations that do not
// match, init stops with one error line and writes no vault.
func TestNewPasswordMismatchGivesUp(t *testing.T) {
	vault := filepath.Join(t.TempDir(), "vault")
	s := startPTY(t, "init", "--kdf-time", "2", "--kdf-memory", "19456", vault)
	for i := 0; i < 3; i++ {
		s.expect("New password: ")
		s.send("mulch tundra vesper quorum")
		s.expect("Repeat: ")
		s.send("mulch tundra vesper quorun")
	}
	code, out := s.wait()
	if code != 1 || !strings.Contains(out, "cryptpt: error: no new password: the passwords do not match (3 tries)") {
		t.Errorf("exit %d, want 1 and one error line:\n%s", code, out)
	}
	if strings.Contains(out, "New password: ") {
		t.Errorf("asked a fourth time:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(vault, "~~vault.toml")); err == nil {
		t.Error("a vault was written")
	}
}
