package fs

import (
	"os"
	"sort"
	"sync"
	"sync/atomic"
)

// stats counts what the daemon did, for `cryptpt status` and for tests that
// check which path served a file.
type stats struct {
	plainOpensPassthrough atomic.Int64
	plainOpensDaemon      atomic.Int64
	encOpens              atomic.Int64
	plainReads            atomic.Int64 // READ requests for plaintext files
	encReads              atomic.Int64 // READ requests for encrypted files
	plainWrites           atomic.Int64
	encWrites             atomic.Int64
	plainBytes            atomic.Int64 // bytes of plaintext files served by the daemon
	encBytes              atomic.Int64 // bytes of encrypted files served by the daemon
	authFailures          atomic.Int64
	hiddenEntries         atomic.Int64

	mu       sync.Mutex
	drift    map[string]struct{} // encrypted entries at paths the policy makes plaintext
	injected map[string]struct{} // plaintext entries at paths the policy encrypts
	twins    map[string]struct{} // entries stored in both forms
}

// maxListed bounds the paths kept for status, so a huge tree cannot grow the
// daemon's memory without bound.
const maxListed = 1000

// note records path in set and reports whether it was new there.
func (s *stats) note(set *map[string]struct{}, path string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if *set == nil {
		*set = map[string]struct{}{}
	}
	if _, ok := (*set)[path]; ok {
		return false
	}
	if len(*set) < maxListed {
		(*set)[path] = struct{}{}
	}
	return true
}

// forgetTwin drops path from the twins once one form is gone.
func (s *stats) forgetTwin(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.twins, path)
}

func (s *stats) forget(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.drift, path)
	delete(s.injected, path)
}

// Status is what `cryptpt status` reports about a live mount.
type Status struct {
	Backing    string `json:"backing"`
	Mountpoint string `json:"mountpoint"`
	PID        int    `json:"pid"`
	ReadOnly   bool   `json:"read_only"`
	// Policy is the plaintext list the daemon runs with, as written.
	Policy []string `json:"policy"`

	PassthroughActive bool   `json:"passthrough_active"`
	PassthroughReason string `json:"passthrough_reason"`
	// WritebackCache says whether the kernel merges writes in its page
	// cache (on where passthrough is not used; see useWriteback).
	WritebackCache bool `json:"writeback_cache"`
	// EncryptedView says whether encrypted files are served through the
	// view, whose writeback cache merges their writes in a mount that
	// uses passthrough (view.go).
	EncryptedView bool `json:"encrypted_view"`
	// DirFds is how many backing directories the daemon holds open, of at
	// most MaxDirFds.
	DirFds    int `json:"directory_fds"`
	MaxDirFds int `json:"max_directory_fds"`

	PlainOpensPassthrough int64 `json:"plaintext_opens_passthrough"`
	PlainOpensDaemon      int64 `json:"plaintext_opens_daemon"`
	EncryptedOpens        int64 `json:"encrypted_opens"`
	PlainReads            int64 `json:"plaintext_read_requests"`
	EncryptedReads        int64 `json:"encrypted_read_requests"`
	PlainWrites           int64 `json:"plaintext_write_requests"`
	EncryptedWrites       int64 `json:"encrypted_write_requests"`
	PlainBytes            int64 `json:"plaintext_bytes_via_daemon"`
	EncryptedBytes        int64 `json:"encrypted_bytes_via_daemon"`
	AuthFailures          int64 `json:"authentication_failures"`
	HiddenEntries         int64 `json:"hidden_entries"`

	// Drift lists encrypted entries seen at paths the policy makes plaintext.
	Drift []string `json:"drift"`
	// Injected lists plaintext entries seen at paths the policy encrypts.
	Injected []string `json:"injected"`
	// Twins lists entries found stored in both forms, as an interrupted
	// migrate leaves them; migrate removes the form the policy does not
	// give when both hold the same content.
	Twins []string `json:"twins"`

	// Requests counts the kernel's requests by opcode, most frequent
	// first, with the time the daemon spent answering them; ViewRequests
	// those of the view.
	Requests     []RequestCount `json:"requests"`
	ViewRequests []RequestCount `json:"view_requests,omitempty"`
}

func (v *vault) status() Status {
	s := &v.stats
	v.ptMu.Lock()
	st := Status{
		Backing:           v.opts.Backing,
		Mountpoint:        v.mountpoint,
		ReadOnly:          v.opts.ReadOnly,
		PID:               os.Getpid(),
		Policy:            []string{},
		PassthroughActive: v.ptActive,
		PassthroughReason: v.ptReason,
		WritebackCache:    v.writeback,
		DirFds:            v.dirs.open(),
		MaxDirFds:         v.dirs.max,
	}
	v.ptMu.Unlock()
	for _, r := range v.policy().Rules() {
		st.Policy = append(st.Policy, r.Pattern)
	}
	st.PlainOpensPassthrough = s.plainOpensPassthrough.Load()
	st.PlainOpensDaemon = s.plainOpensDaemon.Load()
	st.EncryptedOpens = s.encOpens.Load()
	st.PlainReads = s.plainReads.Load()
	st.EncryptedReads = s.encReads.Load()
	st.PlainWrites = s.plainWrites.Load()
	st.EncryptedWrites = s.encWrites.Load()
	st.PlainBytes = s.plainBytes.Load()
	st.EncryptedBytes = s.encBytes.Load()
	st.AuthFailures = s.authFailures.Load()
	st.HiddenEntries = s.hiddenEntries.Load()
	st.Requests = v.requests.snapshot()
	if v.view != nil {
		st.EncryptedView = true
		st.ViewRequests = v.view.requests.snapshot()
	}
	s.mu.Lock()
	st.Drift = sortedKeys(s.drift)
	st.Injected = sortedKeys(s.injected)
	st.Twins = sortedKeys(s.twins)
	s.mu.Unlock()
	return st
}

func sortedKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
