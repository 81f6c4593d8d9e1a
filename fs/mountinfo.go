package fs

import (
	"strings"

	"cryptpt/internal/mountinfo"
)

// FindMount returns the mountpoint of the cryptpt mount that contains path,
// or "" if path is not inside one.
func FindMount(path string) (string, error) {
	mounts, err := mountinfo.Read()
	if err != nil {
		return "", err
	}
	best := ""
	for _, m := range mounts {
		if !m.IsCryptpt() {
			continue
		}
		if path == m.Point || strings.HasPrefix(path, strings.TrimSuffix(m.Point, "/")+"/") {
			if len(m.Point) > len(best) {
				best = m.Point
			}
		}
	}
	return best, nil
}
