package fs_test

import (
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"

	"cryptpt/internal/testvault"
)

// policies are the trees the POSIX suite and forBothModes run against:
// all encrypted (the kernel's writeback cache), all plaintext (passthrough),
// and encrypted where another area is plaintext, which serves encrypted
// files through the view (view.go).
var policies = map[string][]string{
	"encrypted": nil,
	"plaintext": {"/**"},
	"view":      {"plain-area/"},
}

// notPosix are go-fuse cases that expect what POSIX and ext4 do not.
var notPosix = map[string]string{
	// It expects a process to conflict with its own POSIX lock through a
	// second fd (go-fuse forwards locks as OFD locks); the kernel's own
	// locks, which this mount uses, do not (tests: TestPosixLocks).
	"FcntlFlockLocksFile": "a process never conflicts with its own POSIX locks",
}

func TestPosix(t *testing.T) {
	names := make([]string, 0, len(posixtest.All))
	for name := range posixtest.All {
		names = append(names, name)
	}
	sort.Strings(names)
	for mode, plaintext := range policies {
		t.Run(mode, func(t *testing.T) {
			for _, name := range names {
				t.Run(name, func(t *testing.T) {
					if why, ok := notPosix[name]; ok {
						t.Skip(why)
					}
					tv := testvault.New(t, testvault.Options{Plaintext: plaintext})
					posixtest.All[name](t, tv.Mnt)
				})
			}
		})
	}
}
