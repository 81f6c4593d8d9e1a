package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"cryptpt/fs"

	"golang.org/x/sys/unix"
)

func runStatus(args []string) error {
	fl := newFlags("status", "status [--json] MOUNTPOINT")
	asJSON := fl.Bool("json", false, "print the status as JSON")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError(fl, "status takes one argument, the mountpoint")
	}
	mp, _ := filepath.Abs(pos[0])
	st, err := readStatus(mp)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(st)
	return nil
}

func readStatus(mp string) (*fs.Status, error) {
	if m, _ := fs.FindMount(mp); m != mp {
		return nil, fail("mount it with \"cryptpt mount BACKING "+mp+"\"", "%s is not a cryptpt mount", mp)
	}
	buf := make([]byte, 1<<20)
	n, err := unix.Getxattr(mp, fs.StatusXattr, buf)
	if errors.Is(err, unix.ENOTCONN) {
		return nil, fail("run \"cryptpt unmount "+mp+"\", then mount again; the vault itself is unharmed", "the daemon of %s is gone (killed or crashed)", mp)
	}
	if err != nil {
		return nil, fail("", "cannot ask the daemon of %s: %v", mp, err)
	}
	var st fs.Status
	if err := json.Unmarshal(buf[:n], &st); err != nil {
		return nil, fail("", "the daemon of %s sent an unreadable status: %v", mp, err)
	}
	return &st, nil
}

func printStatus(st *fs.Status) {
	fmt.Printf("mount:        %s\n", st.Mountpoint)
	fmt.Printf("vault:        %s\n", st.Backing)
	fmt.Printf("daemon pid:   %d\n", st.PID)
	if st.ReadOnly {
		fmt.Printf("read-only:    yes\n")
	}
	if st.PassthroughActive {
		fmt.Printf("passthrough:  active: plaintext files are read and written by the kernel at native speed\n")
		if strings.Contains(st.PassthroughReason, "via helper") {
			fmt.Printf("              passthrough via helper (cryptpt-ptreg); the daemon itself holds no capability\n")
		}
	} else {
		fmt.Printf("passthrough:  off: %s\n", st.PassthroughReason)
		fmt.Printf("              plaintext files are served by the daemon (no crypto, but slower).\n")
		if strings.Contains(st.PassthroughReason, "CAP_SYS_ADMIN") {
			fmt.Printf("              To get passthrough, run the daemon with CAP_SYS_ADMIN: mount as root,\n")
			fmt.Printf("              use the systemd unit in contrib/ (AmbientCapabilities=CAP_SYS_ADMIN),\n")
			fmt.Printf("              or \"sudo setcap cap_sys_admin+ep $(command -v cryptpt)\".\n")
		}
	}
	fmt.Printf("opens:        %d plaintext via passthrough, %d plaintext via daemon, %d encrypted\n",
		st.PlainOpensPassthrough, st.PlainOpensDaemon, st.EncryptedOpens)
	fmt.Printf("daemon I/O:   plaintext %s in %d reads/%d writes; encrypted %s in %d reads/%d writes\n",
		humanBytes(st.PlainBytes), st.PlainReads, st.PlainWrites, humanBytes(st.EncryptedBytes), st.EncryptedReads, st.EncryptedWrites)
	if st.AuthFailures > 0 {
		fmt.Printf("auth errors:  %d (see the daemon's log; run \"cryptpt fsck\" on the vault)\n", st.AuthFailures)
	}
	if st.HiddenEntries > 0 {
		fmt.Printf("hidden:       %d vault entries (undecryptable names or injected plaintext; see the log)\n", st.HiddenEntries)
	}
	listPaths("drift", "encrypted entries where the policy says plaintext (\"cryptpt migrate\" converts them)", st.Drift)
	listPaths("injected", "plaintext entries where the policy says encrypted (\"cryptpt migrate\" encrypts them)", st.Injected)
}

func listPaths(label, what string, paths []string) {
	if len(paths) == 0 {
		return
	}
	fmt.Printf("%-13s %d %s\n", label+":", len(paths), what)
	for i, p := range paths {
		if i == 10 {
			fmt.Printf("              ... and %d more (--json lists them)\n", len(paths)-10)
			break
		}
		fmt.Printf("              /%s\n", p)
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
