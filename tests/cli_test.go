package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	cfs "cryptpt/fs"
	"cryptpt/internal/fstest"
)

// expectFail runs cryptpt, expects exit status 1 and one error line that
// contains want.
func expectFail(t *testing.T, want string, args ...string) {
	t.Helper()
	_, stderr, code := cryptpt(args...)
	if code != 1 {
		t.Errorf("cryptpt %s: exit %d, want 1\n%s", strings.Join(args, " "), code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if !strings.HasPrefix(lines[0], "cryptpt: error: ") || !strings.Contains(lines[0], want) {
		t.Errorf("cryptpt %s: first line %q, want an error containing %q", strings.Join(args, " "), lines[0], want)
	}
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "cryptpt: hint: ") {
			t.Errorf("cryptpt %s: extra output %q", strings.Join(args, " "), l)
		}
	}
}

func TestPasswordLifecycle(t *testing.T) {
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	pw1, pw2, pw3, wrong := filepath.Join(dir, "pw1"), filepath.Join(dir, "pw2"), filepath.Join(dir, "pw3"), filepath.Join(dir, "wrong")
	for f, s := range map[string]string{pw1: "first\n", pw2: "second\n", pw3: "third\n", wrong: "nope\n"} {
		must(t, os.WriteFile(f, []byte(s), 0o600))
	}
	out := run(t, "init", "--passfile", pw1, "--kdf-time", "2", "--kdf-memory", "19456", vault)
	var recovery string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); strings.Count(l, "-") >= 5 && !strings.Contains(l, " ") {
			recovery = l
		}
	}
	if recovery == "" {
		t.Fatalf("init printed no recovery key:\n%s", out)
	}
	expectFail(t, "wrong password", "passwd", "--passfile", wrong, "--new-passfile", pw2, vault)
	run(t, "passwd", "--passfile", pw1, "--new-passfile", pw2, vault)
	expectFail(t, "wrong password", "passwd", "--passfile", pw1, "--new-passfile", pw3, vault)

	rk := filepath.Join(dir, "rk")
	must(t, os.WriteFile(rk, []byte(strings.ToLower(recovery)+"\n"), 0o600))
	run(t, "passwd", "--recovery-key-file", rk, "--new-passfile", pw3, vault)
	run(t, "passwd", "--passfile", pw3, "--new-passfile", pw1, vault)

	typo := []byte(recovery)
	if typo[0] == 'A' {
		typo[0] = 'B'
	} else {
		typo[0] = 'A'
	}
	must(t, os.WriteFile(rk, typo, 0o600))
	expectFail(t, "recovery key", "passwd", "--recovery-key-file", rk, "--new-passfile", pw2, vault)

	// Mounting with a wrong password says so and mounts nothing.
	mnt := filepath.Join(dir, "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	fstest.RequireFUSE(t)
	expectFail(t, "wrong password", "mount", "--passfile", wrong, vault, mnt)
}

func TestMountErrors(t *testing.T) {
	v := newCLIVault(t)
	base := []string{"mount", "--config", v.config, "--passfile", v.pwfile}
	expectFail(t, "does not exist", append(base, v.backing, filepath.Join(v.dir, "nope"))...)
	full := filepath.Join(v.dir, "full")
	must(t, os.MkdirAll(filepath.Join(full, "x"), 0o755))
	expectFail(t, "not empty", append(base, v.backing, full)...)
	notVault := filepath.Join(v.dir, "plain")
	must(t, os.Mkdir(notVault, 0o755))
	expectFail(t, "not a cryptpt vault", append(base, notVault, v.mnt)...)
	expectFail(t, "not a cryptpt vault", append(base, filepath.Join(v.dir, "missing"), v.mnt)...)
	v.mount(t)
	expectFail(t, "already a mount", append(base, v.backing, v.mnt)...)

	badCfg := filepath.Join(v.dir, "bad.toml")
	must(t, os.WriteFile(badCfg, []byte("[policy]\nplaintext = [\"ok/\",\n  \"[z-a]\"]\n"), 0o600))
	expectFail(t, "bad.toml:3:3", "mount", "--config", badCfg, "--passfile", v.pwfile, v.backing, v.mnt)
	must(t, os.WriteFile(badCfg, []byte("[policy]\nplaintxt = []\n"), 0o600))
	expectFail(t, "bad.toml:2:1", "explain", "--config", badCfg, "x")

	corrupt := filepath.Join(v.dir, "corrupt")
	must(t, os.Mkdir(corrupt, 0o755))
	must(t, os.WriteFile(filepath.Join(corrupt, "~~vault.toml"), []byte("version = 1\n"), 0o600))
	expectFail(t, "corrupt", append(base, corrupt, filepath.Join(v.dir, "full"))...)
	expectFail(t, "is not a cryptpt mount", "status", v.dir)
	expectFail(t, "is not empty", "init", "--passfile", v.pwfile, full)
}

func TestExplain(t *testing.T) {
	v := newCLIVault(t, "Videos/", "!Videos/private/", "*.iso")
	out := run(t, "explain", "--config", v.config, "Videos/a.mkv", "Videos/private/b.mkv", "x/y.iso", "notes.txt")
	for _, want := range []string{
		`Videos/a.mkv: new entries are plaintext (decided by pattern "Videos/"`,
		`Videos/private/b.mkv: new entries are encrypted (decided by pattern "!Videos/private/"`,
		`x/y.iso: new entries are plaintext (decided by pattern "*.iso"`,
		`notes.txt: new entries are encrypted (no pattern matches`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
	v.mount(t)
	must(t, os.Mkdir(v.path("docs"), 0o755))
	must(t, os.WriteFile(v.path("docs/a.txt"), []byte("x"), 0o644))
	must(t, os.Rename(v.path("docs/a.txt"), v.path("b.iso")))
	out = run(t, "explain", "--config", v.config, v.path("b.iso"))
	if !strings.Contains(out, "stored encrypted; differs from the policy") {
		t.Errorf("explain of a drifted file:\n%s", out)
	}
}

// SIGTERM and SIGINT to a foreground daemon unmount cleanly.
func TestSignalUnmounts(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			v := newCLIVault(t)
			cmd := exec.Command(binary, "mount", "-f", "--config", v.config, "--passfile", v.pwfile, v.backing, v.mnt)
			must(t, cmd.Start())
			waitMounted(t, v.mnt, true)
			must(t, os.WriteFile(v.path("f"), []byte("data"), 0o644))
			must(t, cmd.Process.Signal(sig))
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("daemon exit: %v", err)
				}
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				t.Fatal("daemon did not exit after the signal")
			}
			waitMounted(t, v.mnt, false)
		})
	}
}

func waitMounted(t *testing.T, mnt string, want bool) {
	t.Helper()
	for i := 0; i < 300; i++ {
		if m, _ := cfs.FindMount(mnt); (m == mnt) == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s mounted != %v after 6s", mnt, want)
}

func TestReadOnlyMount(t *testing.T) {
	v := newCLIVault(t, "media/")
	v.mount(t)
	must(t, os.Mkdir(v.path("media"), 0o755))
	must(t, os.WriteFile(v.path("media/a"), []byte("plain"), 0o644))
	must(t, os.WriteFile(v.path("b"), []byte("secret"), 0o644))
	v.unmount(t)
	v.mount(t, "--ro")
	for name, want := range map[string]string{"media/a": "plain", "b": "secret"} {
		if got, err := os.ReadFile(v.path(name)); err != nil || string(got) != want {
			t.Errorf("read %s on a read-only mount: %q, %v", name, got, err)
		}
	}
	if err := os.WriteFile(v.path("c"), []byte("x"), 0o644); err == nil {
		t.Error("created a file on a read-only mount")
	}
	if err := os.WriteFile(v.path("b"), []byte("x"), 0o644); err == nil {
		t.Error("overwrote a file on a read-only mount")
	}
}

// By default only the mounting user gets in; with --allow-other, other users
// get exactly what the modes allow.
func TestOtherUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as another user")
	}
	asNobody := func(args ...string) error {
		return exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups"}, args...)...).Run()
	}
	v := newCLIVault(t)
	must(t, os.Chmod(v.dir, 0o755))
	must(t, os.Chmod(filepath.Dir(v.dir), 0o755))
	v.mount(t)
	must(t, os.WriteFile(v.path("public"), []byte("x"), 0o644))
	if err := asNobody("cat", v.path("public")); err == nil {
		t.Error("another user read a file of a mount without --allow-other")
	}
	v.unmount(t)
	v.mount(t, "--allow-other")
	// init makes the vault 0700; open the mount's root like a shared dir.
	must(t, os.Chmod(v.mnt, 0o755))
	must(t, os.WriteFile(v.path("private"), []byte("x"), 0o600))
	if err := asNobody("cat", v.path("public")); err != nil {
		t.Errorf("another user cannot read a 0644 file with --allow-other: %v", err)
	}
	if err := asNobody("cat", v.path("private")); err == nil {
		t.Error("another user read a 0600 file with --allow-other")
	}
	if err := asNobody("touch", v.path("new")); err == nil {
		t.Error("another user created a file in a 0755 root-owned directory")
	}
}

// A write by another user clears set-user-ID and set-group-ID, in both modes:
// the daemon owns that duty (FUSE_HANDLE_KILLPRIV_V2), so set-id files never
// get passthrough.
func TestSetIDClearedOnWrite(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as another user")
	}
	v := newCLIVault(t, "media/")
	must(t, os.Chmod(v.dir, 0o755))
	must(t, os.Chmod(filepath.Dir(v.dir), 0o755))
	v.mount(t, "--allow-other")
	must(t, os.Chmod(v.mnt, 0o777))
	must(t, os.Mkdir(v.path("media"), 0o777))
	for _, name := range []string{"enc", "media/plain"} {
		p := v.path(name)
		must(t, os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755))
		must(t, os.Chmod(p, 0o6777))
		cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", "echo x >> "+p)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("write as nobody: %v\n%s", err, out)
		}
		st, err := os.Stat(p)
		must(t, err)
		if st.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 {
			t.Errorf("%s: mode %v after a write by another user, want set-id bits cleared", name, st.Mode())
		}
	}
}

// --idle unmounts a mount nobody uses, but never while a file is open. The
// daemon's idle checks are logged with --debug: the test waits for a check
// that came when the open file had gone untouched for longer than the limit,
// and for the check after it (so the first did not unmount), rather than
// sleeping and hoping a check came.
func TestIdleUnmount(t *testing.T) {
	v := newCLIVault(t)
	v.mount(t, "--idle", "1s", "--debug")
	f, err := os.Create(v.path("open"))
	must(t, err)
	opened := time.Now() // the last access: the file is only held open from here on
	const limit = time.Second
	var checked time.Time
	waitLog(t, v.log, func(line string) bool {
		if strings.Contains(line, "idle for 1s: unmounting") {
			t.Fatalf("unmounted while a file was open: %s", line)
		}
		_, rest, ok := strings.Cut(line, "idle check at ")
		if !ok {
			return false
		}
		at, err := time.Parse(time.RFC3339Nano, strings.TrimSuffix(strings.Fields(rest)[0], ":"))
		must(t, err)
		switch {
		case checked.IsZero() && at.After(opened.Add(limit)):
			checked = at // idle by access for longer than the limit
		case !checked.IsZero() && at.After(checked):
			return true // and it went on checking: it did not unmount
		}
		return false
	})
	if m, _ := cfs.FindMount(v.mnt); m != v.mnt {
		t.Fatal("unmounted while a file was open")
	}
	must(t, f.Close())
	waitLog(t, v.log, func(line string) bool { return strings.Contains(line, "idle for 1s: unmounting "+v.mnt) })
	waitMounted(t, v.mnt, false)
}

// waitLog waits until a line of the daemon's log at path satisfies match,
// reading new lines as they come. (Its only deadline is a guard against a
// hang, far beyond what any check here takes.)
func waitLog(t *testing.T, path string, match func(line string) bool) {
	t.Helper()
	seen := 0
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		data, err := os.ReadFile(path)
		must(t, err)
		lines := strings.Split(string(data), "\n")
		for ; seen < len(lines)-1; seen++ { // the last one may be partial
			if match(lines[seen]) {
				return
			}
		}
	}
	t.Fatalf("no matching line in %s after 2 minutes", path)
}

// A killed daemon: status says so in one line, unmount clears the dead
// mount, and the vault mounts again with everything in it.
func TestKilledDaemon(t *testing.T) {
	v := newCLIVault(t)
	v.mount(t)
	must(t, os.WriteFile(v.path("f"), []byte("kept"), 0o644))
	pid := v.status(t).PID
	must(t, syscall.Kill(pid, syscall.SIGKILL))
	waitGone(t, pid)
	expectFail(t, "daemon of "+v.mnt+" is gone", "status", v.mnt)
	expectFail(t, "already a mount point", "mount", "--config", v.config, "--passfile", v.pwfile, v.backing, v.mnt)
	run(t, "unmount", v.mnt)
	v.mount(t)
	if got, err := os.ReadFile(v.path("f")); err != nil || string(got) != "kept" {
		t.Errorf("after a killed daemon and a remount: %q, %v", got, err)
	}
}

// --shared-storage: a change made to the vault behind the mount's back shows
// at once, even for a name the kernel was just told does not exist.
func TestSharedStorage(t *testing.T) {
	v := newCLIVault(t, "media/")
	v.mount(t, "--shared-storage")
	must(t, os.Mkdir(v.path("media"), 0o755))
	if _, err := os.Stat(v.path("media/synced")); !os.IsNotExist(err) {
		t.Fatalf("stat before: %v", err)
	}
	must(t, os.WriteFile(filepath.Join(v.backing, "media/synced"), []byte("from elsewhere"), 0o644))
	if got, err := os.ReadFile(v.path("media/synced")); err != nil || string(got) != "from elsewhere" {
		t.Errorf("a file added to the vault from outside: %q, %v", got, err)
	}
	must(t, os.WriteFile(filepath.Join(v.backing, "media/synced"), []byte("changed"), 0o644))
	if got, err := os.ReadFile(v.path("media/synced")); err != nil || string(got) != "changed" {
		t.Errorf("a file changed in the vault from outside: %q, %v", got, err)
	}
}

// cryptptEnv runs the binary with extra environment and returns stdout,
// stderr and the exit code.
func cryptptEnv(env []string, args ...string) (stdout, stderr string, code int) {
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
	}
	return o.String(), e.String(), code
}

// A background mount without a config file says, in one line, that it runs
// without a policy (the daemon's log says it too, but nobody reads that).
func TestMountWithoutPolicySaysSo(t *testing.T) {
	v := newCLIVault(t)
	home := t.TempDir()
	env := []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config")}
	_, e, code := cryptptEnv(env, "mount", "--passfile", v.pwfile, "--log", v.log, v.backing, v.mnt)
	if code != 0 {
		t.Fatalf("mount: exit %d\n%s", code, e)
	}
	t.Cleanup(func() { cryptpt("unmount", v.mnt) })
	want := "cryptpt: note: no config file at " + filepath.Join(home, ".config", "cryptpt", "config.toml") + ", so no policy: everything new is encrypted"
	if lines := strings.Split(strings.TrimSpace(e), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], want) {
		t.Errorf("mount without a config file printed %q, want one line starting %q", e, want)
	}
	// With a config file it says nothing.
	run(t, "unmount", v.mnt)
	if _, e, code := cryptpt("mount", "--config", v.config, "--passfile", v.pwfile, "--log", v.log, v.backing, v.mnt); code != 0 || e != "" {
		t.Errorf("mount with a config file: exit %d, stderr %q", code, e)
	}
}

// A background daemon that dies before its mount is ready (killed, or a Go
// panic) is reported with how it died, not only "run with -f".
func TestDaemonDiesBeforeReady(t *testing.T) {
	v := newCLIVault(t)
	for crash, want := range map[string]string{
		"kill":  "mount failed: the daemon exited before the mount was ready: killed by signal 9 (killed)",
		"panic": "mount failed: the daemon exited before the mount was ready: panic: CRYPTPT_TEST_CRASH=panic (exit status 2)",
	} {
		_, e, code := cryptptEnv([]string{"CRYPTPT_TEST_CRASH=" + crash}, "mount", "--config", v.config, "--passfile", v.pwfile, "--log", v.log, v.backing, v.mnt)
		lines := strings.Split(strings.TrimSpace(e), "\n")
		if code != 1 || len(lines) != 2 || lines[0] != "cryptpt: error: "+want || !strings.HasPrefix(lines[1], "cryptpt: hint: ") || !strings.Contains(lines[1], "-f") {
			t.Errorf("daemon crash %q: exit %d\n%s\nwant the error %q and a hint naming -f", crash, code, e, want)
		}
		if m, _ := cfs.FindMount(v.mnt); m != "" {
			t.Errorf("daemon crash %q left %s mounted", crash, m)
		}
	}
}

// After a plain umount(8) the daemon still holds the vault's lock while it
// closes its files; a mount right then waits for it instead of calling the
// vault "already mounted read-write" (CI hit that in "umount; mount"). The
// test holds the lock as such a daemon would and lets go only once the
// mount is seen holding the vault open, waiting: a mount that gives up at
// once has exited by then and fails the test.
func TestMountWaitsForStoppingDaemon(t *testing.T) {
	v := newCLIVault(t)
	holder, err := os.Open(v.backing)
	must(t, err)
	defer holder.Close()
	must(t, syscall.Flock(int(holder.Fd()), syscall.LOCK_EX))
	cmd := exec.Command(binary, "mount", "--config", v.config, "--passfile", v.pwfile, "--log", v.log, v.backing, v.mnt)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	must(t, cmd.Start())
	t.Cleanup(func() {
		if m, _ := cfs.FindMount(v.mnt); m == v.mnt {
			cryptpt("unmount", v.mnt)
		}
	})
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for !holdsOpen(cmd.Process.Pid, v.backing) {
		select {
		case err := <-exited:
			t.Fatalf("mount gave up while the vault was locked by a daemon with no mount: %v\n%s", err, out.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	holder.Close()
	if err := <-exited; err != nil {
		t.Fatalf("mount after the lock was let go: %v\n%s", err, out.String())
	}
	must(t, os.WriteFile(v.path("f"), []byte("x"), 0o644))
}

// holdsOpen reports whether process pid has dir open.
func holdsOpen(pid int, dir string) bool {
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err == nil && target == dir {
			return true
		}
	}
	return false
}

// "cryptpt unmount" returns once the daemon has let go of the vault, so a
// mount right after it does not find the vault "already mounted
// read-write" (it did, now and then, on a loaded machine). The daemon is
// stopped (SIGSTOP) while the kernel unmounts, so that it cannot let go
// before unmount would return; it goes on once the mount is gone.
func TestUnmountReleasesVault(t *testing.T) {
	v := newCLIVault(t)
	// Without the wait in unmount, the daemon wins the race to let go in
	// about one round of three here; three rounds catch that nearly always.
	for round := 0; round < 3; round++ {
		v.mount(t)
		must(t, os.WriteFile(v.path("f"), []byte("x"), 0o644))
		pid := v.status(t).PID
		must(t, syscall.Kill(pid, syscall.SIGSTOP))
		cmd := exec.Command(binary, "unmount", v.mnt)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			syscall.Kill(pid, syscall.SIGCONT)
			t.Fatal(err)
		}
		waitMounted(t, v.mnt, false)
		must(t, syscall.Kill(pid, syscall.SIGCONT))
		if err := cmd.Wait(); err != nil {
			t.Fatalf("unmount: %v\n%s", err, out.String())
		}
		if err := tryLockVault(v.backing); err != nil {
			t.Fatalf("round %d: the vault is still locked when unmount returns: %v", round, err)
		}
	}
	v.mount(t)
	if got, err := os.ReadFile(v.path("f")); err != nil || string(got) != "x" {
		t.Errorf("after unmount and mount: %q, %v", got, err)
	}
}

// tryLockVault takes and drops the vault's lock without waiting.
func tryLockVault(backing string) error {
	f, err := os.Open(backing)
	if err != nil {
		return err
	}
	defer f.Close()
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}
