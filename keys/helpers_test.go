package keys

import "testing"

// newTestVault creates a vault config in dir with password and MinKDF, and
// returns the master key and recovery key. It fails tb on error.
func newTestVault(tb testing.TB, dir string, password string) (master [KeySize]byte, recovery string) {
	tb.Helper()
	master, recovery, err := Create(dir, []byte(password), MinKDF)
	if err != nil {
		tb.Fatalf("newTestVault: %v", err)
	}
	return master, recovery
}
