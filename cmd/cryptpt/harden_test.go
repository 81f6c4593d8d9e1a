package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeSys builds a tree with proc/swaps, proc/self/cgroup and the sysfs
// files swapProbe reads; files maps paths to contents.
func fakeSys(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const swapsHeader = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"

// devices of the fake swap areas.
var fakeDevs = map[string]uint64{
	"/dev/dm-1":        unix.Mkdev(253, 1), // dm-crypt
	"/dev/zram0":       unix.Mkdev(252, 0), // zram
	"/dev/sda2":        unix.Mkdev(8, 2),   // a plain partition
	"/dev/dm-3":        unix.Mkdev(253, 3), // LVM on dm-crypt
	"/var/swap file":   unix.Mkdev(8, 2),   // a file on the plain partition
	"/crypt/swap.file": unix.Mkdev(253, 1), // a file on dm-crypt
}

var fakeBlock = map[string]string{
	"sys/dev/block/253:1/uevent":               "MAJOR=253\nMINOR=1\nDEVNAME=dm-1\n",
	"sys/dev/block/253:1/dm/uuid":              "CRYPT-LUKS2-0123-swap\n",
	"sys/dev/block/252:0/uevent":               "MAJOR=252\nMINOR=0\nDEVNAME=zram0\n",
	"sys/dev/block/8:2/uevent":                 "MAJOR=8\nMINOR=2\nDEVNAME=sda2\nDEVTYPE=partition\n",
	"sys/dev/block/253:3/uevent":               "DEVNAME=dm-3\n",
	"sys/dev/block/253:3/dm/uuid":              "LVM-abc\n",
	"sys/dev/block/253:3/slaves/dm-0/uevent":   "DEVNAME=dm-0\n",
	"sys/dev/block/253:3/slaves/dm-0/dm/uuid":  "CRYPT-LUKS2-4567-root\n",
	"proc/self/cgroup":                         "0::/user.slice/user-1000.slice/user@1000.service/app.slice/cryptpt.service\n",
	"sys/fs/cgroup/user.slice/memory.swap.max": "max\n",
}

func TestSwapExposure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		swaps   string
		extra   map[string]string
		exposed bool
		detail  string
	}{
		{"no swap", "", nil, false, "no swap is active"},
		{"dm-crypt and zram", "/dev/dm-1 partition 1003516 0 -2\n/dev/zram0 partition 4000 0 100\n", nil, false, "swap is encrypted or in RAM: /dev/dm-1, /dev/zram0"},
		{"LVM on dm-crypt, file on dm-crypt", "/dev/dm-3 partition 1 0 -2\n/crypt/swap.file file 1 0 -3\n", nil, false, "swap is encrypted or in RAM: /dev/dm-3, /crypt/swap.file"},
		{"plain partition", "/dev/sda2 partition 1 0 -2\n/dev/dm-1 partition 1 0 -3\n", nil, true, "unencrypted swap /dev/sda2"},
		{"file with a space on a plain partition", `/var/swap\040file file 1 0 -2` + "\n", nil, true, "unencrypted swap /var/swap file"},
		{"unknown device", "/dev/nope partition 1 0 -2\n", nil, true, "unencrypted swap /dev/nope"},
		{"cgroup may not swap", "/dev/sda2 partition 1 0 -2\n",
			map[string]string{"sys/fs/cgroup/user.slice/user-1000.slice/memory.swap.max": "0\n"}, false, "this process's cgroup may not swap (memory.swap.max 0)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			files := map[string]string{"proc/swaps": swapsHeader + tt.swaps}
			for k, v := range fakeBlock {
				files[k] = v
			}
			for k, v := range tt.extra {
				files[k] = v
			}
			p := swapProbe{root: fakeSys(t, files), devOf: func(path string) (uint64, error) {
				if d, ok := fakeDevs[path]; ok {
					return d, nil
				}
				return 0, errors.New("no such device")
			}}
			exposed, detail := p.exposure()
			if exposed != tt.exposed || detail != tt.detail {
				t.Errorf("exposure() = %v, %q; want %v, %q", exposed, detail, tt.exposed, tt.detail)
			}
		})
	}
}

func TestUnescapeOctal(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{`/a\040b`: "/a b", `/x\`: `/x\`, `/y\04`: `/y\04`, `/z\0401`: "/z 1", `\777`: `\777`, "/plain": "/plain"} {
		if got := unescapeOctal(in); got != want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, want)
		}
	}
}
