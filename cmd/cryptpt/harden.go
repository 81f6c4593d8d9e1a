package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// harden keeps secrets out of core dumps and away from debuggers of the
// same user: a process that is not dumpable writes no core file, and only
// root may ptrace it or read its /proc files. Every command holds a
// password or a key at some point, so main calls it first.
func harden() {
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
}

// lockMemory keeps the daemon's memory, and with it the derived keys and
// the AES key schedules that live in the Go heap, out of swap. It locks
// only where that cannot later fail an allocation: with CAP_IPC_LOCK, or
// no limit on locked memory. MCL_ONFAULT locks pages as they are used, not
// the address space the Go runtime reserves. It reports whether it locked.
//
// An ordinary user's limit (RLIMIT_MEMLOCK, 8 MiB by default) cannot be
// used for less: mlockall counts the whole mapped address space against it
// (a Go process maps hundreds of MiB), so does every later mapping with
// MCL_FUTURE, and the key schedules that matter sit inside crypto/aes
// objects on the Go heap, whose pages the daemon cannot name to mlock
// them one by one. Locking only the raw key bytes would leave their
// expanded schedules, from which the keys follow, in unlocked pages. So
// the daemon locks all or nothing, and says what swap could get instead
// (swapExposure).
func lockMemory() bool {
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim) != nil {
		return false
	}
	if lim.Cur != unix.RLIM_INFINITY && !hasCap(unix.CAP_IPC_LOCK) {
		return false
	}
	return unix.Mlockall(unix.MCL_CURRENT|unix.MCL_FUTURE|unix.MCL_ONFAULT) == nil
}

// hasCap reports whether capability c is in the effective set.
func hasCap(c int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if unix.Capget(&hdr, &data[0]) != nil {
		return false
	}
	return data[c/32].Effective&(1<<(uint(c)%32)) != 0
}

// swapProbe looks at where this process's unlocked pages could go.
type swapProbe struct {
	root  string                            // "/", or a test tree with proc/ and sys/
	devOf func(path string) (uint64, error) // the block device a swap area is stored on
}

// swapDevOf returns the device of a swap partition, or the device of the
// filesystem holding a swap file.
func swapDevOf(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFBLK {
		return st.Rdev, nil
	}
	return st.Dev, nil
}

// swapExposure reports whether this process's pages could be written to a
// disk in the clear, and what it found: "unencrypted swap /dev/sda2", or
// why not ("no swap is active", "this process's cgroup may not swap",
// "swap is encrypted or in RAM: /dev/dm-1").
func swapExposure() (exposed bool, detail string) {
	return swapProbe{root: "/", devOf: swapDevOf}.exposure()
}

func (p swapProbe) exposure() (bool, string) {
	if p.cgroupNoSwap() {
		return false, "this process's cgroup may not swap (memory.swap.max 0)"
	}
	data, err := os.ReadFile(filepath.Join(p.root, "proc/swaps"))
	if err != nil {
		return true, "cannot read /proc/swaps: " + err.Error()
	}
	var safe, unsafe []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		name := unescapeOctal(f[0])
		if dev, err := p.devOf(name); err == nil && p.safeDevice(filepath.Join(p.root, "sys/dev/block", fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev))), 0) {
			safe = append(safe, name)
		} else {
			unsafe = append(unsafe, name)
		}
	}
	switch {
	case len(unsafe) > 0:
		return true, "unencrypted swap " + strings.Join(unsafe, ", ")
	case len(safe) > 0:
		return false, "swap is encrypted or in RAM: " + strings.Join(safe, ", ")
	}
	return false, "no swap is active"
}

// safeDevice reports whether the block device whose sysfs directory is dir
// keeps what is written to it off a disk in the clear: zram (RAM), a
// dm-crypt mapping, or a device stacked on one (LVM on LUKS).
func (p swapProbe) safeDevice(dir string, depth int) bool {
	if depth > 8 {
		return false
	}
	uevent, _ := os.ReadFile(filepath.Join(dir, "uevent"))
	for _, l := range strings.Split(string(uevent), "\n") {
		if strings.HasPrefix(l, "DEVNAME=zram") {
			return true
		}
	}
	if uuid, err := os.ReadFile(filepath.Join(dir, "dm", "uuid")); err == nil && strings.HasPrefix(string(uuid), "CRYPT-") {
		return true
	}
	slaves, _ := os.ReadDir(filepath.Join(dir, "slaves"))
	for _, s := range slaves {
		if p.safeDevice(filepath.Join(dir, "slaves", s.Name()), depth+1) {
			return true
		}
	}
	return false
}

// cgroupNoSwap reports whether this process's cgroup (v2), or one above
// it, has memory.swap.max 0.
func (p swapProbe) cgroupNoSwap() bool {
	data, err := os.ReadFile(filepath.Join(p.root, "proc/self/cgroup"))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(data), "\n") {
		path, ok := strings.CutPrefix(l, "0::")
		if !ok {
			continue
		}
		for d := filepath.Clean("/" + path); ; d = filepath.Dir(d) {
			v, err := os.ReadFile(filepath.Join(p.root, "sys/fs/cgroup", d, "memory.swap.max"))
			if err == nil && strings.TrimSpace(string(v)) == "0" {
				return true
			}
			if d == "/" {
				break
			}
		}
	}
	return false
}

// unescapeOctal undoes the \ooo escapes of /proc/swaps names (a space is \040).
func unescapeOctal(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
