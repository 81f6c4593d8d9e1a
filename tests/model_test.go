package tests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cryptpt/config"
	"cryptpt/internal/testvault"

	"golang.org/x/sys/unix"
)

// The model test runs a seeded random sequence of file operations against a
// real mount and against an in-memory model (path -> inode, inode -> bytes),
// and compares the two after every step. CRYPTPT_MODEL_SEED=N replays one
// seed in every tree; CRYPTPT_STRESS=1 runs long sequences with fresh seeds.

// modelTree is one policy the model runs under, with the directories its
// operations spread over.
type modelTree struct {
	name      string
	plaintext []string
	dirs      []string
}

var modelTrees = []modelTree{
	{"encrypted", nil, []string{"", "d1", "d1/d2", "d3"}},
	{"plaintext", []string{"/**"}, []string{"", "d1", "d1/d2", "d3"}},
	{"mixed", []string{"media/"}, []string{"", "docs", "media", "media/sub"}},
}

// modelNames are the entry names used in every directory: short ones, and
// long ones whose encrypted form needs a sidecar.
var modelNames = []string{"f0", "f1", "f2", "f3", strings.Repeat("L", 180) + "1", strings.Repeat("L", 180) + "2"}

type mInode struct {
	id   int
	data []byte
	enc  bool
}

type mHandle struct {
	f   *os.File
	ino *mInode
}

type modelRun struct {
	t       *testing.T
	tv      *testvault.Vault
	tree    modelTree
	policy  *config.Policy
	rng     *rand.Rand
	seed    uint64
	files   map[string]*mInode
	handles []*mHandle
	nextID  int
	history []string
	step    int
	checked int            // outcomes compared with the model
	kinds   map[string]int // operations run, by kind and outcome
}

func TestModel(t *testing.T) {
	opsPerTree, seeds := 1500, 1
	if os.Getenv("CRYPTPT_STRESS") == "1" {
		opsPerTree, seeds = 12000, 3 // 3 trees x 3 seeds x 12000 = 108k operations
	}
	var fixed uint64
	if s := os.Getenv("CRYPTPT_MODEL_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CRYPTPT_MODEL_SEED=%q: %v", s, err)
		}
		fixed, seeds = v, 1
	}
	total := 0
	for ti, tree := range modelTrees {
		for si := 0; si < seeds; si++ {
			seed := uint64(1000*ti + si + 1) // fixed seeds in `make test`
			switch {
			case fixed != 0:
				seed = fixed
			case os.Getenv("CRYPTPT_STRESS") == "1":
				seed = uint64(time.Now().UnixNano())
			}
			t.Run(fmt.Sprintf("%s/seed=%d", tree.name, seed), func(t *testing.T) {
				t.Logf("replay with CRYPTPT_MODEL_SEED=%d go test ./tests/ -run 'TestModel/%s'", seed, tree.name)
				m := newModelRun(t, tree, seed)
				m.run(opsPerTree)
				total += opsPerTree
				t.Logf("%d operations, %d outcomes compared; by kind: %v", opsPerTree, m.checked, m.kinds)
			})
		}
	}
	t.Logf("model: %d operations checked in total", total)
}

func newModelRun(t *testing.T, tree modelTree, seed uint64) *modelRun {
	tv := testvault.New(t, testvault.Options{Plaintext: tree.plaintext})
	policy, err := config.NewPolicy(tree.plaintext)
	must(t, err)
	for _, d := range tree.dirs[1:] {
		must(t, os.Mkdir(tv.Path(d), 0o755))
	}
	return &modelRun{
		t: t, tv: tv, tree: tree, policy: policy, seed: seed,
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		files: map[string]*mInode{},
		kinds: map[string]int{},
	}
}

func (m *modelRun) run(ops int) {
	defer m.closeHandles()
	for m.step = 0; m.step < ops; m.step++ {
		m.oneOp()
		if m.t.Failed() {
			return
		}
		if m.step%100 == 99 {
			m.checkTree()
		}
	}
	m.closeHandles()
	m.remount()
	m.checkTree()
}

// plainArea reports whether a new file at p would be stored as plaintext.
func (m *modelRun) plainArea(p string) bool { return m.policy.Decide(p, false).Plaintext }

func (m *modelRun) anyPath() string {
	d := m.tree.dirs[m.rng.IntN(len(m.tree.dirs))]
	return filepath.Join(d, modelNames[m.rng.IntN(len(modelNames))])
}

func (m *modelRun) sortedFiles() []string {
	paths := make([]string, 0, len(m.files))
	for p := range m.files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths
}

// somePath returns an existing file most of the time, else any path.
func (m *modelRun) somePath() string {
	if len(m.files) > 0 && m.rng.IntN(10) < 9 {
		paths := m.sortedFiles()
		return paths[m.rng.IntN(len(paths))]
	}
	return m.anyPath()
}

func (m *modelRun) randBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(m.rng.Uint32())
	}
	return b
}

func (m *modelRun) randLen() int {
	switch m.rng.IntN(5) {
	case 0:
		return 1 + m.rng.IntN(100)
	case 1:
		return 4096
	case 2:
		return 4096*(1+m.rng.IntN(3)) + m.rng.IntN(3) - 1
	default:
		return 1 + m.rng.IntN(12000)
	}
}

func (m *modelRun) randOffset(size int) int64 {
	switch m.rng.IntN(5) {
	case 0:
		return 0
	case 1:
		return int64(size)
	case 2:
		return int64(size + m.rng.IntN(10000)) // past EOF: a hole
	case 3:
		return int64(4096 * m.rng.IntN(size/4096+2))
	default:
		return int64(m.rng.IntN(size + 1))
	}
}

// writeAt applies a write to the model.
func modelWriteAt(ino *mInode, off int64, data []byte) {
	end := int(off) + len(data)
	if end > len(ino.data) {
		ino.data = append(ino.data, make([]byte, end-len(ino.data))...)
	}
	copy(ino.data[off:], data)
}

func modelResize(ino *mInode, size int) {
	if size <= len(ino.data) {
		ino.data = ino.data[:size]
		return
	}
	ino.data = append(ino.data, make([]byte, size-len(ino.data))...)
}

func (m *modelRun) create(p string) *mInode {
	m.nextID++
	ino := &mInode{id: m.nextID, enc: !m.plainArea(p)}
	m.files[p] = ino
	return ino
}

func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return syscall.Errno(0xffff) // not an errno at all
}

func (m *modelRun) logOp(format string, args ...any) {
	s := fmt.Sprintf("#%d "+format, append([]any{m.step}, args...)...)
	m.history = append(m.history, s)
	if len(m.history) > 40 {
		m.history = m.history[1:]
	}
}

func (m *modelRun) fail(format string, args ...any) {
	m.t.Helper()
	m.t.Fatalf("seed %d (CRYPTPT_MODEL_SEED=%d), step %d: %s\nlast operations:\n%s\ndaemon log:\n%s",
		m.seed, m.seed, m.step, fmt.Sprintf(format, args...), strings.Join(m.history, "\n"), m.tv.Log())
}

// expect compares an operation's error with the model's prediction.
func (m *modelRun) expect(op string, err error, want syscall.Errno) bool {
	m.t.Helper()
	m.checked++
	m.kinds[fmt.Sprintf("%s:%v", op, want)]++
	if got := errnoOf(err); got != want {
		m.fail("%s: got %v (%v), model expects errno %d (%v)", op, err, got, int(want), want)
		return false
	}
	return true
}

func (m *modelRun) oneOp() {
	r := m.rng.IntN(100)
	switch {
	case r < 18:
		m.opWrite(false)
	case r < 23:
		m.opWrite(true)
	case r < 31:
		m.opTruncate()
	case r < 38:
		m.opFallocate()
	case r < 52:
		m.opRename()
	case r < 59:
		m.opLink()
	case r < 66:
		m.opUnlink()
	case r < 72:
		m.opMmap()
	case r < 80:
		m.opReopen()
	case r < 90:
		m.opHandleWrite()
	case r < 98:
		m.opHandleRead()
	default:
		m.opRemount()
	}
}

func (m *modelRun) opWrite(trunc bool) {
	p := m.somePath()
	ino := m.files[p]
	size := 0
	if ino != nil {
		size = len(ino.data)
	}
	off := m.randOffset(size)
	if trunc {
		off = 0
	}
	data := m.randBytes(m.randLen())
	m.logOp("write %q off=%d len=%d trunc=%v (size %d)", p, off, len(data), trunc, size)
	flags := os.O_WRONLY | os.O_CREATE
	if trunc {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(m.tv.Path(p), flags, 0o644)
	if !m.expect("open", err, 0) {
		return
	}
	_, err = f.WriteAt(data, off)
	cerr := f.Close()
	if !m.expect("pwrite", err, 0) || !m.expect("close", cerr, 0) {
		return
	}
	if ino == nil {
		ino = m.create(p)
	}
	if trunc {
		ino.data = nil
	}
	modelWriteAt(ino, off, data)
	m.checkPath(p)
}

func (m *modelRun) opTruncate() {
	p := m.somePath()
	ino := m.files[p]
	size := 0
	if ino != nil {
		size = len(ino.data)
	}
	n := m.rng.IntN(2*size + 8192)
	m.logOp("truncate %q %d (size %d)", p, n, size)
	err := os.Truncate(m.tv.Path(p), int64(n))
	if ino == nil {
		m.expect("truncate", err, syscall.ENOENT)
		return
	}
	if m.expect("truncate", err, 0) {
		modelResize(ino, n)
		m.checkPath(p)
	}
}

func (m *modelRun) opFallocate() {
	p := m.somePath()
	ino := m.files[p]
	if ino == nil {
		m.logOp("fallocate %q: no such file", p)
		_, err := os.OpenFile(m.tv.Path(p), os.O_RDWR, 0)
		m.expect("open", err, syscall.ENOENT)
		return
	}
	size := len(ino.data)
	off := m.randOffset(size)
	n := int64(1 + m.rng.IntN(12000))
	mode := uint32(0)
	if m.rng.IntN(2) == 0 {
		mode = unix.FALLOC_FL_KEEP_SIZE
	}
	m.logOp("fallocate %q mode=%d off=%d len=%d (size %d)", p, mode, off, n, size)
	f, err := os.OpenFile(m.tv.Path(p), os.O_RDWR, 0)
	if !m.expect("open", err, 0) {
		return
	}
	err = unix.Fallocate(int(f.Fd()), mode, off, n)
	cerr := f.Close()
	if !m.expect("fallocate", err, 0) || !m.expect("close", cerr, 0) {
		return
	}
	if mode == 0 && int(off+n) > size {
		modelResize(ino, int(off+n))
	}
	m.checkPath(p)
}

func (m *modelRun) opRename() {
	src, dst := m.somePath(), m.anyPath()
	if m.rng.IntN(3) == 0 && len(m.files) > 0 {
		dst = m.somePath() // often over an existing file
	}
	m.logOp("rename %q -> %q", src, dst)
	err := os.Rename(m.tv.Path(src), m.tv.Path(dst))
	sino, dino := m.files[src], m.files[dst]
	switch {
	case sino == nil:
		m.expect("rename", err, syscall.ENOENT)
	case sino == dino:
		// Same inode (or same name): rename(2) does nothing.
		m.expect("rename", err, 0)
	case !sino.enc && !m.plainArea(dst):
		m.expect("rename", err, syscall.EXDEV)
	default:
		if m.expect("rename", err, 0) {
			m.files[dst] = sino
			delete(m.files, src)
		}
	}
	m.checkPath(src)
	m.checkPath(dst)
}

func (m *modelRun) opLink() {
	src, dst := m.somePath(), m.anyPath()
	m.logOp("link %q -> %q", src, dst)
	err := os.Link(m.tv.Path(src), m.tv.Path(dst))
	sino := m.files[src]
	switch {
	case sino == nil:
		m.expect("link", err, syscall.ENOENT)
	case m.files[dst] != nil:
		m.expect("link", err, syscall.EEXIST)
	case !sino.enc && !m.plainArea(dst):
		m.expect("link", err, syscall.EXDEV)
	default:
		if m.expect("link", err, 0) {
			m.files[dst] = sino
		}
	}
	m.checkPath(src)
	m.checkPath(dst)
}

func (m *modelRun) opUnlink() {
	p := m.somePath()
	m.logOp("unlink %q", p)
	err := os.Remove(m.tv.Path(p))
	if m.files[p] == nil {
		m.expect("unlink", err, syscall.ENOENT)
		return
	}
	if m.expect("unlink", err, 0) {
		delete(m.files, p)
		m.checkPath(p)
	}
}

// opMmap writes through a shared mapping and msyncs it. The mapping is made
// by a helper process: a page fault on a FUSE mapping in the process that
// serves the mount can deadlock with the Go runtime stopping the world.
func (m *modelRun) opMmap() {
	p := m.somePath()
	ino := m.files[p]
	if ino == nil || len(ino.data) == 0 {
		m.logOp("mmap %q: skipped (missing or empty)", p)
		return
	}
	size := len(ino.data)
	off := m.rng.IntN(size)
	data := m.randBytes(1 + m.rng.IntN(min(size-off, 9000)))
	m.logOp("mmap write %q off=%d len=%d (size %d)", p, off, len(data), size)
	cmd := exec.Command(mmapHelper(m.t), m.tv.Path(p), strconv.Itoa(off))
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	before, err := cmd.Output()
	m.checked++
	m.kinds["mmap"]++
	if err != nil {
		m.fail("mmap helper: %v: %s", err, stderr.String())
		return
	}
	if !bytes.Equal(before, ino.data) {
		m.fail("the shared mapping of %q showed other bytes than the file has: %s", p, diffBytes(before, ino.data))
		return
	}
	copy(ino.data[off:], data)
	m.checkPath(p)
}

// mmapHelperSrc maps FILE shared, prints what the mapping shows, copies
// stdin into it at OFFSET, msyncs and unmaps.
const mmapHelperSrc = `package main

import (
	"io"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

func main() {
	f, err := os.OpenFile(os.Args[1], os.O_RDWR, 0)
	check(err)
	off, err := strconv.Atoi(os.Args[2])
	check(err)
	data, err := io.ReadAll(os.Stdin)
	check(err)
	st, err := f.Stat()
	check(err)
	mem, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	check(err)
	os.Stdout.Write(mem)
	copy(mem[off:], data)
	_, _, e := syscall.Syscall(syscall.SYS_MSYNC, uintptr(unsafe.Pointer(&mem[0])), uintptr(len(mem)), 4 /* MS_SYNC */)
	if e != 0 {
		check(e)
	}
	check(syscall.Munmap(mem))
	check(f.Close())
}

func check(err error) {
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
}
`

var (
	mmapHelperOnce sync.Once
	mmapHelperPath string
	mmapHelperErr  error
)

// mmapHelper builds the mmap helper once, next to the cryptpt binary.
func mmapHelper(t *testing.T) string {
	t.Helper()
	mmapHelperOnce.Do(func() {
		dir := filepath.Join(filepath.Dir(binary), "mmapw")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			mmapHelperErr = err
			return
		}
		os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module mmapw\n\ngo 1.21\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "main.go"), []byte(mmapHelperSrc), 0o644)
		cmd := exec.Command("go", "build", "-o", "mmapw", ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			mmapHelperErr = fmt.Errorf("build mmap helper: %v\n%s", err, out)
			return
		}
		mmapHelperPath = filepath.Join(dir, "mmapw")
	})
	if mmapHelperErr != nil {
		t.Fatal(mmapHelperErr)
	}
	return mmapHelperPath
}

// opReopen closes a random open handle (if at the limit) and opens a file.
func (m *modelRun) opReopen() {
	if len(m.handles) >= 3 || (len(m.handles) > 0 && m.rng.IntN(3) == 0) {
		i := m.rng.IntN(len(m.handles))
		m.logOp("close handle %d (inode %d)", i, m.handles[i].ino.id)
		m.expect("close", m.handles[i].f.Close(), 0)
		m.handles = append(m.handles[:i], m.handles[i+1:]...)
	}
	p := m.somePath()
	m.logOp("open handle %q", p)
	f, err := os.OpenFile(m.tv.Path(p), os.O_RDWR, 0)
	ino := m.files[p]
	if ino == nil {
		m.expect("open", err, syscall.ENOENT)
		return
	}
	if m.expect("open", err, 0) {
		m.handles = append(m.handles, &mHandle{f: f, ino: ino})
	}
}

// opHandleWrite writes through a handle opened earlier: its file may have
// been renamed, linked or unlinked since.
func (m *modelRun) opHandleWrite() {
	if len(m.handles) == 0 {
		m.opReopen()
		return
	}
	i := m.rng.IntN(len(m.handles))
	h := m.handles[i]
	off := m.randOffset(len(h.ino.data))
	data := m.randBytes(m.randLen())
	m.logOp("handle %d (inode %d) pwrite off=%d len=%d (size %d)", i, h.ino.id, off, len(data), len(h.ino.data))
	_, err := h.f.WriteAt(data, off)
	if m.expect("pwrite", err, 0) {
		modelWriteAt(h.ino, off, data)
		m.checkInode(h.ino)
	}
}

func (m *modelRun) opHandleRead() {
	if len(m.handles) == 0 {
		m.opReopen()
		return
	}
	i := m.rng.IntN(len(m.handles))
	h := m.handles[i]
	m.logOp("handle %d (inode %d) read all (size %d)", i, h.ino.id, len(h.ino.data))
	got, err := io.ReadAll(io.NewSectionReader(h.f, 0, 1<<40))
	if m.expect("read", err, 0) && !bytes.Equal(got, h.ino.data) {
		m.fail("read through handle %d: %s", i, diffBytes(got, h.ino.data))
	}
}

func (m *modelRun) closeHandles() {
	for _, h := range m.handles {
		h.f.Close()
	}
	m.handles = nil
}

func (m *modelRun) opRemount() {
	m.logOp("remount")
	m.kinds["remount"]++
	m.closeHandles()
	m.remount()
	m.checkTree()
}

func (m *modelRun) remount() {
	m.tv.Unmount(m.t)
	m.tv.Remount(m.t)
}

// checkInode checks every name of an inode.
func (m *modelRun) checkInode(ino *mInode) {
	for _, p := range m.sortedFiles() {
		if m.files[p] == ino {
			m.checkPath(p)
		}
	}
}

// checkPath compares one path of the mount with the model.
func (m *modelRun) checkPath(p string) {
	m.t.Helper()
	if m.t.Failed() {
		return
	}
	got, err := os.ReadFile(m.tv.Path(p))
	ino := m.files[p]
	if ino == nil {
		if !errors.Is(err, fs.ErrNotExist) {
			m.fail("%q should not exist; read gives %d bytes, err %v", p, len(got), err)
		}
		return
	}
	if err != nil {
		m.fail("read %q: %v", p, err)
		return
	}
	if !bytes.Equal(got, ino.data) {
		m.fail("content of %q: %s", p, diffBytes(got, ino.data))
		return
	}
	st, err := os.Stat(m.tv.Path(p))
	if err != nil {
		m.fail("stat %q: %v", p, err)
		return
	}
	if st.Size() != int64(len(ino.data)) {
		m.fail("stat %q: size %d, model %d", p, st.Size(), len(ino.data))
	}
}

// checkTree compares the whole tree: names, contents, and which names are
// links of one inode.
func (m *modelRun) checkTree() {
	m.t.Helper()
	if m.t.Failed() {
		return
	}
	m.checked++
	seen := map[string]bool{}
	byIno := map[uint64]*mInode{}
	err := filepath.WalkDir(m.tv.Mnt, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(m.tv.Mnt, path)
		if d.IsDir() {
			return nil
		}
		seen[rel] = true
		ino := m.files[rel]
		if ino == nil {
			return fmt.Errorf("%q is listed but not in the model", rel)
		}
		st, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("stat of listed %q: %v", rel, err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if prev, ok := byIno[sys.Ino]; ok && prev != ino {
			return fmt.Errorf("%q shares inode %d with another file, the model has separate files", rel, sys.Ino)
		}
		byIno[sys.Ino] = ino
		links := 0
		for _, i := range m.files {
			if i == ino {
				links++
			}
		}
		if int(sys.Nlink) != links {
			return fmt.Errorf("%q has %d links, model %d", rel, sys.Nlink, links)
		}
		return nil
	})
	if err != nil {
		m.fail("tree check: %v", err)
		return
	}
	for _, p := range m.sortedFiles() {
		if !seen[p] {
			m.fail("tree check: %q is in the model but not listed", p)
			return
		}
		m.checkPath(p)
	}
	// Names of inodes that share content must share the kernel inode too.
	inos := map[*mInode]uint64{}
	for _, p := range m.sortedFiles() {
		st, err := os.Stat(m.tv.Path(p))
		if err != nil {
			m.fail("stat %q: %v", p, err)
			return
		}
		ino := st.Sys().(*syscall.Stat_t).Ino
		if prev, ok := inos[m.files[p]]; ok && prev != ino {
			m.fail("tree check: links of one file show inodes %d and %d (%q)", prev, ino, p)
			return
		}
		inos[m.files[p]] = ino
	}
}

// diffBytes describes how got differs from want.
func diffBytes(got, want []byte) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d bytes, model has %d (first difference at %d)", len(got), len(want), firstDiff(got, want))
	}
	return fmt.Sprintf("differs at offset %d of %d", firstDiff(got, want), len(want))
}

func firstDiff(a, b []byte) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
