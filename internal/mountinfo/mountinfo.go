// Package mountinfo reads the kernel's table of mounts, /proc/self/mountinfo.
// It only reads; it never mounts or unmounts anything.
package mountinfo

import (
	"bufio"
	"os"
	"strings"
)

// How a cryptpt mount shows in the table: FUSE mounts it as type "fuse."
// plus the name the daemon gives (the subtype).
const (
	Name = "cryptpt"      // the subtype a cryptpt daemon mounts with
	Type = "fuse." + Name // its type in the mount table
)

// Entry is one mount.
type Entry struct {
	Point  string // where it is mounted
	FSType string // e.g. "ext4", "fuse.cryptpt"
	Source string // e.g. "/dev/sda1", or a cryptpt vault's path
	Super  string // superblock options, e.g. "rw,user_id=1000,group_id=1000"
}

// IsCryptpt reports whether e is a cryptpt mount (not the view, which is in
// no mount table).
func (e Entry) IsCryptpt() bool { return e.FSType == Type }

// Read parses /proc/self/mountinfo.
func Read() ([]Entry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+2 >= len(fields) {
			continue
		}
		out = append(out, Entry{
			Point:  unescape(fields[4]),
			FSType: fields[sep+1],
			Source: unescape(fields[sep+2]),
			Super:  superOptions(fields, sep),
		})
	}
	return out, sc.Err()
}

func superOptions(fields []string, sep int) string {
	if sep+3 < len(fields) {
		return fields[sep+3]
	}
	return ""
}

// Option returns the value of the superblock option key ("user_id" in
// "rw,user_id=1000") and whether it is there.
func (e Entry) Option(key string) (string, bool) {
	for _, o := range strings.Split(e.Super, ",") {
		if k, v, _ := strings.Cut(o, "="); k == key {
			return v, true
		}
	}
	return "", false
}

// unescape undoes the kernel's octal escapes (\040 is a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
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
