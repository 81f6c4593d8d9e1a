package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeStatus(t *testing.T, name, requests string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(`{"pid": 1, "requests": `+requests+`, "log": "x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReqDiff(t *testing.T) {
	before := writeStatus(t, "before.json", `[{"op":"GETATTR","count":10,"total_us":100},{"op":"LOOKUP","count":5,"total_us":50}]`)
	after := writeStatus(t, "after.json", `[{"op":"GETATTR","count":13,"total_us":130},{"op":"LOOKUP","count":5,"total_us":50},{"op":"OPEN","count":7,"total_us":700}]`)
	var out bytes.Buffer
	if err := reqDiff(&out, "2", "find-warm", "cryptpt-pt", before, after); err != nil {
		t.Fatal(err)
	}
	// LOOKUP did not change and is left out; the most frequent comes first.
	want := "2\tfind-warm\tcryptpt-pt\tOPEN\t7\t700\n" +
		"2\tfind-warm\tcryptpt-pt\tGETATTR\t3\t30\n" +
		"2\tfind-warm\tcryptpt-pt\tALL\t10\t730\n"
	if out.String() != want {
		t.Errorf("got\n%swant\n%s", out.String(), want)
	}
}

func TestReqDiffNoRequests(t *testing.T) {
	// A run without any request still gets its ALL line.
	s := writeStatus(t, "s.json", `[{"op":"GETATTR","count":1,"total_us":1}]`)
	var out bytes.Buffer
	if err := reqDiff(&out, "1", "du-warm", "cryptpt-enc", s, s); err != nil {
		t.Fatal(err)
	}
	if want := "1\tdu-warm\tcryptpt-enc\tALL\t0\t0\n"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

func TestReqDiffErrors(t *testing.T) {
	hi := writeStatus(t, "hi.json", `[{"op":"GETATTR","count":9,"total_us":1}]`)
	lo := writeStatus(t, "lo.json", `[{"op":"GETATTR","count":2,"total_us":1}]`)
	if err := reqDiff(&bytes.Buffer{}, "1", "j", "c", hi, lo); err == nil || !strings.Contains(err.Error(), "went down") {
		t.Errorf("a counter going down: got %v", err)
	}
	p := filepath.Join(t.TempDir(), "old.json")
	if err := os.WriteFile(p, []byte(`{"pid": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := reqDiff(&bytes.Buffer{}, "1", "j", "c", p, p); err == nil || !strings.Contains(err.Error(), "no \"requests\"") {
		t.Errorf("a status without counters: got %v", err)
	}
}

func TestSummariseReqs(t *testing.T) {
	samples := []reqSample{
		// Three repetitions of one step; OPEN is missing from the third,
		// which counts as zero there.
		{1, "grep-r-warm", "cryptpt-pt", "OPEN", 100, 1000},
		{1, "grep-r-warm", "cryptpt-pt", "GETATTR", 300, 300},
		{1, "grep-r-warm", "cryptpt-pt", "ALL", 400, 1300},
		{2, "grep-r-warm", "cryptpt-pt", "OPEN", 90, 900},
		{2, "grep-r-warm", "cryptpt-pt", "ALL", 90, 900},
		{3, "grep-r-warm", "cryptpt-pt", "GETATTR", 50, 50},
		{3, "grep-r-warm", "cryptpt-pt", "ALL", 50, 50},
		// A step that sent nothing.
		{1, "du-warm", "cryptpt-pt", "ALL", 0, 0},
	}
	rq := summariseReqs(samples, 100)
	x := rq["grep-r-warm"]["cryptpt-pt"]
	if x == nil {
		t.Fatal("no statistics for grep-r-warm")
	}
	near := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	// Totals per file 4.0, 0.9, 0.5: median 0.9.
	near("per file", x.PerFile, 0.9)
	near("µs per request", x.UsPerRequest, 2250.0/540)
	if x.Reps != 3 || x.Files != 100 || len(x.Ops) != 2 {
		t.Fatalf("reps %d files %d ops %v", x.Reps, x.Files, x.Ops)
	}
	// OPEN 1.0, 0.9, 0 -> 0.9; GETATTR 3.0, 0, 0.5 -> 0.5.
	if x.Ops[0].Op != "OPEN" || x.Ops[1].Op != "GETATTR" {
		t.Errorf("ops out of order: %v", x.Ops)
	}
	near("OPEN per file", x.Ops[0].PerFile, 0.9)
	near("GETATTR per file", x.Ops[1].PerFile, 0.5)
	near("OPEN µs per request", x.Ops[0].UsPerRequest, 10)
	if got := topOps(x, 1); got != "OPEN 0.90, 1 more" {
		t.Errorf("topOps = %q", got)
	}
	d := rq["du-warm"]["cryptpt-pt"]
	if d == nil || d.PerFile != 0 || len(d.Ops) != 0 || topOps(d, 3) != "–" {
		t.Errorf("du-warm: %+v", d)
	}
}

func TestTargets(t *testing.T) {
	samples := []sample{
		{1, "unpack", "native", 1, "s"},
		{1, "unpack", "gocryptfs", 6, "s"},
		{1, "unpack", "cryptpt-pt", 3, "s"},
		{1, "rm-rf", "native", 1, "s"},
		{1, "rm-rf", "gocryptfs", 4, "s"},
		{1, "rm-rf", "cryptpt-pt", 3, "s"},
		{1, "write", "native", 1000, "KiB/s"},
		{1, "write", "cryptpt-pt", 400, "KiB/s"},
	}
	configs := []string{"native", "cryptpt-pt", "gocryptfs"}
	st := summarise(samples, configs)
	// unpack is 2× gocryptfs, rm-rf 1.33×: the worst is rm-rf.
	r, job, ok := worst(st, "cryptpt-pt", targets[2])
	if !ok || job != "rm-rf" || math.Abs(r-4.0/3) > 1e-9 {
		t.Errorf("unpack/rm-rf: %v %q %v", r, job, ok)
	}
	// randwrite is missing: no verdict.
	if _, _, ok := worst(st, "cryptpt-pt", targets[3]); ok {
		t.Error("a target with a missing job got a verdict")
	}
	var w bytes.Buffer
	writeTargets(&w, configs, st)
	if !strings.Contains(w.String(), "| 1.33× rm-rf, missed |") {
		t.Errorf("targets table:\n%s", w.String())
	}
	samples = append(samples, sample{1, "randwrite", "native", 1000, "KiB/s"}, sample{1, "randwrite", "cryptpt-pt", 300, "KiB/s"})
	w.Reset()
	writeTargets(&w, configs, summarise(samples, configs))
	if !strings.Contains(w.String(), "| 0.30× randwrite, **met** |") {
		t.Errorf("targets table:\n%s", w.String())
	}
}
