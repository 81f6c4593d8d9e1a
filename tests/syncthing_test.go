package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"cryptpt/crypt"
	cfs "cryptpt/fs"
	"cryptpt/internal/fstest"
)

// Synced vaults, for real: two Syncthing instances on loopback, each with
// its own home directory, keep two copies of one vault in sync, and each
// copy is mounted. What is written, renamed or deleted through one mount
// is seen through the other once Syncthing has synced it (the tests ask
// Syncthing's REST API when both sides are in sync, then give the other
// mount a deadline: its vault watcher turns Syncthing's changes into
// kernel invalidations); a conflict leaves both versions reachable through
// both mounts; no plaintext of an encrypted file is ever in either vault,
// Syncthing's .stfolder, .stversions, temp files and database included.
//
// The short version (one create, rename and delete per area, one conflict
// per area) runs in make test; CRYPTPT_STRESS=1 (make stress) runs more
// rounds, more conflicts and measures the delay.

// syncDeadline bounds every wait for Syncthing; they end as soon as it is
// done, typically within a second or two.
const syncDeadline = 60 * time.Second

// mountDeadline bounds the wait for a mount to show what its vault copy
// already holds: the watcher's batching (20 ms) and the invalidation.
const mountDeadline = 10 * time.Second

// syncthing is one Syncthing instance of a test.
type syncthing struct {
	t      *testing.T
	name   string
	home   string
	folder string // the vault copy it syncs
	gui    string // host:port of the REST API
	listen int    // sync protocol port
	key    string // API key
	id     string // device ID
	peer   *syncthing
	done   chan error
}

// syncthingBinary returns the syncthing executable (Debian's package, which
// make test installs), skipping the test without it unless
// CRYPTPT_REQUIRE_FUSE=1, where it fails: these tests need FUSE too.
func syncthingBinary(t *testing.T) string {
	t.Helper()
	fstest.RequireFUSE(t)
	p, err := exec.LookPath("syncthing")
	if err == nil {
		return p
	}
	if os.Getenv("CRYPTPT_REQUIRE_FUSE") == "1" {
		t.Fatal("syncthing is not installed but CRYPTPT_REQUIRE_FUSE=1 (make deps-test installs it)")
	}
	t.Skip("syncthing is not installed (make deps-test installs it)")
	return ""
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// syncOptions sets how Syncthing notices changes: its own inotify watcher
// with the given delay, or (watchDelayS 0) only the scans the test asks for.
type syncOptions struct {
	watchDelayS int
}

// startSyncthingPair starts two instances syncing folderA and folderB as
// one folder, on loopback only: no discovery, relays, NAT or usage
// reporting; simple versioning keeps replaced files in .stversions. It
// returns once they are connected.
func startSyncthingPair(t *testing.T, folderA, folderB string, o syncOptions) (a, b *syncthing) {
	t.Helper()
	bin := syncthingBinary(t)
	ports := freePorts(t, 4)
	a = &syncthing{t: t, name: "a", folder: folderA, gui: fmt.Sprintf("127.0.0.1:%d", ports[0]), listen: ports[1]}
	b = &syncthing{t: t, name: "b", folder: folderB, gui: fmt.Sprintf("127.0.0.1:%d", ports[2]), listen: ports[3]}
	a.peer, b.peer = b, a
	base := t.TempDir()
	for _, s := range []*syncthing{a, b} {
		s.home = filepath.Join(base, "syncthing-"+s.name)
		s.key = fmt.Sprintf("cryptpt-test-key-%s-%d", s.name, ports[0])
		if out, err := exec.Command(bin, "generate", "--home="+s.home, "--no-default-folder").CombinedOutput(); err != nil {
			t.Fatalf("syncthing generate: %v\n%s", err, out)
		}
		out, err := exec.Command(bin, "serve", "--home="+s.home, "--device-id").Output()
		must(t, err)
		s.id = strings.TrimSpace(string(out))
		// Syncthing refuses a folder without its marker.
		must(t, os.MkdirAll(filepath.Join(s.folder, ".stfolder"), 0o700))
	}
	for _, s := range []*syncthing{a, b} {
		must(t, os.WriteFile(filepath.Join(s.home, "config.xml"), []byte(s.config(o)), 0o600))
		s.start(t, bin)
	}
	waitFor(t, "both Syncthing instances connected", syncDeadline, func() error {
		for _, s := range []*syncthing{a, b} {
			if !s.connected() {
				return fmt.Errorf("%s not connected to %s", s.name, s.peer.name)
			}
		}
		return nil
	})
	return a, b
}

// config is the instance's config.xml (format of Syncthing 1.19).
func (s *syncthing) config(o syncOptions) string {
	device := func(d *syncthing) string {
		return fmt.Sprintf(`<device id="%s" name="%s" compression="metadata" introducer="false"><address>tcp://127.0.0.1:%d</address><autoAcceptFolders>false</autoAcceptFolders></device>`,
			d.id, d.name, d.listen)
	}
	return fmt.Sprintf(`<configuration version="36">
    <folder id="vault" label="vault" path="%s" type="sendreceive" rescanIntervalS="3600" fsWatcherEnabled="%v" fsWatcherDelayS="%d" ignorePerms="false" autoNormalize="true">
        <filesystemType>basic</filesystemType>
        <device id="%s"></device>
        <device id="%s"></device>
        <minDiskFree unit="%%">0</minDiskFree>
        <versioning type="simple"><param key="keep" val="5"></param><cleanupIntervalS>3600</cleanupIntervalS></versioning>
        <maxConflicts>10</maxConflicts>
        <markerName>.stfolder</markerName>
    </folder>
    %s
    %s
    <gui enabled="true" tls="false"><address>%s</address><apikey>%s</apikey></gui>
    <options>
        <listenAddress>tcp://127.0.0.1:%d</listenAddress>
        <globalAnnounceEnabled>false</globalAnnounceEnabled>
        <localAnnounceEnabled>false</localAnnounceEnabled>
        <relaysEnabled>false</relaysEnabled>
        <natEnabled>false</natEnabled>
        <urAccepted>-1</urAccepted>
        <startBrowser>false</startBrowser>
        <autoUpgradeIntervalH>0</autoUpgradeIntervalH>
        <crashReportingEnabled>false</crashReportingEnabled>
        <stunKeepaliveStartS>0</stunKeepaliveStartS>
        <reconnectionIntervalS>1</reconnectionIntervalS>
        <minHomeDiskFree unit="%%">0</minHomeDiskFree>
        <setLowPriority>false</setLowPriority>
    </options>
</configuration>
`, s.folder, o.watchDelayS > 0, max(o.watchDelayS, 1), s.id, s.peer.id, device(s), device(s.peer), s.gui, s.key, s.listen)
}

func (s *syncthing) start(t *testing.T, bin string) {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--home="+s.home, "--no-browser", "--no-restart", "--no-upgrade",
		"--logfile="+filepath.Join(s.home, "syncthing.log"), "--logflags=3")
	cmd.Env = append(os.Environ(), "STNORESTART=1", "STNOUPGRADE=1", "STNODEFAULTFOLDER=1", "HOME="+s.home)
	must(t, cmd.Start())
	s.done = make(chan error, 1)
	go func() { s.done <- cmd.Wait() }()
	t.Cleanup(func() {
		s.post("/rest/system/shutdown")
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-s.done
		}
	})
	waitFor(t, "Syncthing "+s.name+" answering", syncDeadline, func() error {
		select {
		case err := <-s.done:
			s.done <- err
			return fmt.Errorf("exited: %v\n%s", err, s.logTail())
		default:
		}
		return s.get("/rest/system/ping", nil)
	})
}

func (s *syncthing) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.home, "syncthing.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

var restClient = &http.Client{Timeout: 2 * syncDeadline}

func (s *syncthing) do(method, path, body string, out any) error {
	req, err := http.NewRequest(method, "http://"+s.gui+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("X-API-Key", s.key)
	resp, err := restClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

func (s *syncthing) get(path string, out any) error { return s.do("GET", path, "", out) }
func (s *syncthing) post(path string) error         { return s.do("POST", path, "", nil) }

// scan has Syncthing scan the vault copy now; it returns when the scan is
// done.
func (s *syncthing) scan(t *testing.T) {
	t.Helper()
	if err := s.post("/rest/db/scan?folder=vault"); err != nil {
		t.Fatalf("scan %s: %v", s.name, err)
	}
}

func (s *syncthing) connected() bool {
	var c struct {
		Connections map[string]struct {
			Connected bool `json:"connected"`
		} `json:"connections"`
	}
	return s.get("/rest/system/connections", &c) == nil && c.Connections[s.peer.id].Connected
}

// inSync reports whether this side has everything and knows that its peer
// has everything too, or why not.
func (s *syncthing) inSync() error {
	var st struct {
		State          string `json:"state"`
		NeedTotalItems int    `json:"needTotalItems"`
		PullErrors     int    `json:"pullErrors"`
	}
	if err := s.get("/rest/db/status?folder=vault", &st); err != nil {
		return err
	}
	var c struct {
		Completion  float64 `json:"completion"`
		NeedItems   int     `json:"needItems"`
		NeedDeletes int     `json:"needDeletes"`
	}
	if err := s.get("/rest/db/completion?folder=vault&device="+s.peer.id, &c); err != nil {
		return err
	}
	if st.State != "idle" || st.NeedTotalItems != 0 || c.Completion != 100 || c.NeedItems != 0 || c.NeedDeletes != 0 {
		return fmt.Errorf("%s: state %s, needs %d items (%d pull errors); peer %.1f%% complete, needs %d items and %d deletes",
			s.name, st.State, st.NeedTotalItems, st.PullErrors, c.Completion, c.NeedItems, c.NeedDeletes)
	}
	return nil
}

// waitSynced waits until both sides are connected and in sync.
func waitSynced(t *testing.T, a, b *syncthing) {
	t.Helper()
	waitFor(t, "Syncthing in sync", syncDeadline, func() error {
		for _, s := range []*syncthing{a, b} {
			if !s.connected() {
				return fmt.Errorf("%s not connected", s.name)
			}
			if err := s.inSync(); err != nil {
				return err
			}
		}
		return nil
	})
}

// setPaused pauses (or resumes) the vault folder on both sides: while
// paused, Syncthing neither scans nor syncs it, and a resumed folder scans
// before it pulls, so changes made on both sides meanwhile meet as a
// conflict. (Pausing the devices instead costs a reconnection, which
// Syncthing backs off for up to 25 s here.)
func setPaused(t *testing.T, paused bool, a, b *syncthing) {
	t.Helper()
	for _, s := range []*syncthing{a, b} {
		if err := s.do("PATCH", "/rest/config/folders/vault", fmt.Sprintf(`{"paused": %v}`, paused), nil); err != nil {
			t.Fatalf("pause: %v", err)
		}
	}
	waitFor(t, fmt.Sprintf("folders paused=%v", paused), syncDeadline, func() error {
		for _, s := range []*syncthing{a, b} {
			var st struct {
				State string `json:"state"`
			}
			if err := s.get("/rest/db/status?folder=vault", &st); err != nil {
				return err
			}
			// A paused folder has no state (Syncthing 1.19).
			if (st.State == "") != paused {
				return fmt.Errorf("%s: folder state %q", s.name, st.State)
			}
		}
		return nil
	})
}

// waitFor polls check until it returns nil, failing the test with its last
// error after deadline. It returns how long that took.
func waitFor(t *testing.T, what string, deadline time.Duration, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := check()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > deadline {
			t.Fatalf("%s: still not after %v: %v", what, deadline, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncedVault is one side: a vault copy, its mount and its Syncthing.
type syncedVault struct {
	*cliVault
	st       *syncthing
	reported map[string]bool // names checkNoVaultNames failed the test for
}

// newSyncedVaults makes a vault with "cryptpt init" (encrypted, with a
// plaintext area Public/), copies it whole to a second place before any
// Syncthing runs (so no half-written vault config is ever synced, and both
// copies have the same ~~vault.toml), starts Syncthing on both copies and
// mounts both once they are in sync.
func newSyncedVaults(t *testing.T, o syncOptions) (a, b *syncedVault) {
	t.Helper()
	syncthingBinary(t)
	va := newCLIVault(t, "Public/")
	dir := t.TempDir()
	vb := &cliVault{dir: dir, backing: filepath.Join(dir, "vault"), mnt: filepath.Join(dir, "mnt"),
		pwfile: va.pwfile, config: va.config, log: filepath.Join(dir, "daemon.log")}
	must(t, os.Mkdir(vb.mnt, 0o755))
	if out, err := exec.Command("cp", "-a", va.backing, vb.backing).CombinedOutput(); err != nil {
		t.Fatalf("copy the vault: %v\n%s", err, out)
	}
	sa, sb := startSyncthingPair(t, va.backing, vb.backing, o)
	waitSynced(t, sa, sb)
	a, b = &syncedVault{va, sa, map[string]bool{}}, &syncedVault{vb, sb, map[string]bool{}}
	for _, v := range []*syncedVault{a, b} {
		v.mount(t)
	}
	ca, err := os.ReadFile(filepath.Join(va.backing, crypt.VaultConfigName))
	must(t, err)
	cb, err := os.ReadFile(filepath.Join(vb.backing, crypt.VaultConfigName))
	must(t, err)
	if !bytes.Equal(ca, cb) {
		t.Fatal("the two vault copies have different vault configs")
	}
	return a, b
}

// sync has the writer's Syncthing scan what changed and waits until both
// sides are in sync.
func (v *syncedVault) sync(t *testing.T) {
	t.Helper()
	v.st.scan(t)
	waitSynced(t, v.st, v.st.peer)
}

// shows waits until the mount shows want (file path -> content, "" for
// absent) and lists exactly the names of dir, and returns how long that took.
func (v *syncedVault) shows(t *testing.T, want map[string]string, dir string, names []string) time.Duration {
	t.Helper()
	return waitFor(t, "mount "+v.st.name+" shows the synced state", mountDeadline, func() error {
		for p, content := range want {
			got, err := os.ReadFile(v.path(p))
			switch {
			case content == "" && !os.IsNotExist(err):
				return fmt.Errorf("%s: still there (%v)", p, err)
			case content != "" && err != nil:
				return fmt.Errorf("%s: %v", p, err)
			case content != "" && string(got) != content:
				return fmt.Errorf("%s: %d bytes, not the ones written", p, len(got))
			}
		}
		got := listNames(t, v.path(dir))
		v.checkNoVaultNames(t, got)
		if !slices.Equal(got, names) {
			return fmt.Errorf("%s lists %q, want %q", dir, got, names)
		}
		return nil
	})
}

// checkNoVaultNames fails the test for a listed name that is a vault file
// or a sync tool's: the mount must never show one, not even for a moment.
func (v *syncedVault) checkNoVaultNames(t *testing.T, names []string) {
	t.Helper()
	for _, n := range names {
		if strings.HasPrefix(n, crypt.ReservedPrefix) || strings.HasPrefix(n, ".syncthing.") || strings.HasPrefix(n, "~syncthing~") || n == ".stfolder" || n == ".stversions" {
			if !v.reported[n] {
				t.Errorf("mount %s lists %q", v.st.name, n)
			}
			v.reported[n] = true
		}
	}
}

// TestSyncthingVaults: create, rename and delete through one mount, seen
// through the other, in the encrypted and the plaintext area; a conflict in
// each area leaves both versions reachable through both mounts.
func TestSyncthingVaults(t *testing.T) {
	a, b := newSyncedVaults(t, syncOptions{})
	rounds := 1
	if stressRun() {
		rounds = 8
	}
	rng := rand.New(rand.NewPCG(14, 1))
	var secrets [][]byte
	content := func(area string, size int) string {
		if area == "Public" {
			return strings.Repeat(fmt.Sprintf("public %d ", rng.IntN(1000)), size/10+1)
		}
		c := canary(t, size)
		secrets = append(secrets, c)
		return string(c)
	}
	for _, area := range []string{"Documents", "Public"} {
		must(t, os.Mkdir(a.path(area), 0o755))
	}
	a.sync(t)
	b.shows(t, nil, ".", []string{"Documents", "Public"})

	for r := range rounds {
		// In the stress run, writers alternate and names get long (a
		// long name's vault name is a hash with a sidecar).
		w, o := a, b
		if r%2 == 1 {
			w, o = b, a
		}
		for _, area := range []string{"Documents", "Public"} {
			name, renamed := fmt.Sprintf("%s/f%d.txt", area, r), fmt.Sprintf("%s/g%d.txt", area, r)
			if r%4 == 3 {
				renamed = fmt.Sprintf("%s/%s%d.txt", area, strings.Repeat("long-", 40), r)
			}
			data := content(area, 1+rng.IntN(20000))
			must(t, os.WriteFile(w.path(name), []byte(data), 0o644))
			w.sync(t)
			took := o.shows(t, map[string]string{name: data}, area, []string{filepath.Base(name)})
			t.Logf("round %d %s: create seen through mount %s %v after Syncthing was in sync", r, area, o.st.name, took.Round(time.Millisecond))
			must(t, os.Rename(w.path(name), w.path(renamed)))
			w.sync(t)
			o.shows(t, map[string]string{name: "", renamed: data}, area, []string{filepath.Base(renamed)})
			must(t, os.Remove(w.path(renamed)))
			w.sync(t)
			o.shows(t, map[string]string{renamed: ""}, area, nil)
		}
	}

	conflicts := []string{"Documents/c.txt", "Public/c.txt"}
	if stressRun() {
		// A long name (a hash with a sidecar in the vault), one whose copy's
		// name is cut to fit in 255 bytes, one without an extension.
		conflicts = append(conflicts, "Documents/"+strings.Repeat("conflict-", 20)+".odt",
			"Documents/"+strings.Repeat("too-long-", 25)+".odt", "Documents/noext")
	}
	for _, name := range conflicts {
		area := filepath.Dir(name)
		base := content(area, 3000)
		must(t, os.WriteFile(a.path(name), []byte(base), 0o644))
		a.sync(t)
		b.shows(t, map[string]string{name: base}, area, []string{filepath.Base(name)})

		setPaused(t, true, a.st, b.st)
		mine, theirs := content(area, 5000), content(area, 7000)
		must(t, os.WriteFile(a.path(name), []byte(mine), 0o644))
		must(t, os.WriteFile(b.path(name), []byte(theirs), 0o644))
		setPaused(t, false, a.st, b.st)
		waitSynced(t, a.st, b.st)
		for _, v := range []*syncedVault{a, b} {
			waitFor(t, "both versions of "+name+" through mount "+v.st.name, mountDeadline, func() error {
				return bothVersions(t, v, name, mine, theirs)
			})
		}
		// Keep one version: delete the copy through one mount.
		copyName := conflictCopyIn(t, a, name)
		must(t, os.Remove(a.path(copyName)))
		a.sync(t)
		b.shows(t, map[string]string{copyName: ""}, area, []string{filepath.Base(name)})
		must(t, os.Remove(a.path(name)))
		a.sync(t)
		b.shows(t, map[string]string{name: ""}, area, nil)
	}

	// One directory made on both devices while apart: each gives it an IV
	// of its own, Syncthing keeps one and renames the other ~~diriv.sync-
	// conflict-...; the entries made on the losing device show as
	// conflict copies of themselves.
	setPaused(t, true, a.st, b.st)
	ivs := map[*syncedVault][]byte{}
	files := map[*syncedVault]string{a: "Documents/new/from-a.txt", b: "Documents/new/from-b.txt"}
	for _, v := range []*syncedVault{a, b} {
		must(t, os.Mkdir(v.path("Documents/new"), 0o755))
		must(t, os.WriteFile(v.path(files[v]), []byte(content("Documents", 2000)), 0o644))
		iv, err := os.ReadFile(filepath.Join(storedDirOf(t, storedDirOf(t, v.backing)), crypt.DirIVName))
		must(t, err)
		ivs[v] = iv
	}
	setPaused(t, false, a.st, b.st)
	waitSynced(t, a.st, b.st)
	kept, err := os.ReadFile(filepath.Join(storedDirOf(t, storedDirOf(t, a.backing)), crypt.DirIVName))
	must(t, err)
	winner, loser := a, b
	if bytes.Equal(kept, ivs[b]) {
		winner, loser = b, a
	}
	// The losing daemon keeps the IV it read until it looks at the
	// directory afresh (README, "Synced vaults"): remounted here.
	loser.unmount(t)
	loser.mount(t)
	for _, v := range []*syncedVault{winner, loser} {
		waitFor(t, "both devices' entries of Documents/new through mount "+v.st.name, mountDeadline, func() error {
			names := listNames(t, v.path("Documents/new"))
			v.checkNoVaultNames(t, names)
			want := []string{filepath.Base(files[winner])}
			for _, n := range names {
				if isCopyOf(n, filepath.Base(files[loser])) {
					want = append(want, n)
				}
			}
			slices.Sort(want)
			if len(names) != 2 || !slices.Equal(names, want) {
				return fmt.Errorf("Documents/new lists %q", names)
			}
			for _, n := range names {
				if _, err := os.ReadFile(v.path("Documents/new/" + n)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	must(t, os.RemoveAll(winner.path("Documents/new")))
	winner.sync(t)
	loser.shows(t, nil, "Documents", nil)

	if stressRun() {
		// A whole-mount migrate has nothing to do: Syncthing's folder
		// marker is not a plaintext entry to encrypt.
		for _, v := range []*syncedVault{a, b} {
			if out := run(t, "migrate", "--dry-run", v.mnt); !strings.Contains(out, "Nothing to migrate") {
				t.Errorf("migrate on mount %s: %s", v.st.name, out)
			}
		}
	}
	for _, v := range []*syncedVault{a, b} {
		if m, _ := cfs.FindMount(v.mnt); m != v.mnt {
			t.Fatalf("mount %s is gone (daemon crashed?); log:\n%s", v.st.name, readLog(v.cliVault))
		}
		st := v.status(t)
		if st.HiddenEntries != 0 || len(st.Injected) != 0 {
			t.Errorf("mount %s: %d hidden entries, injected %q; log:\n%s", v.st.name, st.HiddenEntries, st.Injected, readLog(v.cliVault))
		}
		v.checkNoVaultNames(t, listNames(t, v.mnt))
	}
	// Nowhere: both vault copies (Syncthing's .stfolder, .stversions and
	// any temp file included) and both Syncthing homes (its database).
	for _, dir := range []string{a.backing, b.backing, a.st.home, b.st.home} {
		noCanaries(t, dir, secrets...)
	}
	if _, err := os.Stat(filepath.Join(b.backing, ".stversions")); err != nil {
		t.Errorf("Syncthing kept no versions, so the canary check did not look at any: %v", err)
	}
}

// bothVersions checks that the mount of v shows name and one conflict copy
// of it, holding mine and theirs (in either order).
func bothVersions(t *testing.T, v *syncedVault, name, mine, theirs string) error {
	dir := filepath.Dir(name)
	names := listNames(t, v.path(dir))
	v.checkNoVaultNames(t, names)
	var got []string
	for _, n := range names {
		if n != filepath.Base(name) && !isCopyOf(n, filepath.Base(name)) {
			return fmt.Errorf("%s lists %q", dir, names)
		}
		data, err := os.ReadFile(v.path(filepath.Join(dir, n)))
		if err != nil {
			return err
		}
		got = append(got, string(data))
	}
	sort.Strings(got)
	want := []string{mine, theirs}
	sort.Strings(want)
	if !slices.Equal(got, want) {
		return fmt.Errorf("%s lists %q, not one version each", dir, names)
	}
	return nil
}

// conflictCopyIn returns the path of the conflict copy of name in v's mount.
func conflictCopyIn(t *testing.T, v *syncedVault, name string) string {
	t.Helper()
	for _, n := range listNames(t, v.path(filepath.Dir(name))) {
		if isCopyOf(n, filepath.Base(name)) {
			return filepath.Join(filepath.Dir(name), n)
		}
	}
	t.Fatalf("no conflict copy of %s", name)
	return ""
}

// isCopyOf reports whether the mount shows a conflict copy of name as n.
func isCopyOf(n, name string) bool {
	_, marker, ok := crypt.ParseConflictName(n)
	return ok && crypt.ConflictName(name, marker) == n
}

// TestSyncthingDelay measures how long a file written (or deleted) through
// one mount takes to show through the other, and splits it into
// Syncthing's part (until the file is in, or gone from, the other vault
// copy) and cryptpt's (until the other mount shows it: the vault watcher's
// batching and the kernel invalidation). It reports, never asserts, times:
// make stress runs more samples and Syncthing's default watcher delay
// (10 s) besides its shortest (1 s) and a scan asked for at once.
func TestSyncthingDelay(t *testing.T) {
	samples, delays := 1, []int{1}
	if stressRun() {
		samples, delays = 5, []int{1, 10}
	}
	for _, delay := range delays {
		a, b := newSyncedVaults(t, syncOptions{watchDelayS: delay})
		must(t, os.Mkdir(a.path("Documents"), 0o755))
		a.sync(t)
		b.shows(t, nil, ".", []string{"Documents"})
		dirB := storedDirOf(t, b.backing)
		modes := []string{fmt.Sprintf("Syncthing's watcher, fsWatcherDelayS=%d", delay)}
		if delay == 1 {
			modes = append(modes, "a scan asked for at once (REST /rest/db/scan)")
		}
		for _, mode := range modes {
			var create, remove []delaySample
			for i := range samples {
				name := fmt.Sprintf("Documents/m%d-%d.txt", delay, i)
				data := canary(t, 10000)
				before := namesIn(t, dirB)
				start := time.Now()
				must(t, os.WriteFile(a.path(name), data, 0o644))
				s := delaySample{written: time.Now()}
				if strings.HasPrefix(mode, "a scan") {
					a.st.scan(t)
				}
				var stored string
				s.arrive(t, b.path(name), true, func() bool {
					for n := range namesIn(t, dirB) {
						if !before[n] && crypt.Classify(n) == crypt.Encrypted && !strings.Contains(n, ".") {
							stored = n
							return true
						}
					}
					return false
				})
				s.written = start
				create = append(create, s)
				if got, err := os.ReadFile(b.path(name)); err != nil || !bytes.Equal(got, data) {
					t.Fatalf("%s through mount b: %v", name, err)
				}
				waitSynced(t, a.st, b.st) // quiet before the next change
				start = time.Now()
				must(t, os.Remove(a.path(name)))
				s = delaySample{written: start}
				if strings.HasPrefix(mode, "a scan") {
					a.st.scan(t)
				}
				s.arrive(t, b.path(name), false, func() bool {
					_, err := os.Lstat(filepath.Join(dirB, stored))
					return os.IsNotExist(err)
				})
				remove = append(remove, s)
				waitSynced(t, a.st, b.st)
				noCanaries(t, b.backing, data)
			}
			t.Logf("%s:\n\tcreate: %s\n\tdelete: %s", mode, summarize(create), summarize(remove))
		}
	}
}

// delaySample is one change: when it was made through mount a, when it
// was in vault copy b, when mount b showed it.
type delaySample struct {
	written, inVault, shown time.Time
}

// arrive polls, every half millisecond, vault copy b (inVault) and path
// in mount b (until it exists, or is gone) and records when each showed
// the change.
func (s *delaySample) arrive(t *testing.T, path string, exists bool, inVault func() bool) {
	t.Helper()
	waitFor(t, "the change through mount b", syncDeadline, func() error {
		if s.inVault.IsZero() && inVault() {
			s.inVault = time.Now()
		}
		if _, err := os.Lstat(path); s.shown.IsZero() && (err == nil) == exists {
			s.shown = time.Now()
		}
		if s.inVault.IsZero() || s.shown.IsZero() {
			time.Sleep(500 * time.Microsecond)
			return fmt.Errorf("in vault b: %v, shown by mount b: %v", !s.inVault.IsZero(), !s.shown.IsZero())
		}
		return nil
	})
}

// summarize gives the median and largest of each part.
func summarize(samples []delaySample) string {
	part := func(f func(delaySample) time.Duration) string {
		var ds []time.Duration
		for _, s := range samples {
			ds = append(ds, f(s))
		}
		slices.Sort(ds)
		return fmt.Sprintf("%v (max %v)", ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
	}
	return fmt.Sprintf("total %s = Syncthing %s + cryptpt %s, %d samples",
		part(func(s delaySample) time.Duration { return s.shown.Sub(s.written) }),
		part(func(s delaySample) time.Duration { return s.inVault.Sub(s.written) }),
		part(func(s delaySample) time.Duration { return s.shown.Sub(s.inVault) }), len(samples))
}

// storedDirOf returns the path of the one encrypted directory at the root
// of a vault copy.
func storedDirOf(t *testing.T, backing string) string {
	t.Helper()
	for n := range namesIn(t, backing) {
		if crypt.Classify(n) == crypt.Encrypted {
			return filepath.Join(backing, n)
		}
	}
	t.Fatalf("no encrypted directory in %s", backing)
	return ""
}

func namesIn(t *testing.T, dir string) map[string]bool {
	t.Helper()
	ents, err := os.ReadDir(dir)
	must(t, err)
	m := map[string]bool{}
	for _, e := range ents {
		m[e.Name()] = true
	}
	return m
}
