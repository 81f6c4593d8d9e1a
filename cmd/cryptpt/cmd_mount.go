package main

import (
	"errors"
	"fmt"
	"io"
	"log"
	"log/syslog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"cryptpt/config"
	"cryptpt/crypt"
	"cryptpt/fs"
	"cryptpt/internal/control"
	"cryptpt/keys"
)

// Environment and descriptors of the background daemon: the foreground
// process hands it the unwrapped master key over a pipe (never argv or env)
// and waits on a second pipe for "ok" or the reason it failed.
const (
	daemonEnv   = "CRYPTPT_DAEMON"
	daemonKeyFd = 3
	daemonRdyFd = 4
)

type mountFlags struct {
	configPath    string
	foreground    bool
	readOnly      bool
	allowOther    bool
	noPassthrough bool
	untrusted     bool
	logFile       string
	debug         bool
	idle          time.Duration
	writeback     bool
	sharedStorage bool
	logNames      bool
}

func runMount(args []string) error {
	fl := newFlags("mount", "mount [--config C] [--passfile F | --extpass CMD] [-f] [--ro] [BACKING MOUNTPOINT]")
	var src secretSource
	src.register(fl)
	var mf mountFlags
	fl.StringVar(&mf.configPath, "config", "", "policy and vault paths from `FILE` (default $XDG_CONFIG_HOME/cryptpt/config.toml)")
	fl.BoolVar(&mf.foreground, "f", false, "stay in the foreground and log to stderr")
	fl.BoolVar(&mf.readOnly, "ro", false, "mount read-only")
	fl.BoolVar(&mf.allowOther, "allow-other", false, "let other users in, with kernel permission checks (default_permissions)")
	fl.BoolVar(&mf.noPassthrough, "no-passthrough", false, "serve plaintext files through the daemon instead of kernel passthrough")
	fl.BoolVar(&mf.untrusted, "untrusted-storage", false, "hide plaintext entries found at paths the policy encrypts (also: vault.untrusted_storage)")
	fl.StringVar(&mf.logFile, "log", "", "append the daemon's log to `FILE` (default: syslog when in the background)")
	fl.BoolVar(&mf.debug, "debug", false, "log every FUSE request")
	fl.BoolVar(&mf.logNames, "log-names", false, "name entries by their plaintext path in the daemon's log (default: by inode number and vault name only)")
	fl.BoolVar(&mf.sharedStorage, "shared-storage", false, "the vault is on a network filesystem that another machine changes (NFS, SMB, sshfs: no inotify events here): cache nothing. Not needed for a sync tool writing a local vault")
	fl.BoolVar(&mf.writeback, "writeback", true, "the kernel's writeback cache wherever passthrough is not used (much faster small encrypted writes); --writeback=false turns it off")
	fl.DurationVar(&mf.idle, "idle", 0, "unmount after `DURATION` with no open file and no access (e.g. 30m; 0 = never)")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(mf.configPath)
	if err != nil {
		return err
	}
	backing, mountpoint := cfg.Backing, cfg.Mountpoint
	switch len(pos) {
	case 0:
		if backing == "" || mountpoint == "" {
			return usageError(fl, "mount needs BACKING and MOUNTPOINT, as arguments or as vault.backing and vault.mountpoint in the config")
		}
	case 2:
		backing, mountpoint = pos[0], pos[1]
	default:
		return usageError(fl, "mount takes two arguments, BACKING and MOUNTPOINT")
	}
	mountpoint, _ = filepath.Abs(mountpoint)
	backing, _ = filepath.Abs(backing)
	mf.untrusted = mf.untrusted || cfg.UntrustedStorage

	if mf.configPath == "" {
		// The daemon reads this file again on reload; it may not exist yet.
		mf.configPath, _ = config.DefaultPath()
	}
	mf.configPath, _ = filepath.Abs(mf.configPath)
	if os.Getenv(daemonEnv) == "1" {
		return daemonMain(backing, mountpoint, cfg, mf)
	}
	if _, err := keys.Load(backing); err != nil {
		return vaultError(err, backing)
	}
	if err := checkMountpoint(mountpoint); err != nil {
		return err
	}
	if !mf.readOnly && errors.Is(fs.CheckVaultLock(backing), fs.ErrVaultInUse) {
		return mountError(fs.ErrVaultInUse, "", backing, mountpoint)
	}
	v, err := src.openVault(backing)
	if err != nil {
		return err
	}
	defer v.Wipe()
	if mf.foreground {
		return serve(backing, mountpoint, cfg, mf, v.Master(), nil)
	}
	if err := spawnDaemon(mountpoint, v.Master()); err != nil {
		return err
	}
	if cfg.File == "" {
		// The daemon logs it too, where nobody looks (-f prints its log).
		fmt.Fprintf(os.Stderr, "cryptpt: note: no config file at %s, so no policy: everything new is encrypted (write one, then \"cryptpt reload %s\")\n", mf.configPath, mountpoint)
	}
	return nil
}

func loadConfig(path string) (*config.Config, error) {
	explicit := path != ""
	if !explicit {
		p, err := config.DefaultPath()
		if err != nil {
			return nil, fail("", "%v", err)
		}
		path = p
	}
	cfg, err := config.Load(path)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		// No config: everything is encrypted.
		empty, _ := config.NewPolicy(nil)
		return &config.Config{Policy: empty}, nil
	}
	if err != nil {
		var pe *config.ParseError
		if errors.As(err, &pe) {
			return nil, fail("", "%v", pe)
		}
		return nil, fail("", "%v", err)
	}
	return cfg, nil
}

func checkMountpoint(mp string) error {
	err := fs.CheckMountpoint(mp)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrMountpointMissing):
		return fail("create it with \"mkdir -p "+mp+"\"", "mountpoint %s does not exist", mp)
	case errors.Is(err, fs.ErrMountpointNotEmpty):
		return fail("mount on an empty directory, so nothing in it is hidden", "mountpoint %s is not empty", mp)
	case errors.Is(err, fs.ErrMountpointMounted):
		return fail("unmount it first with \"cryptpt unmount "+mp+"\"", "%s is already a mount point", mp)
	case errors.Is(err, fs.ErrMountpointNotDir):
		return fail("", "mountpoint %s is not a directory", mp)
	}
	return fail("", "mountpoint %s: %v", mp, err)
}

// spawnDaemon starts this program again in the background, hands it the
// master key and returns when the mount is live or the daemon said why not.
func spawnDaemon(mountpoint string, master *[32]byte) error {
	self, err := os.Executable()
	if err != nil {
		return fail("", "cannot find my own executable: %v", err)
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Env = append(os.Environ(), daemonEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return startDaemon(cmd, master, "run the same command with -f to see the daemon's log")
}

// startDaemon starts cmd (this program as a daemon: daemonEnv set), hands it
// master on fd 3 and waits for its answer on fd 4: nil once the mount is
// live, else a *userError with the daemon's reason and hint. A daemon that
// dies without a word (a crash, a signal) is reported with how it ended and
// what it wrote on its stderr meanwhile (a Go panic), with hint.
func startDaemon(cmd *exec.Cmd, master *[32]byte, hint string) error {
	keyR, keyW, err := os.Pipe()
	if err != nil {
		return err
	}
	rdyR, rdyW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.ExtraFiles = []*os.File{keyR, rdyW} // fds 3 and 4
	cmd.Stderr = errW                       // until the mount is ready (see daemonMain)
	err = cmd.Start()
	keyR.Close()
	rdyW.Close()
	errW.Close()
	if err != nil {
		keyW.Close()
		rdyR.Close()
		errR.Close()
		return fail("", "cannot start the daemon: %v", err)
	}
	stderr := newPipeReader(errR, 64<<10)
	_, werr := keyW.Write(master[:])
	keyW.Close()
	msg, _ := io.ReadAll(rdyR)
	rdyR.Close()
	if werr == nil && strings.TrimSpace(string(msg)) == "ok" {
		cmd.Process.Release()
		stderr.stop()
		return nil
	}
	waitErr := cmd.Wait()
	said := stderr.stop()
	// The daemon's first line is the error, a second one its hint.
	reason, dhint, _ := strings.Cut(strings.TrimSpace(string(msg)), "\n"+readyHint)
	if reason != "" {
		return &userError{msg: reason, hint: dhint, code: exitError}
	}
	return &userError{msg: "mount failed: the daemon exited before the mount was ready: " + daemonDeath(waitErr, said), hint: hint, code: exitError}
}

// readyHint starts the line of the ready pipe that carries a hint.
const readyHint = "hint: "

// daemonDeath words how a daemon ended: the line of its stderr that says
// why (a Go panic or fatal error, else its last line), and its exit status
// or signal.
func daemonDeath(waitErr error, stderr []byte) string {
	how := "it exited"
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			how = fmt.Sprintf("killed by signal %d (%v)", int(ws.Signal()), ws.Signal())
		} else {
			how = fmt.Sprintf("exit status %d", ee.ExitCode())
		}
	} else if waitErr == nil {
		how = "exit status 0"
	}
	var last string
	for _, line := range strings.Split(string(stderr), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ") {
			last = line
			break
		}
		if line != "" {
			last = line
		}
	}
	if last != "" {
		return fmt.Sprintf("%s (%s)", last, how)
	}
	return how
}

// daemonMain is the background daemon: it reads the key, detaches from the
// terminal and serves.
func daemonMain(backing, mountpoint string, cfg *config.Config, mf mountFlags) error {
	keyPipe := os.NewFile(daemonKeyFd, "key")
	ready := os.NewFile(daemonRdyFd, "ready")
	var master [32]byte
	_, err := io.ReadFull(keyPipe, master[:])
	keyPipe.Close()
	if err != nil {
		fmt.Fprintf(ready, "cannot receive the key: %v\n", err)
		return err
	}
	// Detach from the terminal. Stderr stays the starter's pipe until the
	// mount is ready (serve then points it at /dev/null), so that a crash
	// before that is reported with its cause.
	detachStdio(0, 1)
	testCrash()
	err = serve(backing, mountpoint, cfg, mf, &master, ready)
	if err != nil {
		var ue *userError
		if errors.As(err, &ue) {
			fmt.Fprintln(ready, ue.msg)
			if ue.hint != "" {
				fmt.Fprintln(ready, readyHint+ue.hint)
			}
		} else {
			fmt.Fprintln(ready, err)
		}
	}
	ready.Close()
	return err
}

// detachStdio points the given fds at /dev/null.
func detachStdio(fds ...int) {
	if devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
		for _, fd := range fds {
			syscall.Dup2(int(devnull.Fd()), fd)
		}
		devnull.Close()
	}
}

// testCrash, for the tests only, makes the background daemon die before its
// mount is ready: CRYPTPT_TEST_CRASH=kill (SIGKILL) or panic.
func testCrash() {
	switch os.Getenv("CRYPTPT_TEST_CRASH") {
	case "kill":
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	case "panic":
		panic("CRYPTPT_TEST_CRASH=panic")
	}
}

// newLogger picks where the daemon logs: a file if asked, stderr in the
// foreground, else syslog (the journal), else a file under
// $XDG_STATE_HOME/cryptpt (machines without a syslog socket). It also
// returns where that is, for status.
func newLogger(mf mountFlags) (*log.Logger, string, error) {
	if mf.logFile != "" {
		f, err := os.OpenFile(mf.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, "", fail("", "cannot open log file: %v", err)
		}
		abs, _ := filepath.Abs(mf.logFile)
		return log.New(f, "cryptpt: ", log.LstdFlags), abs, nil
	}
	if mf.foreground {
		return log.New(os.Stderr, "cryptpt: ", log.LstdFlags), "the standard error of \"cryptpt mount -f\"", nil
	}
	if w, err := syslog.New(syslog.LOG_DAEMON|syslog.LOG_NOTICE, "cryptpt"); err == nil {
		return log.New(w, "", 0), "syslog (journalctl -t cryptpt)", nil
	}
	if f, err := openStateLog(); err == nil {
		return log.New(f, "cryptpt: ", log.LstdFlags), f.Name(), nil
	}
	return log.New(io.Discard, "", 0), "nowhere (no syslog, and no state directory for a log file)", nil
}

func openStateLog() (*os.File, error) {
	dir := os.Getenv("XDG_STATE_HOME")
	if !filepath.IsAbs(dir) {
		home, err := config.ExpandHome("~")
		if err != nil {
			return nil, err
		}
		dir = filepath.Join(home, ".local", "state")
	}
	dir = filepath.Join(dir, "cryptpt")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return os.OpenFile(filepath.Join(dir, "daemon.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
}

// serve mounts and serves until unmounted or signalled. ready, if not nil,
// gets "ok" once the mount is live.
func serve(backing, mountpoint string, cfg *config.Config, mf mountFlags, master *[32]byte, ready *os.File) error {
	logger, logTarget, err := newLogger(mf)
	if err != nil {
		return err
	}
	k, err := crypt.NewKeys(master)
	clear(master[:])
	if err != nil {
		return err
	}
	vcfg, err := keys.Load(backing)
	if err != nil {
		return vaultError(err, backing)
	}
	// Before the mount shows: a signal that comes while the daemon sets up
	// waits here and unmounts once it is ready, instead of killing it.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	stopCapture := captureStderr()
	m, err := fs.MountVault(mountpoint, fs.Options{
		Backing:          backing,
		Keys:             k,
		FormatVersion:    contentFormat(vcfg.Version),
		Policy:           cfg.Policy,
		ReadOnly:         mf.readOnly,
		AllowOther:       mf.allowOther,
		NoPassthrough:    mf.noPassthrough,
		UntrustedStorage: mf.untrusted,
		Logger:           logger,
		Debug:            mf.debug,
		NoWriteback:      !mf.writeback,
		SharedStorage:    mf.sharedStorage,
		LogNames:         mf.logNames,
		Ptreg:            passthroughHelper(),
	})
	said := stopCapture()
	if err != nil {
		ue := mountError(err, said, backing, mountpoint)
		logger.Printf("%s", ue.msg)
		return ue
	}
	if said != "" {
		logger.Printf("while mounting: %s", said)
	}
	st := m.Status()
	logger.Printf("mounted %s on %s; passthrough: %v (%s)", backing, mountpoint, st.PassthroughActive, st.PassthroughReason)
	if lockMemory() {
		logger.Printf("memory locked: keys never reach swap")
	} else if exposed, detail := swapExposure(); exposed {
		logger.Printf("memory not locked (needs CAP_IPC_LOCK or an unlimited RLIMIT_MEMLOCK, e.g. LimitMEMLOCK=infinity in a system unit): keys may reach %s; use encrypted swap, or MemorySwapMax=0 in the unit", detail)
	} else {
		logger.Printf("memory not locked (needs CAP_IPC_LOCK or an unlimited RLIMIT_MEMLOCK), but keys cannot reach a disk in the clear: %s", detail)
	}
	pol := &policySource{file: mf.configPath, missing: cfg.File == "", m: m, logger: logger}
	if cfg.File == "" {
		logger.Printf("no config file at %s: the policy is empty, so everything new is encrypted", mf.configPath)
	}
	ctl := &control.Server{Mount: m, Log: logTarget, Config: pol.config, Reload: pol.reload, Logf: logger.Printf}
	if err := ctl.Start(mountpoint); err != nil {
		logger.Printf("status, migrate and reload will not work: %v", err)
	}
	defer ctl.Close()
	if ready != nil {
		detachStdio(2) // the starter's pipe, which it closes on "ok"
		fmt.Fprintln(ready, "ok")
		ready.Close()
	}
	go func() {
		for sig := range sigs {
			if sig == syscall.SIGHUP {
				pol.reload() // logs what it did
				continue
			}
			logger.Printf("%v: unmounting %s", sig, mountpoint)
			if err := m.Unmount(); err != nil {
				logger.Printf("unmount %s: %v; detaching it lazily", mountpoint, err)
				if err := lazyUnmount(mountpoint); err != nil {
					logger.Printf("lazy unmount of %s: %v", mountpoint, err)
				}
			}
		}
	}()
	if mf.idle > 0 {
		go unmountWhenIdle(m, mf.idle, mountpoint, logger, mf.debug)
	}
	if path := os.Getenv("CRYPTPT_CPUPROFILE"); path != "" {
		// For the performance work: a CPU profile of the daemon's whole life.
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	m.Wait()
	logger.Printf("unmounted %s", mountpoint)
	return nil
}

// contentFormat is the content format a vault writes, by its config
// version: vaults made before format 2 keep writing format 1, so that the
// cryptpt that made them can still read them.
func contentFormat(configVersion int) uint16 {
	if configVersion <= 1 {
		return crypt.FormatV1
	}
	return crypt.FormatVersion
}

// unmountWhenIdle unmounts once the mount has been idle for limit. With
// debug it logs each check (the tests read it to know that a check came).
func unmountWhenIdle(m *fs.Mount, limit time.Duration, mountpoint string, logger *log.Logger, debug bool) {
	tick := limit / 10
	if tick > time.Minute {
		tick = time.Minute
	}
	if tick < 100*time.Millisecond {
		tick = 100 * time.Millisecond
	}
	for range time.Tick(tick) {
		idle := m.Idle()
		if debug {
			logger.Printf("idle check at %s: idle %v of %v (0 while a file is open)", time.Now().Format(time.RFC3339Nano), idle, limit)
		}
		if idle >= limit {
			logger.Printf("idle for %v: unmounting %s", limit, mountpoint)
			if err := m.Unmount(); err != nil {
				logger.Printf("idle unmount of %s: %v", mountpoint, err)
				continue
			}
			return
		}
	}
}
