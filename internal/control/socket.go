package control

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// socketName names the socket of the daemon serving mountpoint (an absolute,
// clean path), so a client finds it from the mountpoint alone.
func socketName(mountpoint string) string {
	sum := sha256.Sum256([]byte(mountpoint))
	return hex.EncodeToString(sum[:16]) + ".sock"
}

// maxSocketPath is what fits in sockaddr_un.sun_path with its final NUL.
const maxSocketPath = 107

// socketDirs lists the directories a daemon running as uid may keep its
// socket in, best first: /run/cryptpt for root; else $XDG_RUNTIME_DIR/cryptpt
// (only when env is that user's own environment), /run/user/UID/cryptpt, and
// for users without a runtime directory (su, setpriv, containers)
// $TMPDIR/cryptpt-UID. Each must be a directory of mode 0700 owned by uid.
func socketDirs(uid int, env bool) []string {
	if uid == 0 {
		return []string{"/run/cryptpt"}
	}
	var dirs []string
	if x := os.Getenv("XDG_RUNTIME_DIR"); env && filepath.IsAbs(x) {
		dirs = append(dirs, filepath.Join(x, "cryptpt"))
	}
	run := fmt.Sprintf("/run/user/%d/cryptpt", uid)
	if len(dirs) == 0 || dirs[0] != run {
		dirs = append(dirs, run)
	}
	return append(dirs, filepath.Join(os.TempDir(), fmt.Sprintf("cryptpt-%d", uid)))
}

// privateDir reports whether dir is a directory of mode 0700 owned by uid,
// the only kind a socket is put in or looked for in: nobody else can have
// made the socket.
func privateDir(dir string, uid int) error {
	var st syscall.Stat_t
	if err := syscall.Lstat(dir, &st); err != nil {
		return err
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR || int(st.Uid) != uid || st.Mode&0o077 != 0 {
		return fmt.Errorf("%s is not a directory of mode 0700 owned by uid %d", dir, uid)
	}
	return nil
}

// makeSocketDir creates dir (mode 0700) if its parent exists, and checks it.
func makeSocketDir(dir string, uid int) error {
	if filepath.Dir(dir) == "/run" {
		// /run/cryptpt for root: /run exists on every systemd machine;
		// make it where it does not.
		os.MkdirAll("/run", 0o755)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !os.IsExist(err) {
		return err
	}
	return privateDir(dir, uid)
}
