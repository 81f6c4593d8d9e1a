package crypt

import (
	"strings"
	"testing"
	"unicode/utf8"
)

const testMarker = ".sync-conflict-20240102-150405-ABCDEF2"

func TestSplitConflict(t *testing.T) {
	t.Parallel()
	long := LongPrefix + strings.Repeat("A", 43)
	tests := []struct {
		stored, base, marker string
	}{
		{"~~cXYZ" + testMarker, "~~cXYZ", testMarker},
		{long + testMarker, long, testMarker},
		{"~~cXYZ.sync-conflict-20240102-150405-", "~~cXYZ", ".sync-conflict-20240102-150405-"},
		// Not conflict copies: left whole.
		{"~~cXYZ", "~~cXYZ", ""},
		{"~~cXYZ.sync-conflict-20240102", "~~cXYZ.sync-conflict-20240102", ""},
		{"~~cXYZ.sync-conflict-2024010x-150405-ABCDEF2", "~~cXYZ.sync-conflict-2024010x-150405-ABCDEF2", ""},
		{"~~cXYZ" + testMarker + "x", "~~cXYZ" + testMarker + "x", ""},
		{"~~cXYZ" + testMarker + testMarker, "~~cXYZ" + testMarker + testMarker, ""},
		{"~~cXYZ.sync-conflict-20240102-150405-abcdef2", "~~cXYZ.sync-conflict-20240102-150405-abcdef2", ""},
		{"~~c" + testMarker, "~~c" + testMarker, ""},
		{"~~nAAAA" + testMarker, "~~nAAAA" + testMarker, ""},
		{"~~diriv" + testMarker, "~~diriv" + testMarker, ""},
		{"a" + testMarker, "a" + testMarker, ""},
	}
	for _, tt := range tests {
		t.Run(tt.stored, func(t *testing.T) {
			base, marker := SplitConflict(tt.stored)
			if base != tt.base || marker != tt.marker {
				t.Errorf("SplitConflict(%q) = %q, %q; want %q, %q", tt.stored, base, marker, tt.base, tt.marker)
			}
		})
	}
	for stored, want := range map[string]string{
		DirIVName + testMarker: testMarker, DirIVName: "", DirIVName + ".sync-conflict-2024": "", "~~cXYZ" + testMarker: "",
	} {
		if got := DirIVConflictMarker(stored); got != want {
			t.Errorf("DirIVConflictMarker(%q) = %q, want %q", stored, got, want)
		}
	}
	if SidecarName(long+testMarker) != "" {
		t.Errorf("a conflict copy got a sidecar name of its own: %q", SidecarName(long+testMarker))
	}
}

func TestConflictName(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, shown string }{
		{"report.pdf", "report" + testMarker + ".pdf"},
		{"archive.tar.gz", "archive.tar" + testMarker + ".gz"},
		{"Makefile", "Makefile" + testMarker},
		{".bashrc", testMarker + ".bashrc"},
		{"a.", "a" + testMarker + "."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ConflictName(tt.name, testMarker); got != tt.shown {
				t.Errorf("ConflictName(%q) = %q, want %q", tt.name, got, tt.shown)
			}
			name, marker, ok := ParseConflictName(tt.shown)
			if !ok || name != tt.name || marker != testMarker {
				t.Errorf("ParseConflictName(%q) = %q, %q, %v", tt.shown, name, marker, ok)
			}
		})
	}
	// A name that carries a marker of its own is read by where the
	// extension starts.
	other := ".sync-conflict-20230101-000000-BBBBBBB"
	for _, tt := range []struct{ shown, name, marker string }{
		{"x" + testMarker + other + ".txt", "x" + testMarker + ".txt", other},
		{"x" + testMarker + other, "x" + other, testMarker},
	} {
		if name, marker, ok := ParseConflictName(tt.shown); !ok || name != tt.name || marker != tt.marker {
			t.Errorf("ParseConflictName(%q) = %q, %q, %v; want %q, %q", tt.shown, name, marker, ok, tt.name, tt.marker)
		}
	}
	// Too long to show whole: the part before the extension is cut.
	for _, tt := range []struct{ name, cut string }{
		{strings.Repeat("x", 230) + ".txt", strings.Repeat("x", 213) + ".txt"},
		{strings.Repeat("é", 115) + ".txt", strings.Repeat("é", 106) + ".txt"},
		{strings.Repeat("y", 300), strings.Repeat("y", 217)},
	} {
		shown := ConflictName(tt.name, testMarker)
		name, marker, ok := ParseConflictName(shown)
		if len(shown) > MaxNameLen || !utf8.ValidString(shown) || !ok || name != tt.cut || marker != testMarker || !ConflictNameCut(shown) {
			t.Errorf("ConflictName(%d bytes) = %q (%d bytes), parsed %q, %v", len(tt.name), shown, len(shown), name, ok)
		}
	}
	if got := ConflictName("a."+strings.Repeat("e", 220), testMarker); got != "" {
		t.Errorf("ConflictName with a 221-byte extension = %q, want \"\"", got)
	}
	if ConflictNameCut("report" + testMarker + ".pdf") {
		t.Error("ConflictNameCut of a short name")
	}
	for _, none := range []string{"report.pdf", "x.sync-conflict-", "x.sync-conflict-20240102-150405-ABCDEF2x.txt",
		"a.b" + testMarker, testMarker, "x" + testMarker + ".d/e"} {
		if name, marker, ok := ParseConflictName(none); ok {
			t.Errorf("ParseConflictName(%q) = %q, %q; want none", none, name, marker)
		}
	}
}

func FuzzConflictName(f *testing.F) {
	f.Add("~~cXYZ" + testMarker)
	f.Add("report" + testMarker + ".pdf")
	f.Add("x" + testMarker + testMarker)
	f.Add(".sync-conflict-00000000-000000-.")
	f.Fuzz(func(t *testing.T, s string) {
		if c := ConflictName(s, testMarker); len(c) > MaxNameLen || (utf8.ValidString(s) && !utf8.ValidString(c)) {
			t.Fatalf("ConflictName(%q) = %q", s, c)
		}
		base, marker := SplitConflict(s)
		if marker == "" && base != s {
			t.Fatalf("SplitConflict(%q) changed a name that is no conflict copy", s)
		}
		if marker != "" {
			if base+marker != s || conflictMarkerLen(marker) != len(marker) {
				t.Fatalf("SplitConflict(%q) = %q, %q", s, base, marker)
			}
			if k := Classify(base); k != Encrypted && k != Long {
				t.Fatalf("SplitConflict(%q): base of kind %v", s, k)
			}
		}
		if name, marker, ok := ParseConflictName(s); ok {
			if !ValidName(name) || ConflictName(name, marker) != s || conflictMarkerLen(marker) != len(marker) {
				t.Fatalf("ParseConflictName(%q) = %q, %q", s, name, marker)
			}
		}
	})
}
