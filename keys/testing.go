package keys

import "testing"

// FastKDF are the cheapest parameters the package accepts (19 MiB, 2 passes,
// 1 thread, ~20 ms). They exist for tests; they are also the floor enforced
// on every config that is read, so a tampered config cannot go lower.
var FastKDF = KDFParams{Time: MinTime, MemoryKiB: MinMemoryKiB, Threads: 1}

// NewTestVault creates a vault config in dir with password and FastKDF, and
// returns the master key and recovery key. It fails tb on error.
func NewTestVault(tb testing.TB, dir string, password string) (master [KeySize]byte, recovery string) {
	tb.Helper()
	master, recovery, err := Create(dir, []byte(password), FastKDF)
	if err != nil {
		tb.Fatalf("keys.NewTestVault: %v", err)
	}
	return master, recovery
}
