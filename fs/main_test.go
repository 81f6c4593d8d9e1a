package fs_test

import (
	"testing"

	"cryptpt/internal/testvault"
)

// TestMain lets the test binary serve as the view's guard (viewguard.go),
// which the mounts it makes start by running their own executable again.
func TestMain(m *testing.M) { testvault.Main(m) }
