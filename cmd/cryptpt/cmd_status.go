package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"

	"cryptpt/internal/control"
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

// readStatus asks the daemon of mp over its control socket.
func readStatus(mp string) (*control.Status, error) {
	c, err := dialDaemon(mp)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	st, err := c.Status()
	if err != nil {
		return nil, fail("", "cannot ask the daemon of %s: %v", mp, err)
	}
	return st, nil
}

func printStatus(st *control.Status) {
	fmt.Printf("mount:        %s\n", st.Mountpoint)
	fmt.Printf("vault:        %s\n", st.Backing)
	fmt.Printf("daemon pid:   %d\n", st.PID)
	fmt.Printf("daemon log:   %s\n", st.Log)
	if st.ReadOnly {
		fmt.Printf("read-only:    yes\n")
	}
	switch {
	case st.ConfigFile == "":
		fmt.Printf("policy:       none: mounted without a config file, so everything new is encrypted\n")
	case st.ConfigMissing:
		fmt.Printf("policy:       none: no config file at %s, so everything new is encrypted\n", st.ConfigFile)
	default:
		fmt.Printf("config:       %s\n", st.ConfigFile)
		fmt.Printf("policy:       %s\n", policyLine(st.Policy))
	}
	if st.PassthroughActive {
		fmt.Printf("passthrough:  active: plaintext files are read and written by the kernel at native speed\n")
		if strings.Contains(st.PassthroughReason, "via helper") {
			fmt.Printf("              passthrough via helper (cryptpt-ptreg); the daemon itself holds no capability\n")
		}
	} else {
		fmt.Printf("passthrough:  off: %s\n", st.PassthroughReason)
		fmt.Printf("              plaintext files are served by the daemon (no crypto, but slower).\n")
		if strings.Contains(st.PassthroughReason, "CAP_SYS_ADMIN") || strings.Contains(st.PassthroughReason, "passthrough helper") {
			printPassthroughAdvice(st.PassthroughReason)
		}
	}
	switch {
	case st.EncryptedView:
		fmt.Printf("write cache:  encrypted files through the view: the kernel merges their writes in a\n")
		fmt.Printf("              page cache of its own while plaintext files use passthrough\n")
	case st.WritebackCache:
		fmt.Printf("write cache:  on: the kernel merges small writes before the daemon encrypts them\n")
	default:
		fmt.Printf("write cache:  off: every write to an encrypted file is one request to the daemon\n")
	}
	fmt.Printf("opens:        %d plaintext via passthrough, %d plaintext via daemon, %d encrypted\n",
		st.PlainOpensPassthrough, st.PlainOpensDaemon, st.EncryptedOpens)
	fmt.Printf("daemon I/O:   plaintext %s in %d reads/%d writes; encrypted %s in %d reads/%d writes\n",
		humanBytes(st.PlainBytes), st.PlainReads, st.PlainWrites, humanBytes(st.EncryptedBytes), st.EncryptedReads, st.EncryptedWrites)
	if st.AuthFailures > 0 {
		fmt.Printf("auth errors:  %d (see the daemon's log, %s; run \"cryptpt fsck\" on the vault)\n", st.AuthFailures, st.Log)
	}
	if st.HiddenEntries > 0 {
		fmt.Printf("hidden:       %d vault entries (undecryptable names or injected plaintext; see the log, %s)\n", st.HiddenEntries, st.Log)
	}
	listPaths("drift", "encrypted entries where the policy says plaintext (\"cryptpt migrate\" converts them)", st.Drift)
	listPaths("injected", "plaintext entries where the policy says encrypted (\"cryptpt migrate\" encrypts them)", st.Injected)
}

// printPassthroughAdvice says how a daemon without CAP_SYS_ADMIN gets
// passthrough, the narrowest way first: the helper cryptpt-ptreg, which
// holds the capability so that the daemon needs none; then ways that give
// the daemon the whole capability. reason is the daemon's.
func printPassthroughAdvice(reason string) {
	fmt.Printf("              To get passthrough with a daemon that holds no capability, use the helper\n")
	fmt.Printf("              cryptpt-ptreg (it registers plaintext files for the daemon, nothing else):\n")
	helper := ""
	if rest, ok := strings.CutPrefix(reason, "the passthrough helper "); ok {
		helper, _, _ = strings.Cut(rest, " failed:")
	}
	switch {
	case helper != "" && !hasSysAdminCap(helper):
		fmt.Printf("              - the daemon ran %s, which lacks its capability:\n", helper)
		fmt.Printf("                \"sudo setcap cap_sys_admin+ep %s\", then mount again;\n", helper)
	case helper != "":
		fmt.Printf("              - the daemon ran %s, which has its capability but failed (see the\n", helper)
		fmt.Printf("                daemon's log): a daemon started with no_new_privs (systemd's\n")
		fmt.Printf("                NoNewPrivileges=) or a helper on a nosuid filesystem gets no file capability;\n")
	default:
		found, elsewhere := findHelper(), false
		if found == "" && exists(installedHelper) {
			found, elsewhere = installedHelper, true
		}
		switch {
		case found == "":
			fmt.Printf("              - \"sudo make install\" (from the source) installs it as\n")
			fmt.Printf("                %s with its capability;\n", installedHelper)
		case !hasSysAdminCap(found):
			fmt.Printf("              - %s lacks its capability:\n", found)
			fmt.Printf("                \"sudo setcap cap_sys_admin+ep %s\";\n", found)
		default:
			fmt.Printf("              - it is installed: %s;\n", found)
		}
		if elsewhere {
			fmt.Printf("                this cryptpt does not look there: set CRYPTPT_PTREG=%s;\n", found)
		}
		fmt.Printf("                then mount again;\n")
	}
	name := "$USER"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	fmt.Printf("              Or give the daemon itself CAP_SYS_ADMIN (more than passthrough needs):\n")
	fmt.Printf("              - the system unit cryptpt@USER.service runs it as you with only that\n")
	fmt.Printf("                capability: \"sudo systemctl enable --now cryptpt@%s.service\";\n", name)
	fmt.Printf("              - or mount as root;\n")
	fmt.Printf("              - or \"sudo setcap cap_sys_admin+ep $(command -v cryptpt)\", which gives\n")
	fmt.Printf("                CAP_SYS_ADMIN to every user who can run that binary: avoid it on a\n")
	fmt.Printf("                machine with other users.\n")
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
