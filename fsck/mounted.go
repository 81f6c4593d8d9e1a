package fsck

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
)

// mountType is the mount table type of a cryptpt mount.
const mountType = "fuse.cryptpt"

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
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - fuse.cryptpt /vault rw
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+2 >= len(fields) || fields[sep+1] != mountType {
			continue
		}
		src := unescape(fields[sep+2])
		if want[src] || want[filepath.Clean(src)] {
			out = append(out, unescape(fields[4]))
		}
	}
	return out, sc.Err()
}

// unescape undoes the kernel's octal escapes in mountinfo (\040 is a space).
func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
