package tests

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"cryptpt/crypt"

	"golang.org/x/sys/unix"
)

// setPolicy rewrites the vault's config with a new plaintext list.
func (v *cliVault) setPolicy(t *testing.T, plaintext string) {
	t.Helper()
	must(t, os.WriteFile(v.config, []byte("[policy]\nplaintext = ["+plaintext+"]\n"), 0o600))
}

func TestMigrateAfterPolicyChange(t *testing.T) {
	v := newCLIVault(t, "media/")
	v.mount(t)
	must(t, os.MkdirAll(v.path("docs/sub"), 0o755))
	must(t, os.MkdirAll(v.path("media"), 0o755))
	secretDoc := canary(t, 300_000)
	clip := canary(t, 50_000)
	must(t, os.WriteFile(v.path("docs/sub/report"), secretDoc, 0o640))
	must(t, os.WriteFile(v.path("media/clip"), clip, 0o600))
	must(t, syscall.Setxattr(v.path("media/clip"), "user.tag", []byte("holiday"), 0))
	mtime := time.Date(2021, 5, 6, 7, 8, 9, 0, time.UTC)
	must(t, os.Chtimes(v.path("media/clip"), mtime, mtime))
	must(t, os.Symlink("clip", v.path("media/link")))

	// Swap the policy: docs becomes plaintext, media encrypted.
	v.unmount(t)
	v.setPolicy(t, `"docs/"`)
	v.mount(t)
	out := run(t, "migrate", "--dry-run", "--config", v.config, v.mnt)
	for _, want := range []string{"would store plaintext: /docs", "would store plaintext: /docs/sub/report", "would store encrypted: /media/clip", "would store encrypted: /media/link"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	if m := storedMode(t, v.path("media/clip")); m != "plaintext" {
		t.Fatalf("dry run changed something: media/clip is %s", m)
	}
	run(t, "migrate", "--config", v.config, v.mnt)
	for path, want := range map[string]string{"docs": "plaintext", "docs/sub": "plaintext", "docs/sub/report": "plaintext", "media": "encrypted", "media/clip": "encrypted", "media/link": "encrypted"} {
		if m := storedMode(t, v.path(path)); m != want {
			t.Errorf("%s stored %s after migrate, want %s", path, m, want)
		}
	}
	if got, _ := os.ReadFile(v.path("docs/sub/report")); !bytes.Equal(got, secretDoc) {
		t.Error("docs/sub/report changed content")
	}
	if got, _ := os.ReadFile(v.path("media/clip")); !bytes.Equal(got, clip) {
		t.Error("media/clip changed content")
	}
	if hits := vaultContains(t, v.backing, clip[:32]); len(hits) != 0 {
		t.Errorf("plaintext of the now-encrypted clip remains in the vault: %v", hits)
	}
	raw, err := os.ReadFile(filepath.Join(v.backing, "docs/sub/report"))
	if err != nil || !bytes.Equal(raw, secretDoc) {
		t.Errorf("docs/sub/report is not stored as plaintext in the vault: %v", err)
	}
	st, err := os.Stat(v.path("media/clip"))
	must(t, err)
	if st.Mode().Perm() != 0o600 || !st.ModTime().Equal(mtime) {
		t.Errorf("media/clip lost mode or mtime: %v %v", st.Mode(), st.ModTime())
	}
	buf := make([]byte, 32)
	if n, err := syscall.Getxattr(v.path("media/clip"), "user.tag", buf); err != nil || string(buf[:n]) != "holiday" {
		t.Errorf("xattr after migrate: %q %v", buf[:n], err)
	}
	if hits := vaultContains(t, v.backing, []byte("holiday")); len(hits) != 0 {
		t.Errorf("xattr value of the now-encrypted clip stored in the clear: %v", hits)
	}
	if target, err := os.Readlink(v.path("media/link")); err != nil || target != "clip" {
		t.Errorf("symlink after migrate: %q %v", target, err)
	}
	if out := run(t, "migrate", "--config", v.config, v.mnt); !strings.Contains(out, "Nothing to migrate") {
		t.Errorf("second migrate found work:\n%s", out)
	}
	// Everything still reads after a remount.
	v.unmount(t)
	v.mount(t)
	if got, _ := os.ReadFile(v.path("media/clip")); !bytes.Equal(got, clip) {
		t.Error("media/clip wrong after remount")
	}
}

func TestMigrateSkipsOpenFiles(t *testing.T) {
	v := newCLIVault(t)
	v.mount(t)
	must(t, os.WriteFile(v.path("busy"), []byte("x"), 0o644))
	f, err := os.Open(v.path("busy"))
	must(t, err)
	v.setPolicy(t, `"/**"`)
	run(t, "reload", v.mnt)
	out, _, code := cryptpt("migrate", "--config", v.config, v.mnt)
	if code != 1 || !strings.Contains(out, "skipped /busy: it is open") {
		t.Errorf("migrate with an open file: exit %d\n%s", code, out)
	}
	f.Close()
	run(t, "migrate", "--config", v.config, v.mnt)
	if m := storedMode(t, v.path("busy")); m != "plaintext" {
		t.Errorf("busy stored %s after it was closed and migrated", m)
	}
}

// Killing the daemon in the middle of a conversion loses nothing: after a
// remount the file reads back whole, and migrate finishes the job. The kill
// lands at a known point: while the daemon waits (held by fanotify) on a
// read of the encrypted original after it has written the first bytes of
// the plaintext copy.
func TestMigrateSurvivesKill(t *testing.T) {
	requireRoot(t) // fanotify permission events
	v := newCLIVault(t)
	v.mount(t)
	data := canary(t, 16<<20) // 16 reads of 1 MiB by the conversion
	must(t, os.WriteFile(v.path("big"), data, 0o644))
	pid := v.status(t).PID
	v.setPolicy(t, `"/**"`)
	run(t, "reload", v.mnt)

	tempWithBytes := func() bool {
		ents, _ := os.ReadDir(v.backing)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), crypt.TempPrefix) {
				if info, err := e.Info(); err == nil && info.Size() > 0 {
					return true
				}
			}
		}
		return false
	}
	stop := holdRead(t, v.backing, pid, tempWithBytes, func() { syscall.Kill(pid, syscall.SIGKILL) })
	cmd := exec.Command(binary, "migrate", "--config", v.config, v.mnt)
	must(t, cmd.Start())
	cmd.Wait()
	if !stop() {
		t.Fatal("the conversion never read the original after writing to its copy: the kill did not land mid-conversion")
	}
	waitGone(t, pid)
	if !tempWithBytes() {
		t.Error("no partial copy in the vault after the kill")
	}
	exec.Command("umount", "-l", v.mnt).Run()
	waitMounted(t, v.mnt, false)
	v.mount(t)
	if got, err := os.ReadFile(v.path("big")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("big after a kill during migrate: %v", err)
	}
	run(t, "migrate", "--config", v.config, v.mnt)
	if m := storedMode(t, v.path("big")); m != "plaintext" {
		t.Errorf("big stored %s after the second migrate", m)
	}
	if got, err := os.ReadFile(v.path("big")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("big wrong after the second migrate: %v", err)
	}
	entries, err := os.ReadDir(v.mnt)
	must(t, err)
	if len(entries) != 1 {
		t.Errorf("mount lists %d entries, want 1", len(entries))
	}
	// Only the plaintext copy is left in the vault (no encrypted twin).
	raw, _ := os.ReadDir(v.backing)
	for _, e := range raw {
		if strings.HasPrefix(e.Name(), crypt.EncryptedPrefix) {
			t.Errorf("encrypted twin left in the vault: %s", e.Name())
		}
	}
}

// holdRead watches reads of the files in dir with fanotify permission
// events. At the first read by process pid that comes while ready() holds,
// it runs act() while that read waits for permission, then lets it go, as
// it lets every other read go at once. The returned stop ends the watch and
// reports whether act ran.
func holdRead(t *testing.T, dir string, pid int, ready func() bool, act func()) (stop func() bool) {
	t.Helper()
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC)
	if err != nil {
		t.Fatalf("fanotify_init: %v", err)
	}
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD, unix.FAN_ACCESS_PERM|unix.FAN_EVENT_ON_CHILD, unix.AT_FDCWD, dir); err != nil {
		unix.Close(fd)
		t.Fatalf("fanotify_mark %s: %v", dir, err)
	}
	quit, done := make(chan struct{}), make(chan bool)
	go func() {
		acted := false
		buf := make([]byte, 4096)
		const metaLen = int(unsafe.Sizeof(unix.FanotifyEventMetadata{}))
		for {
			select {
			case <-quit:
				unix.Close(fd) // allows whatever still waits
				done <- acted
				return
			default:
			}
			// Wake up now and then to see quit; events wake it at once.
			unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 50)
			n, err := unix.Read(fd, buf)
			if err != nil || n <= 0 {
				continue
			}
			for off := 0; off+metaLen <= n; {
				ev := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&buf[off]))
				if ev.Mask&unix.FAN_ACCESS_PERM != 0 {
					if !acted && int(ev.Pid) == pid && ready() {
						act()
						acted = true
					}
					resp := unix.FanotifyResponse{Fd: ev.Fd, Response: unix.FAN_ALLOW}
					unix.Write(fd, (*[unsafe.Sizeof(resp)]byte)(unsafe.Pointer(&resp))[:])
				}
				if ev.Fd >= 0 {
					unix.Close(int(ev.Fd))
				}
				off += int(ev.Event_len)
			}
		}
	}()
	return func() bool {
		close(quit)
		return <-done
	}
}

// TestMigrateResolvesTwins: an entry stored in both forms (what a migrate
// killed between its rename and its unlink leaves) is listed by status, and
// migrate removes the copy in the form the policy does not give, but only
// when both hold the same content: a twin that differs may be the only copy
// of something, or planted, and is left for the user.
func TestMigrateResolvesTwins(t *testing.T) {
	v := newCLIVault(t)
	v.mount(t)
	same, other := canary(t, 5000), canary(t, 5000)
	must(t, os.WriteFile(v.path("same"), same, 0o644))
	must(t, os.WriteFile(v.path("differs"), same, 0o644))
	v.unmount(t)
	must(t, os.WriteFile(filepath.Join(v.backing, "same"), same, 0o644))
	must(t, os.WriteFile(filepath.Join(v.backing, "differs"), other, 0o644))
	v.setPolicy(t, `"/**"`)
	v.mount(t)
	listNames(t, v.mnt) // the listing finds the twins
	if st := v.status(t); !slices.Equal(st.Twins, []string{"differs", "same"}) {
		t.Fatalf("status lists twins %v", st.Twins)
	}
	out, _, code := cryptpt("migrate", v.mnt)
	if code == 0 || !strings.Contains(out, "removed the stale encrypted copy of /same") || !strings.Contains(out, "left /differs") {
		t.Fatalf("migrate: exit %d\n%s", code, out)
	}
	encrypted := 0
	raw, _ := os.ReadDir(v.backing)
	for _, e := range raw {
		if strings.HasPrefix(e.Name(), "~~c") {
			encrypted++
		}
	}
	if encrypted != 1 {
		t.Errorf("%d encrypted entries left in the vault, want 1 (the twin of differs)", encrypted)
	}
	for name, want := range map[string][]byte{"same": same, "differs": other} {
		if got, err := os.ReadFile(v.path(name)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s after migrate: %v", name, err)
		}
	}
}

// TestMigrateKeepsXattrs converts a file with user.* xattrs to plaintext and
// back: the values survive both ways (sealed to the file's ID when
// encrypted, as they are when plaintext).
func TestMigrateKeepsXattrs(t *testing.T) {
	v := newCLIVault(t)
	v.mount(t)
	for _, name := range []string{"f", "empty"} {
		data := []byte("content of " + name)
		if name == "empty" {
			data = nil
		}
		must(t, os.WriteFile(v.path(name), data, 0o644))
		must(t, unix.Setxattr(v.path(name), "user.tag", []byte("tag of "+name), 0))
	}
	check := func(when string) {
		t.Helper()
		for _, name := range []string{"f", "empty"} {
			buf := make([]byte, 64)
			n, err := unix.Getxattr(v.path(name), "user.tag", buf)
			if err != nil || string(buf[:n]) != "tag of "+name {
				t.Errorf("%s: %s user.tag = %q, %v", when, name, buf[:max(n, 0)], err)
			}
		}
	}
	for _, policy := range []string{`"/**"`, ""} {
		v.setPolicy(t, policy)
		run(t, "reload", v.mnt)
		run(t, "migrate", v.mnt)
		check("after migrating to policy [" + policy + "]")
	}
}

// TestMigrateOldPlaintextNote: migrating plaintext to encrypted says that
// the old plaintext may remain on the disk, and points at the threat model
// where an installed cryptpt has it (PREFIX/share/doc/cryptpt beside
// PREFIX/bin), not at a path in a source checkout.
func TestMigrateOldPlaintextNote(t *testing.T) {
	prefix := t.TempDir()
	for _, d := range []string{"bin", "share/doc/cryptpt"} {
		must(t, os.MkdirAll(filepath.Join(prefix, d), 0o755))
	}
	installed := filepath.Join(prefix, "bin", "cryptpt")
	self, err := os.ReadFile(binary)
	must(t, err)
	must(t, os.WriteFile(installed, self, 0o755))
	doc := filepath.Join(prefix, "share", "doc", "cryptpt", "threat-model.md")
	must(t, os.WriteFile(doc, []byte("# threat model\n"), 0o644))

	v := newCLIVault(t, "/**")
	v.mount(t)
	for _, name := range []string{"a", "b"} {
		must(t, os.WriteFile(v.path(name), []byte("was plaintext"), 0o644))
	}
	v.setPolicy(t, "")
	run(t, "reload", v.mnt)
	out, err := exec.Command(installed, "migrate", v.mnt).CombinedOutput()
	if err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	for _, want := range []string{"the old plaintext of the 2 entries now encrypted may still be recoverable from the disk",
		"snapshots, backups", "\"Old plaintext after migrate\" in " + doc + ")"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("migrate output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "docs/threat-model.md") {
		t.Errorf("migrate points at a source checkout:\n%s", out)
	}
}
