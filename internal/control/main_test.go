package control

import (
	"testing"

	"cryptpt/internal/testvault"
)

// TestMain lets the test binary serve as the view's guard, which the mixed
// vaults the tests mount start by running their own executable again.
func TestMain(m *testing.M) { testvault.Main(m) }
