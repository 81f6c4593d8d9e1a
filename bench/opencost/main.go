// Command opencost measures what an open of a plaintext file costs on a
// cryptpt mount, in the four ways a daemon can serve it, in one run:
//
//	root, passthrough      the daemon holds CAP_SYS_ADMIN and registers the backing file itself
//	user + helper          the daemon runs as a user with no capability; cryptpt-ptreg registers it
//	user, daemon serves    the same daemon with --no-passthrough: every read goes through it
//	root, daemon serves    the root daemon with --no-passthrough
//
// Each is timed on two loads: open + 1-byte read + close (the cost of the
// open itself, where the helper's two round trips show), and open + read of
// 1 MiB + close (a file worth passthrough). The configurations take turns
// in every round, the order rotated, so that noise on a shared machine hits
// them alike; it prints the median time per open (min-max over the rounds)
// and the ratio to "root, passthrough".
//
// Run it as root from the top of the source tree, after make build:
//
//	go run ./bench/opencost                 # 5 rounds of 2000 small and 250 large opens
//	go run ./bench/opencost -rounds 9 -n 5000
//
// The "user" daemons run as nobody, mounting through fusermount3, so
// /dev/fuse is made 0666 for the run (as desktop systems ship it) and put
// back. Everything lives in a temporary directory under /var/tmp, removed at
// the end.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const nobody = 65534

type config struct {
	name  string
	user  bool // runs as nobody
	extra []string
	dir   string
	mnt   string
}

// load is one workload: opens of file, each reading size bytes.
type load struct {
	name string
	file string
	size int
	n    int
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-measure" {
		os.Exit(measure(os.Args[2:]))
	}
	cryptpt := flag.String("cryptpt", "bin/cryptpt", "the cryptpt binary")
	helper := flag.String("helper", "bin/cryptpt-ptreg", "the passthrough helper (copied and given its capability)")
	n := flag.Int("n", 2000, "opens per round of the 1-byte load (the 1 MiB load does n/8)")
	rounds := flag.Int("rounds", 5, "rounds; the report shows the median (min-max)")
	flag.Parse()
	if err := run(*cryptpt, *helper, *n, *rounds); err != nil {
		fmt.Fprintf(os.Stderr, "opencost: %v\n", err)
		os.Exit(1)
	}
}

func run(cryptpt, helper string, n, rounds int) error {
	if os.Geteuid() != 0 {
		return errors.New("run it as root (it mounts as root and as nobody)")
	}
	for _, p := range []*string{&cryptpt, &helper} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("%v (run make build first)", err)
		}
		*p = abs
	}
	work, err := os.MkdirTemp("/var/tmp", "cryptpt-opencost-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if err := os.Chmod(work, 0o755); err != nil {
		return err
	}
	// The measuring child is this program, run as nobody for the user mounts.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	me := filepath.Join(work, "opencost")
	if err := copyFile(self, me, 0o755); err != nil {
		return err
	}
	ptreg := filepath.Join(work, "cryptpt-ptreg")
	if err := copyFile(helper, ptreg, 0o755); err != nil {
		return err
	}
	if out, err := exec.Command("setcap", "cap_sys_admin+ep", ptreg).CombinedOutput(); err != nil {
		return fmt.Errorf("setcap: %v: %s", err, out)
	}
	if st, err := os.Stat("/dev/fuse"); err == nil && st.Mode().Perm()&0o006 != 0o006 {
		if err := os.Chmod("/dev/fuse", 0o666); err != nil {
			return err
		}
		defer os.Chmod("/dev/fuse", st.Mode().Perm())
	}

	configs := []*config{
		{name: "root, passthrough"},
		{name: "user + helper", user: true},
		{name: "user, daemon serves", user: true, extra: []string{"--no-passthrough"}},
		{name: "root, daemon serves", extra: []string{"--no-passthrough"}},
	}
	defer func() {
		for _, c := range configs {
			if c.mnt != "" {
				as(c.user, nil, cryptpt, "unmount", c.mnt)
			}
		}
	}()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		for _, c := range configs {
			if c.mnt != "" {
				as(c.user, nil, cryptpt, "unmount", c.mnt)
			}
		}
		os.RemoveAll(work)
		os.Exit(1)
	}()

	small := make([]byte, 4096)
	large := bytes.Repeat([]byte("plaintext video frame\n"), (1<<20)/22+1)[:1<<20]
	loads := []load{{"open+1B+close", "small", 1, n}, {"open+1MiB+close", "large", 1 << 20, max(n/8, 1)}}
	for i, c := range configs {
		c.dir = filepath.Join(work, strconv.Itoa(i))
		if err := setUp(c, cryptpt, ptreg, map[string][]byte{"small": small, "large": large}); err != nil {
			return fmt.Errorf("%s: %v", c.name, err)
		}
	}
	for _, c := range configs {
		st, err := status(c, cryptpt)
		if err != nil {
			return fmt.Errorf("%s: %v", c.name, err)
		}
		fmt.Printf("%-22s passthrough %-5v %s\n", c.name+":", st.Active, st.Reason)
	}

	// times[config][load] holds one time per open per round.
	times := make([][][]time.Duration, len(configs))
	for i := range times {
		times[i] = make([][]time.Duration, len(loads))
	}
	for r := 0; r < rounds; r++ {
		for k := range configs {
			i := (k + r) % len(configs)
			c := configs[i]
			for j, l := range loads {
				d, err := timeOpens(c, me, l)
				if err != nil {
					return fmt.Errorf("%s, %s: %v", c.name, l.name, err)
				}
				times[i][j] = append(times[i][j], d)
			}
		}
	}

	fmt.Printf("\ntime per open of a plaintext file, median (min-max) of %d rounds of %d and %d opens; ratio to %q\n\n",
		rounds, loads[0].n, loads[1].n, configs[0].name)
	fmt.Printf("%-22s", "")
	for _, l := range loads {
		fmt.Printf("  %-32s", l.name)
	}
	fmt.Println()
	for i, c := range configs {
		fmt.Printf("%-22s", c.name)
		for j := range loads {
			med := median(times[i][j])
			base := median(times[0][j])
			cell := fmt.Sprintf("%s (%s-%s) %.2fx", us(med), us(slices.Min(times[i][j])), us(slices.Max(times[i][j])), float64(med)/float64(base))
			fmt.Printf("  %-32s", cell)
		}
		fmt.Println()
	}
	fmt.Printf("\nthe helper adds %s per open (median of user + helper minus root, passthrough, 1-byte load)\n",
		us(median(times[1][0])-median(times[0][0])))
	return nil
}

// setUp makes the vault of c (plaintext = ["/**"]), mounts it and writes
// files through the mount, all as the user c runs as.
func setUp(c *config, cryptpt, ptreg string, files map[string][]byte) error {
	c.mnt = ""
	vault, mnt := filepath.Join(c.dir, "vault"), filepath.Join(c.dir, "mnt")
	pw, cfg, logf := filepath.Join(c.dir, "pw"), filepath.Join(c.dir, "config.toml"), filepath.Join(c.dir, "daemon.log")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(pw, []byte("opencost\n"), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(cfg, []byte("[policy]\nplaintext = [\"/**\"]\n"), 0o600); err != nil {
		return err
	}
	if c.user {
		for _, p := range []string{c.dir, mnt, pw, cfg} {
			if err := os.Chown(p, nobody, nobody); err != nil {
				return err
			}
		}
	}
	if out, err := as(c.user, nil, cryptpt, "init", "--passfile", pw, "--kdf-time", "2", "--kdf-memory", "19456", vault); err != nil {
		return fmt.Errorf("init: %v: %s", err, out)
	}
	var env []string
	if c.user && len(c.extra) == 0 {
		env = []string{"CRYPTPT_PTREG=" + ptreg}
	}
	args := append([]string{"mount", "--config", cfg, "--passfile", pw, "--log", logf}, c.extra...)
	if out, err := as(c.user, env, cryptpt, append(args, vault, mnt)...); err != nil {
		return fmt.Errorf("mount: %v: %s", err, out)
	}
	c.mnt = mnt
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(c.dir, name), data, 0o644); err != nil {
			return err
		}
		if out, err := as(c.user, nil, "cp", filepath.Join(c.dir, name), filepath.Join(mnt, name)); err != nil {
			return fmt.Errorf("cp: %v: %s", err, out)
		}
	}
	return nil
}

type ptStatus struct {
	Active bool   `json:"passthrough_active"`
	Reason string `json:"passthrough_reason"`
}

func status(c *config, cryptpt string) (*ptStatus, error) {
	out, err := as(c.user, nil, cryptpt, "status", "--json", c.mnt)
	if err != nil {
		return nil, fmt.Errorf("status: %v: %s", err, out)
	}
	var st ptStatus
	return &st, json.Unmarshal(out, &st)
}

// timeOpens runs the measuring child as c's user and returns its time per
// open.
func timeOpens(c *config, me string, l load) (time.Duration, error) {
	out, err := as(c.user, nil, me, "-measure", filepath.Join(c.mnt, l.file), strconv.Itoa(l.size), strconv.Itoa(l.n))
	if err != nil {
		return 0, fmt.Errorf("%v: %s", err, out)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	return time.Duration(ns), err
}

// measure is the child: open, read size bytes, close, n times after a
// warm-up; it prints the nanoseconds per open.
func measure(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: opencost -measure FILE SIZE N")
		return 2
	}
	size, _ := strconv.Atoi(args[1])
	n, _ := strconv.Atoi(args[2])
	buf := make([]byte, size)
	once := func() error {
		fd, err := syscall.Open(args[0], syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		for off := 0; off < size; {
			m, err := syscall.Pread(fd, buf[off:], int64(off))
			if err != nil || m == 0 {
				syscall.Close(fd)
				return fmt.Errorf("read at %d: %v", off, err)
			}
			off += m
		}
		return syscall.Close(fd)
	}
	for i := 0; i < min(n/10+1, 100); i++ {
		if err := once(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := once(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	fmt.Println(int64(time.Since(start)) / int64(n))
	return 0
}

// as runs a program as root, or as nobody without groups or capabilities.
func as(user bool, env []string, prog string, args ...string) ([]byte, error) {
	cmd := exec.Command(prog, args...)
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), env...)
	if user {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
		cmd.Env = append(cmd.Env, "HOME=/nonexistent")
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

func copyFile(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, mode)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func us(d time.Duration) string {
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}
