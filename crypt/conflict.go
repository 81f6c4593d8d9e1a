package crypt

import (
	"strings"
	"unicode/utf8"
)

// Conflict copies made by a sync tool.
//
// When two devices change one file while apart, Syncthing keeps the losing
// version under a new name, NAME.sync-conflict-YYYYMMDD-HHMMSS-DEVICE,
// with the marker inserted before NAME's extension. A stored encrypted name
// has no extension (base64url has no '.'), so the conflict copy of the
// entry "~~cXYZ" is "~~cXYZ.sync-conflict-20240102-150405-ABCDEF2", and
// that of a long name "~~lHASH" is "~~lHASH.sync-conflict-...", which
// shares the sidecar "~~nHASH" of the entry it copies. Syncthing never
// makes a conflict copy of a conflict copy (it removes the loser instead),
// so a name carries one marker.
//
// The mount shows such a copy as Syncthing would show the copy of a
// plaintext file: the decrypted name with the marker before its extension
// ([ConflictName]); [ParseConflictName] inverts that.

// conflictTag starts every conflict marker.
const conflictTag = ".sync-conflict-"

// conflictDeviceLen is the length of the device part: the first 7
// characters of the base32 device ID (Syncthing's ShortID), or none when
// the last modifier is unknown.
const conflictDeviceLen = 7

// conflictMarkerLen returns the length of the conflict marker
// ".sync-conflict-YYYYMMDD-HHMMSS-DEVICE" that starts s, or 0 when s does
// not start with one. The marker must end s or be followed by '.'.
func conflictMarkerLen(s string) int {
	if !strings.HasPrefix(s, conflictTag) {
		return 0
	}
	i := len(conflictTag)
	for _, digits := range []int{8, 6} {
		if len(s) < i+digits+1 {
			return 0
		}
		for _, c := range []byte(s[i : i+digits]) {
			if c < '0' || c > '9' {
				return 0
			}
		}
		if s[i+digits] != '-' {
			return 0
		}
		i += digits + 1
	}
	if len(s) >= i+conflictDeviceLen && isBase32(s[i:i+conflictDeviceLen]) {
		i += conflictDeviceLen
	}
	if i < len(s) && s[i] != '.' {
		return 0
	}
	return i
}

func isBase32(s string) bool {
	for _, c := range []byte(s) {
		if !(c >= 'A' && c <= 'Z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// SplitConflict splits the stored name of a conflict copy into the stored
// name of the entry it copies (Encrypted or Long) and the marker. For any
// other name it returns stored and "".
func SplitConflict(stored string) (base, marker string) {
	switch Classify(stored) {
	case Encrypted, Long:
	default:
		return stored, ""
	}
	i := strings.IndexByte(stored, '.')
	if i < 0 {
		return stored, ""
	}
	if k := Classify(stored[:i]); k != Encrypted && k != Long {
		return stored, ""
	}
	if conflictMarkerLen(stored[i:]) != len(stored)-i {
		return stored, ""
	}
	return stored[:i], stored[i:]
}

// DirIVConflictMarker returns the marker of a sync tool's conflict copy of
// a directory IV ("~~diriv.sync-conflict-..."), or "" for any other name.
// Such a copy appears when one directory was made on two devices while
// apart, each with an IV of its own: it holds the IV that the entries made
// on the losing device are named under.
func DirIVConflictMarker(stored string) string {
	m, ok := strings.CutPrefix(stored, DirIVName)
	if !ok || m == "" || conflictMarkerLen(m) != len(m) {
		return ""
	}
	return m
}

// ConflictName returns the name the mount shows for the conflict copy,
// marked with marker, of the entry named name: marker inserted before the
// extension, as Syncthing names copies of plaintext files. Where that
// would be longer than MaxNameLen, the part before the extension is cut
// (at a character boundary) so that it fits: [ParseConflictName] then
// gives the cut name, and [ConflictNameCut] says it may have been. It
// returns "" when no cut makes it fit (an extension of over 200 bytes).
func ConflictName(name, marker string) string {
	ext := ""
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		ext = name[i:]
	}
	stem := name[:len(name)-len(ext)]
	if over := len(stem) + len(marker) + len(ext) - MaxNameLen; over > 0 {
		cut := len(stem) - over
		for cut > 0 && !utf8.RuneStart(stem[cut]) {
			cut--
		}
		if cut <= 0 {
			return ""
		}
		stem = stem[:cut]
	}
	return stem + marker + ext
}

// ConflictNameCut reports whether ConflictName may have cut shown to fit.
func ConflictNameCut(shown string) bool {
	return len(shown) > MaxNameLen-utf8.UTFMax
}

// ParseConflictName inverts ConflictName: it returns the name and marker
// that ConflictName maps to shown, or ok false when shown is not such a
// name. There is at most one way: the marker either ends the name (which
// then has no other '.': the name had no extension) or is followed by the
// extension, which starts at the last '.'.
func ParseConflictName(shown string) (name, marker string, ok bool) {
	j := strings.LastIndexByte(shown, '.')
	if j < 0 || len(shown) > MaxNameLen {
		return "", "", false
	}
	if conflictMarkerLen(shown[j:]) == len(shown)-j && strings.IndexByte(shown[:j], '.') < 0 {
		name, marker = shown[:j], shown[j:]
	} else {
		k := strings.LastIndexByte(shown[:j], '.')
		if k < 0 || conflictMarkerLen(shown[k:]) != j-k {
			return "", "", false
		}
		name, marker = shown[:k]+shown[j:], shown[k:j]
	}
	if !ValidName(name) {
		return "", "", false
	}
	return name, marker, true
}
