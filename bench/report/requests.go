package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// opAll is the line reqdiff writes for the total of a counted run, even when
// the run sent no request at all: it tells a run with zero requests apart
// from a configuration without counters (native, gocryptfs).
const opAll = "ALL"

// requestCount is one entry of the "requests" list of cryptpt status --json.
type requestCount struct {
	Op      string `json:"op"`
	Count   int64  `json:"count"`
	TotalUs int64  `json:"total_us"`
}

// readRequests reads the request counters from the output of
// cryptpt status --json.
func readRequests(path string) (map[string]requestCount, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var st struct {
		Requests *[]requestCount `json:"requests"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if st.Requests == nil {
		return nil, fmt.Errorf("%s: %w", path, errNoRequests)
	}
	m := map[string]requestCount{}
	for _, r := range *st.Requests {
		m[r.Op] = r
	}
	return m, nil
}

// errNoRequests reports a status without request counters: a daemon older
// than the counters.
var errNoRequests = errors.New(`no "requests" in the status (a daemon without request counters)`)

// reqDiff writes, as TSV lines (rep, job, config, op, count, total_us), the
// requests answered between two snapshots of a daemon's counters, most
// frequent first, then the line for opAll with the totals.
func reqDiff(w io.Writer, rep, job, config, beforePath, afterPath string) error {
	before, err := readRequests(beforePath)
	if err != nil {
		return err
	}
	after, err := readRequests(afterPath)
	if err != nil {
		return err
	}
	var out []requestCount
	var all requestCount
	for op, a := range after {
		b := before[op]
		d := requestCount{Op: op, Count: a.Count - b.Count, TotalUs: a.TotalUs - b.TotalUs}
		if d.Count < 0 {
			return fmt.Errorf("%s: %s count went down from %d to %d (did the daemon restart?)", afterPath, op, b.Count, a.Count)
		}
		if d.Count > 0 {
			out = append(out, d)
			all.Count += d.Count
			all.TotalUs += d.TotalUs
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Op < out[j].Op
	})
	all.Op = opAll
	for _, r := range append(out, all) {
		if _, err := fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\n", rep, job, config, r.Op, r.Count, r.TotalUs); err != nil {
			return err
		}
	}
	return nil
}

// reqSample is the requests of one opcode in one counted run.
type reqSample struct {
	Rep     int    `json:"rep"`
	Job     string `json:"job"`
	Config  string `json:"config"`
	Op      string `json:"op"`
	Count   int64  `json:"count"`
	TotalUs int64  `json:"total_us"`
}

func readReqs(path string) ([]reqSample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []reqSample
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		fs := strings.Split(sc.Text(), "\t")
		if len(fs) != 6 {
			return nil, fmt.Errorf("%s:%d: want 6 fields, got %d", path, n, len(fs))
		}
		rep, err1 := strconv.Atoi(fs[0])
		count, err2 := strconv.ParseInt(fs[4], 10, 64)
		us, err3 := strconv.ParseInt(fs[5], 10, 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		out = append(out, reqSample{rep, fs[1], fs[2], fs[3], count, us})
	}
	return out, sc.Err()
}

// opStat is one opcode's share of a step in one configuration.
type opStat struct {
	Op string `json:"op"`
	// PerFile is the median over the repetitions of count / files.
	PerFile float64 `json:"per_file"`
	// UsPerRequest is the daemon's time answering them divided by their
	// number, over all repetitions.
	UsPerRequest float64 `json:"us_per_request"`
}

// reqStat summarises the requests of one step in one configuration.
type reqStat struct {
	Job    string `json:"job"`
	Config string `json:"config"`
	Files  int    `json:"files"`
	Reps   int    `json:"reps"`
	// PerFile is the median over the repetitions of all requests / files.
	PerFile      float64  `json:"per_file"`
	UsPerRequest float64  `json:"us_per_request"`
	Ops          []opStat `json:"ops"`
}

// summariseReqs returns the request statistics keyed by job, then
// configuration, for the runs that have an opAll line.
func summariseReqs(samples []reqSample, files int) map[string]map[string]*reqStat {
	type key struct{ job, config string }
	reps := map[key]map[int]bool{}
	counts := map[key]map[string]map[int]int64{}
	us := map[key]map[string]int64{}
	for _, s := range samples {
		k := key{s.Job, s.Config}
		if s.Op == opAll {
			if reps[k] == nil {
				reps[k] = map[int]bool{}
			}
			reps[k][s.Rep] = true
		}
		if counts[k] == nil {
			counts[k] = map[string]map[int]int64{}
			us[k] = map[string]int64{}
		}
		if counts[k][s.Op] == nil {
			counts[k][s.Op] = map[int]int64{}
		}
		counts[k][s.Op][s.Rep] += s.Count
		us[k][s.Op] += s.TotalUs
	}
	out := map[string]map[string]*reqStat{}
	if files <= 0 {
		return out
	}
	for k, rs := range reps {
		perFile := func(op string) float64 {
			var v []float64
			for rep := range rs {
				v = append(v, float64(counts[k][op][rep])/float64(files))
			}
			return median(v)
		}
		usPer := func(op string) float64 {
			var n int64
			for rep := range rs {
				n += counts[k][op][rep]
			}
			if n == 0 {
				return 0
			}
			return float64(us[k][op]) / float64(n)
		}
		x := &reqStat{Job: k.job, Config: k.config, Files: files, Reps: len(rs), PerFile: perFile(opAll), UsPerRequest: usPer(opAll), Ops: []opStat{}}
		for op := range counts[k] {
			if op != opAll {
				x.Ops = append(x.Ops, opStat{op, perFile(op), usPer(op)})
			}
		}
		sort.Slice(x.Ops, func(i, j int) bool {
			if x.Ops[i].PerFile != x.Ops[j].PerFile {
				return x.Ops[i].PerFile > x.Ops[j].PerFile
			}
			return x.Ops[i].Op < x.Ops[j].Op
		})
		if out[k.job] == nil {
			out[k.job] = map[string]*reqStat{}
		}
		out[k.job][k.config] = x
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = append([]float64(nil), v...)
	sort.Float64s(v)
	if n := len(v); n%2 == 1 {
		return v[n/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func reqList(rq map[string]map[string]*reqStat, configs []string) []*reqStat {
	out := []*reqStat{}
	for _, j := range jobInfo {
		for _, c := range configs {
			if x := rq[j.Job][c]; x != nil {
				out = append(out, x)
			}
		}
	}
	return out
}

// perFile formats a number of requests per file.
func perFile(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 0.01:
		return "<0.01"
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// topOps lists the most frequent opcodes of x, "OPEN 0.90, GETATTR 0.90".
func topOps(x *reqStat, n int) string {
	var parts []string
	for _, o := range x.Ops {
		if len(parts) == n || o.PerFile < 0.005 {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %s", o.Op, perFile(o.PerFile)))
	}
	if len(parts) == 0 {
		return "–"
	}
	if rest := len(x.Ops) - len(parts); rest > 0 {
		parts = append(parts, fmt.Sprintf("%d more", rest))
	}
	return strings.Join(parts, ", ")
}

func writeRequests(w *bytes.Buffer, meta []metaKV, configs []string, rq map[string]map[string]*reqStat) {
	var counted []string
	for _, c := range configs {
		for _, j := range jobInfo {
			if rq[j.Job][c] != nil {
				counted = append(counted, c)
				break
			}
		}
	}
	if len(counted) == 0 {
		return
	}
	fmt.Fprintf(w, "\n## FUSE requests per file\n\nThe requests each cryptpt daemon answered during the counted run of each step (`requests` of `cryptpt status --json`, read right before and right after it), divided by the %s files of the tree; median over the repetitions. The time per request is the daemon's, from the request's arrival to its answer, averaged over all of them (the kernel's round trip comes on top). Native and gocryptfs have no such counters. A cold step starts with the caches dropped, so it pays the lookups the warm step may find cached; the warm step is the second run in a row.\n\n", metaGet(meta, "files"))
	w.WriteString("Requests per file (µs per request):\n\n| step |")
	for _, c := range counted {
		fmt.Fprintf(w, " %s |", c)
	}
	w.WriteString("\n|---|")
	for range counted {
		w.WriteString("---:|")
	}
	w.WriteString("\n")
	for _, j := range jobInfo {
		if rq[j.Job] == nil {
			continue
		}
		fmt.Fprintf(w, "| %s |", j.Job)
		for _, c := range counted {
			x := rq[j.Job][c]
			if x == nil {
				w.WriteString(" – |")
				continue
			}
			fmt.Fprintf(w, " %s (%.0f µs) |", perFile(x.PerFile), x.UsPerRequest)
		}
		w.WriteString("\n")
	}
	w.WriteString("\nThe most frequent requests, per file:\n\n| step | config | requests per file | µs per request | top requests per file |\n|---|---|---:|---:|---|\n")
	for _, j := range jobInfo {
		for _, c := range counted {
			x := rq[j.Job][c]
			if x == nil {
				continue
			}
			fmt.Fprintf(w, "| %s | %s | %s | %.0f | %s |\n", j.Job, c, perFile(x.PerFile), x.UsPerRequest, topOps(x, 4))
		}
	}
}
