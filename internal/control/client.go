package control

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"cryptpt/fs"
	"cryptpt/internal/mountinfo"

	"golang.org/x/sys/unix"
)

// Errors of Dial.
var (
	// ErrNotMounted means the path is not the root of a cryptpt mount.
	ErrNotMounted = errors.New("not a cryptpt mount")
	// ErrDaemonGone means the mount is there but its daemon is not (it was
	// killed or crashed): the kernel answers ENOTCONN.
	ErrDaemonGone = errors.New("the daemon is gone (killed or crashed)")
	// ErrDenied means the caller is neither the mount's owner nor root.
	ErrDenied = errors.New("only the mount's owner and root may ask its daemon")
	// ErrNoSocket means no control socket answers for the mount, though
	// the mount is alive (a daemon of an older cryptpt, or one that could
	// not make its socket: see its log).
	ErrNoSocket = errors.New("the daemon has no control socket")
)

// DaemonError is a request the daemon refused, with its one-line reason.
type DaemonError struct {
	Msg   string
	Errno syscall.Errno // 0 if none
}

func (e *DaemonError) Error() string { return e.Msg }

// Unwrap lets errors.Is match the errno (syscall.EBUSY, ...).
func (e *DaemonError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// Client is a connection to one mount's daemon. It is not safe for
// concurrent use.
type Client struct {
	conn *net.UnixConn
	r    *bufio.Reader
}

// OwnerUID returns the uid of the daemon serving the cryptpt mount at
// mountpoint, from the mount's user_id= option.
func OwnerUID(mountpoint string) (int, error) {
	mounts, err := mountinfo.Read()
	if err != nil {
		return -1, err
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		m := mounts[i]
		if m.Point != mountpoint || !m.IsCryptpt() {
			continue
		}
		v, ok := m.Option("user_id")
		if !ok {
			return -1, fmt.Errorf("mount %s has no user_id option", mountpoint)
		}
		return strconv.Atoi(v)
	}
	return -1, ErrNotMounted
}

// Dial connects to the daemon of the cryptpt mount at mountpoint (absolute
// and clean). It looks in the socket directories of the daemon's uid, which
// may differ from the caller's (root asking about a user's mount), uses only
// a socket in a private directory of that uid, and checks that the process
// answering runs as that uid.
func Dial(mountpoint string) (*Client, error) {
	uid, err := OwnerUID(mountpoint)
	if err != nil {
		return nil, err
	}
	name := socketName(mountpoint)
	var denied, refused error
	for _, dir := range socketDirs(uid, uid == os.Getuid()) {
		if err := privateDir(dir, uid); err != nil {
			if errors.Is(err, os.ErrPermission) {
				denied = err
			}
			continue
		}
		path := filepath.Join(dir, name)
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			switch {
			case errors.Is(err, syscall.EACCES):
				denied = err
			case errors.Is(err, syscall.ECONNREFUSED):
				refused = err
			}
			continue
		}
		cred, err := peerCred(c)
		if err != nil || int(cred.Uid) != uid {
			c.Close()
			continue
		}
		return &Client{conn: c, r: bufio.NewReader(c)}, nil
	}
	// statfs always asks the FUSE connection (a stat may be answered from
	// the kernel's attribute cache); a dead one says ENOTCONN.
	var sfs unix.Statfs_t
	if err := unix.Statfs(mountpoint, &sfs); errors.Is(err, syscall.ENOTCONN) {
		return nil, ErrDaemonGone
	}
	if denied != nil {
		return nil, fmt.Errorf("%w (the owner is uid %d)", ErrDenied, uid)
	}
	if refused != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoSocket, refused)
	}
	return nil, ErrNoSocket
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) call(req Request) (*Response, error) {
	return c.callWithProgress(req, nil)
}

// callWithProgress is call that hands the Progress lines before the answer
// to progress.
func (c *Client) callWithProgress(req Request, progress func(int64)) (*Response, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := c.conn.Write(append(data, '\n')); err != nil {
		return nil, fmt.Errorf("send to the daemon: %w", err)
	}
	var resp Response
	for {
		line, err := c.r.ReadBytes('\n')
		if err != nil {
			return nil, fmt.Errorf("the daemon did not answer: %w", err)
		}
		resp = Response{}
		if err := json.Unmarshal(line, &resp); err != nil {
			return nil, fmt.Errorf("unreadable answer from the daemon: %w", err)
		}
		if resp.Progress == nil {
			break
		}
		if progress != nil {
			progress(*resp.Progress)
		}
	}
	if resp.Error != "" {
		if resp.Error == ErrDenied.Error() {
			return nil, ErrDenied
		}
		return nil, &DaemonError{Msg: resp.Error, Errno: syscall.Errno(resp.Errno)}
	}
	return &resp, nil
}

// Status asks for the mount's status.
func (c *Client) Status() (*Status, error) {
	resp, err := c.call(Request{Op: OpStatus})
	if err != nil {
		return nil, err
	}
	if resp.Status == nil {
		return nil, errors.New("the daemon sent no status")
	}
	return resp.Status, nil
}

// Migrate asks the daemon to convert the entry at rel (relative to the mount
// root) to the mode its running policy gives the path.
func (c *Client) Migrate(rel string, progress func(done int64)) (*fs.MigrateResult, error) {
	resp, err := c.callWithProgress(Request{Op: OpMigrate, Path: rel}, progress)
	if err != nil {
		return nil, err
	}
	if resp.Migrate == nil {
		return nil, errors.New("the daemon sent no migrate result")
	}
	return resp.Migrate, nil
}

// Reload asks the daemon to read its config file again.
func (c *Client) Reload() (*Reload, error) {
	resp, err := c.call(Request{Op: OpReload})
	if err != nil {
		return nil, err
	}
	if resp.Reload == nil {
		return nil, errors.New("the daemon sent no reload result")
	}
	return resp.Reload, nil
}
