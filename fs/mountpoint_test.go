package fs

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"cryptpt/internal/fstest"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// A daemon that mounts by itself mounts on the directory it checked, even
// when the path is changed between the check and mount(2): here the
// directory is moved away and a symlink to another directory put in its
// place, as a user who owns the parent could to mount over a directory he
// may not (fusermount3 is immune for the same reason: it mounts on ".").
func TestMountTargetIsTheCheckedDirectory(t *testing.T) {
	fstest.RequireFUSE(t)
	if !CanMount() {
		t.Skip("needs root or CAP_SYS_ADMIN to mount directly")
	}
	base := t.TempDir()
	dir, moved, victim := filepath.Join(base, "mnt"), filepath.Join(base, "moved"), filepath.Join(base, "victim")
	for _, d := range []string{dir, victim} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mt, err := openMountpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer mt.close()
	if err := mt.checkUser(false); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, dir); err != nil {
		t.Fatal(err)
	}
	mo := &fuse.MountOptions{Name: "cryptpt-test", MaxWrite: 128 << 10}
	fd, err := mt.mount(mo)
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	server, err := fuse.NewServer(fuse.NewDefaultRawFileSystem(), fmt.Sprintf("/dev/fd/%d", fd), mo)
	if err != nil {
		t.Fatalf("serve: %v", err)
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		t.Fatal(err)
	}
	mt.served()
	onMoved, _ := IsMountpoint(moved)
	onVictim, _ := IsMountpoint(victim)
	if err := mt.unmount(); err != nil {
		unix.Unmount(moved, unix.MNT_DETACH)
		t.Errorf("unmount: %v", err)
	}
	server.Wait()
	if !onMoved || onVictim {
		t.Errorf("mounted on the checked directory: %v, on the symlink's target: %v", onMoved, onVictim)
	}
	if m, _ := IsMountpoint(moved); m {
		t.Errorf("still mounted after unmount")
	}
}

// fuse.conf is read as fusermount3 reads it.
func TestUserAllowOther(t *testing.T) {
	for conf, want := range map[string]bool{
		"":                                     false,
		"user_allow_other\n":                   true,
		"  user_allow_other  \n":               true,
		"#user_allow_other\n":                  false,
		"mount_max = 1000\nuser_allow_other\n": true,
		"user_allow_other_not\n":               false,
		"user_allow_other # comment\n":         true,
		"user_allow_other":                     false,
	} {
		p := filepath.Join(t.TempDir(), "fuse.conf")
		if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := userAllowOther(p); got != want {
			t.Errorf("%q: %v, want %v", conf, got, want)
		}
	}
	if userAllowOther(filepath.Join(t.TempDir(), "missing")) {
		t.Errorf("a missing fuse.conf allows allow_other")
	}
}
