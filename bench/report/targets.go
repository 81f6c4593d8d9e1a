package main

import (
	"bytes"
	"fmt"
	"strings"
)

// target is a goal from the open issues that one run can check: every job
// in Jobs at no less than Min times the speed of Ref.
type target struct {
	Issue string
	What  string
	Jobs  []string
	Ref   string
	Min   float64
}

var targets = []target{
	{"14", "warm find, ls -lR, du, grep -r, git status ≥ 0.5× native", []string{"find-warm", "ls-lR-warm", "du-warm", "grep-r-warm", "git-status-warm"}, "native", 0.5},
	{"14", "cold find, ls -lR, du, grep -r, git status ≥ 2× gocryptfs", []string{"find-cold", "ls-lR-cold", "du-cold", "grep-r-cold", "git-status-cold"}, "gocryptfs", 2},
	{"14", "unpack and rm -rf ≥ 1.5× gocryptfs", []string{"unpack", "rm-rf"}, "gocryptfs", 1.5},
	{"13", "fio write and randwrite ≥ 0.3× native", []string{"write", "randwrite"}, "native", 0.3},
}

// worst returns the lowest speed of config against ref over jobs, and the
// job it belongs to; ok is false when a job or the reference is missing.
func worst(st map[string]map[string]*stat, config string, t target) (r float64, job string, ok bool) {
	for _, j := range t.Jobs {
		x := st[j][config]
		if x == nil {
			return 0, "", false
		}
		v := x.VsNative
		if t.Ref == "gocryptfs" {
			v = x.VsGocryptfs
		}
		if v == nil {
			return 0, "", false
		}
		if job == "" || *v < r {
			r, job = *v, j
		}
	}
	return r, job, job != ""
}

// writeTargets writes, for each cryptpt configuration, the worst speed of
// each target's jobs and whether it meets the target.
func writeTargets(w *bytes.Buffer, configs []string, st map[string]map[string]*stat) {
	var shown []string
	for _, c := range configs {
		if strings.HasPrefix(c, "cryptpt-") {
			shown = append(shown, c)
		}
	}
	if len(shown) == 0 {
		return
	}
	w.WriteString("## Targets of issues 13 and 14\n\nEach cell is the lowest speed ratio (median) among the target's jobs, the job it belongs to, and whether it meets the target. Issue 14 asks for its targets in the all-plaintext mode with passthrough (cryptpt-pt) and the all-encrypted mode (cryptpt-encwb is its default, cryptpt-enc the same without the writeback cache); issue 13 asks for its target in the mixed mount (cryptpt-mixed). The other cells are for comparison.\n\n| issue | target |")
	for _, c := range shown {
		fmt.Fprintf(w, " %s |", c)
	}
	w.WriteString("\n|---|---|")
	for range shown {
		w.WriteString("---|")
	}
	w.WriteString("\n")
	for _, t := range targets {
		fmt.Fprintf(w, "| %s | %s |", t.Issue, t.What)
		for _, c := range shown {
			r, job, ok := worst(st, c, t)
			if !ok {
				w.WriteString(" – |")
				continue
			}
			mark := "missed"
			if r >= t.Min {
				mark = "**met**"
			}
			fmt.Fprintf(w, " %.2f× %s, %s |", r, job, mark)
		}
		w.WriteString("\n")
	}
	w.WriteString("\n")
}
