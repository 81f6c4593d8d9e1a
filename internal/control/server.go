package control

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"cryptpt/fs"

	"golang.org/x/sys/unix"
)

// Server answers the control requests of one mount. Mount, Log, Config and
// Reload are set by the daemon before Start.
type Server struct {
	Mount *fs.Mount
	// Log names where the daemon logs (Status.Log).
	Log string
	// Config returns the daemon's config file ("" for none) and whether it
	// was missing when last read.
	Config func() (file string, missing bool)
	// Reload reads the config file again and, if it parses, puts its policy
	// in force; the error of a broken file names file:line:col.
	Reload func() (*Reload, error)
	// Logf logs one line of the daemon's log.
	Logf func(format string, args ...any)

	ln   *net.UnixListener
	path string
	ino  uint64
}

// Start listens on the socket of mountpoint (absolute and clean) and serves
// in the background until Close. A socket left by a daemon that was killed
// (nothing answers it) is replaced.
func (s *Server) Start(mountpoint string) error {
	uid := os.Getuid()
	var errs []error
	for _, dir := range socketDirs(uid, true) {
		path := filepath.Join(dir, socketName(mountpoint))
		if len(path) > maxSocketPath {
			errs = append(errs, fmt.Errorf("%s: path too long for a socket", path))
			continue
		}
		if err := makeSocketDir(dir, uid); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := s.listen(path); err != nil {
			errs = append(errs, err)
			continue
		}
		go s.serve()
		return nil
	}
	return fmt.Errorf("no place for the control socket: %w", errors.Join(errs...))
}

func (s *Server) listen(path string) error {
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			s.Logf("control socket %s answers for a daemon still running (its mount was detached); taking it over", path)
		} else {
			s.Logf("control socket %s is stale (%v); replacing it", path, err)
		}
		os.Remove(path)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return err
	}
	ln.SetUnlinkOnClose(false)
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		ln.Close()
		return err
	}
	s.ln, s.path, s.ino = ln, path, st.Ino
	return nil
}

// Path is the socket's path, once started.
func (s *Server) Path() string { return s.path }

// Close stops serving and removes the socket, unless another daemon has put
// its own in its place since.
func (s *Server) Close() {
	if s.ln == nil {
		return
	}
	s.ln.Close()
	var st syscall.Stat_t
	if syscall.Lstat(s.path, &st) == nil && st.Ino == s.ino {
		os.Remove(s.path)
	}
}

func (s *Server) serve() {
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			return
		}
		go s.handle(c)
	}
}

// peerAllowed checks the connecting process with SO_PEERCRED: the daemon's
// own uid (the mount's owner) or root.
func peerAllowed(c *net.UnixConn) (int, bool) {
	cred, err := peerCred(c)
	if err != nil {
		return -1, false
	}
	uid := int(cred.Uid)
	return uid, uid == 0 || uid == os.Getuid()
}

func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, cerr
}

// maxRequest bounds one request line.
const maxRequest = 64 << 10

func (s *Server) handle(c *net.UnixConn) {
	defer c.Close()
	enc := json.NewEncoder(c)
	if uid, ok := peerAllowed(c); !ok {
		s.Logf("control: refused a request from uid %d (only uid %d and root may ask)", uid, os.Getuid())
		enc.Encode(Response{Error: ErrDenied.Error(), Errno: int(syscall.EACCES)})
		return
	}
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 4096), maxRequest)
	for sc.Scan() {
		var req Request
		var resp Response
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			resp = errResponse(fmt.Errorf("unreadable request: %v", err))
		} else {
			resp = s.answer(req, func(r Response) { enc.Encode(r) })
		}
		if enc.Encode(resp) != nil {
			return
		}
	}
}

// progressEvery is how many converted bytes pass between two Progress lines.
const progressEvery = 8 << 20

// answer answers req; send writes an interim line (migrate's progress).
func (s *Server) answer(req Request, send func(Response)) Response {
	switch req.Op {
	case OpStatus:
		st := &Status{Status: s.Mount.Status(), Log: s.Log, Socket: s.path}
		st.ConfigFile, st.ConfigMissing = s.Config()
		return Response{Status: st}
	case OpMigrate:
		var sent int64
		res, err := s.Mount.Migrate(req.Path, func(done int64) {
			if done-sent >= progressEvery {
				sent = done
				send(Response{Progress: &done})
			}
		})
		if err != nil {
			return errResponse(err)
		}
		return Response{Migrate: &res}
	case OpReload:
		r, err := s.Reload()
		if err != nil {
			return errResponse(err)
		}
		return Response{Reload: r}
	}
	return errResponse(fmt.Errorf("unknown request %q (a newer cryptpt than the daemon?)", req.Op))
}

func errResponse(err error) Response {
	resp := Response{Error: err.Error()}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		resp.Errno = int(errno)
	}
	return resp
}
