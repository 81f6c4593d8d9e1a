package main

import (
	"math"
	"testing"
)

// TestPasswordBits: the strength estimate calls the obvious weak and
// random-looking passwords strong, with exact values for a few.
func TestPasswordBits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pw   string
		weak bool
		bits float64 // checked when not 0
	}{
		{"abc", true, 6},    // a common stem
		{"first", true, 17}, // a word
		{"First", true, 18}, // a capitalised word
		{"first42", true, 17 + 2*math.Log2(10)},
		{"password1", true, 6 + math.Log2(10)},
		{"P4ssw0rd!", true, 0},
		{"Tr0ub4dor&3", true, 0},
		{"aaaaaaaaaaaaaaaaaaaa", true, 0},
		{"qwertyuiop", true, 0},
		{"987654321", true, 0},
		{"zq", true, 2 * math.Log2(26)},
		{"correct horse battery staple", false, 28 * math.Log2(26+33)},
		{"x9$Lq2#vB7!mT4", false, 0},
		{"kq8w3zpf0xj2nm5v", false, 16 * math.Log2(36)},
		{"strngthsxyzw", false, 12 * math.Log2(26)}, // random-looking letters: brute force only
	}
	for _, tt := range tests {
		got := passwordBits([]byte(tt.pw))
		if (got < weakBits) != tt.weak {
			t.Errorf("%q: %.1f bits, weak = %v, want %v", tt.pw, got, got < weakBits, tt.weak)
		}
		if tt.bits != 0 && math.Abs(got-tt.bits) > 1e-9 {
			t.Errorf("%q: %.3f bits, want %.3f", tt.pw, got, tt.bits)
		}
	}
}

func TestHumanDuration(t *testing.T) {
	t.Parallel()
	for sec, want := range map[float64]string{
		0.2:            "under a second",
		51.2:           "51 seconds",
		3.9 * 3600:     "3.9 hours",
		120 * 31557600: "120 years",
		1e20:           "over a million years",
	} {
		if got := humanDuration(sec); got != want {
			t.Errorf("humanDuration(%g) = %q, want %q", sec, got, want)
		}
	}
}
