package fsck

import (
	"path/filepath"

	"cryptpt/internal/mountinfo"
)

// MountedAt returns the mountpoints of the cryptpt mounts of the vault at
// backing, as /proc/self/mountinfo lists them (their source is the vault's
// absolute path).
func MountedAt(backing string) ([]string, error) {
	want := map[string]bool{}
	if abs, err := filepath.Abs(backing); err == nil {
		want[abs] = true
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			want[real] = true
		}
	}
	mounts, err := mountinfo.Read()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range mounts {
		if m.IsCryptpt() && (want[m.Source] || want[filepath.Clean(m.Source)]) {
			out = append(out, m.Point)
		}
	}
	return out, nil
}
