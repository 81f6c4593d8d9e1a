package main

import (
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
