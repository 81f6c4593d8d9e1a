// Command report is the helper of bench/run.sh: it reads fio's JSON output
// and turns the raw benchmark results into a markdown report, an SVG bar
// chart and a JSON file. It only reads the files it is given and writes the
// files it is told to; it never touches a mount.
//
//	report fio-bw FIO.json
//	report reqdiff REP JOB CONFIG BEFORE.json AFTER.json
//	report report --meta META.tsv --raw RAW.tsv [--requests REQ.tsv] --md OUT.md --svg OUT.svg --json OUT.json
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
)

// errUsage reports a command line that names no known subcommand.
var errUsage = errors.New("usage: report fio-bw FILE | report reqdiff REP JOB CONFIG BEFORE AFTER | report report --meta F --raw F [--requests F] --md F --svg F --json F")

// errNoJSON reports fio output that holds no JSON object.
var errNoJSON = errors.New("no JSON object in fio output")

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errUsage
	}
	switch args[0] {
	case "fio-bw":
		if len(args) != 2 {
			return errUsage
		}
		bw, err := fioBW(args[1])
		if err != nil {
			return err
		}
		fmt.Println(bw)
		return nil
	case "reqdiff":
		if len(args) != 6 {
			return errUsage
		}
		return reqDiff(os.Stdout, args[1], args[2], args[3], args[4], args[5])
	case "report":
		return report(args[1:])
	}
	return errUsage
}

// fioBW returns the bandwidth in KiB/s, read plus write, of all jobs in
// fio's --output-format=json output, which may follow warning lines.
func fioBW(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	i := bytes.IndexByte(data, '{')
	if i < 0 {
		return 0, fmt.Errorf("%s: %w", path, errNoJSON)
	}
	var out struct {
		Jobs []struct {
			Read  struct{ BW int64 } `json:"read"`
			Write struct{ BW int64 } `json:"write"`
		} `json:"jobs"`
	}
	if err := json.NewDecoder(bytes.NewReader(data[i:])).Decode(&out); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	var bw int64
	for _, j := range out.Jobs {
		bw += j.Read.BW + j.Write.BW
	}
	return bw, nil
}

// sample is one measurement.
type sample struct {
	Rep    int     `json:"rep"`
	Job    string  `json:"job"`
	Config string  `json:"config"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
}

// stat summarises the samples of one job in one configuration.
type stat struct {
	Job    string    `json:"job"`
	Config string    `json:"config"`
	Unit   string    `json:"unit"`
	Values []float64 `json:"values"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	// Speed relative to native and gocryptfs: above 1 is faster. For
	// throughputs it is the ratio of medians, for times its inverse.
	VsNative    *float64 `json:"speed_vs_native,omitempty"`
	VsGocryptfs *float64 `json:"speed_vs_gocryptfs,omitempty"`
}

type metaKV struct{ Key, Value string }

// jobInfo describes the rows of the report, in order.
var jobInfo = []struct{ Job, Desc string }{
	{"read-cold", "fio sequential read, caches dropped, file read at most once"},
	{"read-warm", "fio sequential read, file read once with cat, then the second of two time-based runs"},
	{"randread-cold", "fio random read, caches dropped, at most size/4k reads"},
	{"randread-warm", "fio random read, file read once with cat, then the second of two time-based runs"},
	{"write", "fio sequential overwrite, time-based, fsync on close"},
	{"randwrite", "fio random overwrite, time-based, fsync on close"},
	{"unpack", "untar the tree (a git checkout) and the module, then sync"},
	{"find-cold", "find . | wc -l in the tree, right after dropping the caches"},
	{"find-warm", "the same at once again (the second run in a row)"},
	{"ls-lR-cold", "ls -lR > /dev/null in the tree, right after dropping the caches"},
	{"ls-lR-warm", "the same at once again"},
	{"du-cold", "du -s . in the tree, right after dropping the caches"},
	{"du-warm", "the same at once again"},
	{"grep-r-cold", "grep -r in the tree for a string that is not there, right after dropping the caches"},
	{"grep-r-warm", "the same at once again"},
	{"git-status-cold", "git status in the tree, right after dropping the caches"},
	{"git-status-warm", "the same at once again"},
	{"build", "go build with an empty GOCACHE inside the mount"},
	{"rm-rf", "rm -rf everything, then sync"},
}

// configDesc says what each configuration is, for the report's prose.
var configDesc = map[string]string{
	"native":        "the directory itself",
	"cryptpt-pt":    "cryptpt, everything plaintext (policy `plaintext = [\"/**\"]`), kernel passthrough",
	"cryptpt-nopt":  "cryptpt, everything plaintext, `--no-passthrough --writeback=false`: plaintext through the daemon",
	"cryptpt-enc":   "cryptpt, everything encrypted (policy `plaintext = []`), `--writeback=false`",
	"cryptpt-encwb": "cryptpt, everything encrypted, with the kernel's writeback cache: the default for a policy without plaintext rules",
	"cryptpt-mixed": "cryptpt, a mixed mount (policy `plaintext = [\"plain/\"]`): passthrough is on, so the kernel refuses the writeback cache for the whole mount; the fio file and the tree are in the encrypted part",
	"gocryptfs":     "gocryptfs with its defaults",
}

var daemonJobs = []string{"daemon-peak-rss", "daemon-rss", "daemon-cpu"}

func report(args []string) error {
	fl := flag.NewFlagSet("report", flag.ContinueOnError)
	metaPath := fl.String("meta", "", "metadata TSV (key, value)")
	rawPath := fl.String("raw", "", "raw results TSV (rep, job, config, value, unit)")
	mdPath := fl.String("md", "", "markdown output")
	svgPath := fl.String("svg", "", "SVG output")
	jsonPath := fl.String("json", "", "JSON output")
	reqPath := fl.String("requests", "", "FUSE requests TSV (rep, job, config, op, count, total_us), optional")
	if err := fl.Parse(args); err != nil {
		return err
	}
	meta, err := readMeta(*metaPath)
	if err != nil {
		return err
	}
	samples, err := readRaw(*rawPath)
	if err != nil {
		return err
	}
	var reqs []reqSample
	if *reqPath != "" {
		if reqs, err = readReqs(*reqPath); err != nil {
			return err
		}
	}
	configs := strings.Fields(metaGet(meta, "configs"))
	stats := summarise(samples, configs)
	files, _ := strconv.Atoi(metaGet(meta, "files"))
	rq := summariseReqs(reqs, files)

	var md bytes.Buffer
	writeMarkdown(&md, meta, configs, stats, samples, rq, svgBase(*svgPath))
	if err := os.WriteFile(*mdPath, md.Bytes(), 0o644); err != nil {
		return err
	}
	var svg bytes.Buffer
	writeSVG(&svg, meta, configs, stats)
	if err := os.WriteFile(*svgPath, svg.Bytes(), 0o644); err != nil {
		return err
	}
	m := map[string]string{}
	for _, kv := range meta {
		m[kv.Key] = kv.Value
	}
	if reqs == nil {
		reqs = []reqSample{}
	}
	js, err := json.MarshalIndent(struct {
		Meta     map[string]string `json:"meta"`
		Stats    []*stat           `json:"stats"`
		Requests []*reqStat        `json:"requests_per_file"`
		Samples  []sample          `json:"samples"`
		ReqRaw   []reqSample       `json:"request_samples"`
	}{m, statList(stats, configs), reqList(rq, configs), samples, reqs}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(*jsonPath, append(js, '\n'), 0o644)
}

func svgBase(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

func readMeta(path string) ([]metaKV, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var kv []metaKV
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "\t")
		if ok {
			kv = append(kv, metaKV{k, v})
		}
	}
	return kv, sc.Err()
}

func metaGet(meta []metaKV, key string) string {
	for _, kv := range meta {
		if kv.Key == key {
			return kv.Value
		}
	}
	return ""
}

func readRaw(path string) ([]sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []sample
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		fs := strings.Split(sc.Text(), "\t")
		if len(fs) != 5 {
			return nil, fmt.Errorf("%s:%d: want 5 fields, got %d", path, n, len(fs))
		}
		rep, err1 := strconv.Atoi(fs[0])
		v, err2 := strconv.ParseFloat(fs[3], 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		out = append(out, sample{rep, fs[1], fs[2], v, fs[4]})
	}
	return out, sc.Err()
}

// summarise returns the statistics keyed by job, then configuration.
func summarise(samples []sample, configs []string) map[string]map[string]*stat {
	st := map[string]map[string]*stat{}
	for _, s := range samples {
		if st[s.Job] == nil {
			st[s.Job] = map[string]*stat{}
		}
		x := st[s.Job][s.Config]
		if x == nil {
			x = &stat{Job: s.Job, Config: s.Config, Unit: s.Unit}
			st[s.Job][s.Config] = x
		}
		x.Values = append(x.Values, s.Value)
	}
	for _, byConfig := range st {
		for _, x := range byConfig {
			v := append([]float64(nil), x.Values...)
			sort.Float64s(v)
			x.Min, x.Max = v[0], v[len(v)-1]
			x.Median = median(v)
		}
		for _, x := range byConfig {
			x.VsNative = speed(x, byConfig["native"])
			x.VsGocryptfs = speed(x, byConfig["gocryptfs"])
		}
	}
	return st
}

// speed is how many times faster x is than ref, or nil without a reference.
func speed(x, ref *stat) *float64 {
	if ref == nil || ref.Median == 0 || x.Median == 0 || strings.HasPrefix(x.Job, "daemon") {
		return nil
	}
	r := x.Median / ref.Median
	if x.Unit == "s" {
		r = ref.Median / x.Median
	}
	return &r
}

func statList(st map[string]map[string]*stat, configs []string) []*stat {
	var out []*stat
	jobs := make([]string, 0, len(jobInfo)+len(daemonJobs))
	for _, j := range jobInfo {
		jobs = append(jobs, j.Job)
	}
	jobs = append(jobs, daemonJobs...)
	for _, j := range jobs {
		for _, c := range configs {
			if x := st[j][c]; x != nil {
				out = append(out, x)
			}
		}
	}
	return out
}

func num(v float64, unit string) string {
	switch {
	case unit == "s" && v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case unit == "s":
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(math.Round(v), 'f', 0, 64)
}

func cell(x *stat) string {
	if x == nil {
		return "–"
	}
	if len(x.Values) == 1 {
		return num(x.Median, x.Unit)
	}
	return fmt.Sprintf("%s (%s–%s)", num(x.Median, x.Unit), num(x.Min, x.Unit), num(x.Max, x.Unit))
}

func ratio(r *float64) string {
	if r == nil {
		return "–"
	}
	return fmt.Sprintf("%.2f×", *r)
}

func writeMarkdown(w *bytes.Buffer, meta []metaKV, configs []string, st map[string]map[string]*stat, samples []sample, rq map[string]map[string]*reqStat, svg string) {
	fmt.Fprintf(w, "# cryptpt benchmark, %s on %s\n\n", metaGet(meta, "date"), metaGet(meta, "host"))
	w.WriteString("| | |\n|---|---|\n")
	for _, kv := range meta {
		// The mount lines go with the configurations, below.
		if kv.Key == "configs" || kv.Key == "drop_caches" || strings.HasPrefix(kv.Key, "mount ") {
			continue
		}
		fmt.Fprintf(w, "| %s | %s |\n", kv.Key, strings.ReplaceAll(kv.Value, "|", `\|`))
	}
	if metaGet(meta, "drop_caches") == "1" {
		w.WriteString("\n**Caches:** dropped (`sync; echo 3 > /proc/sys/vm/drop_caches`) right before every *-cold* row, so cold reads and cold metadata steps come from the disk. ")
	} else {
		w.WriteString("\n**Caches: NOT dropped** (not root), so the *-cold* rows are not cold. ")
	}
	w.WriteString("fio's warm rows: the whole file is read once with cat, then the job runs twice (time-based) and the second run counts. The metadata steps (find, ls -lR, du, grep -r, git status) run twice in a row in each configuration: the first right after dropping the caches (*-cold*), the second (*-warm*) with everything the first one cached. unpack, build and rm-rf run once. Each small-files step runs across all configurations before the next step.\n\n")
	w.WriteString("Configurations, all on the same disk:\n\n")
	for _, c := range configs {
		d := configDesc[c]
		if d == "" {
			d = "(not described)"
		}
		if m := metaGet(meta, "mount "+c); m != "" {
			d += "; as mounted: " + m
		}
		fmt.Fprintf(w, "- **%s**: %s\n", c, d)
	}
	w.WriteString("\nEvery mount lives for the whole run. The configurations are interleaved: for each repetition, for each job, every configuration in turn, the order rotated each repetition.\n\n")
	writeTargets(w, configs, st)
	fmt.Fprintf(w, "![speed relative to native](%s)\n\n", svg)

	w.WriteString("## Speed relative to native (median; above 1 is faster than native)\n\n| job |")
	for _, c := range configs {
		fmt.Fprintf(w, " %s |", c)
	}
	w.WriteString("\n|---|")
	for range configs {
		w.WriteString("---:|")
	}
	w.WriteString("\n")
	for _, j := range jobInfo {
		if st[j.Job] == nil {
			continue
		}
		fmt.Fprintf(w, "| %s |", j.Job)
		for _, c := range configs {
			x := st[j.Job][c]
			if x == nil {
				w.WriteString(" – |")
				continue
			}
			fmt.Fprintf(w, " %s |", ratio(x.VsNative))
		}
		w.WriteString("\n")
	}

	fmt.Fprintf(w, "\n## Results: median (min–max) of %s repetitions\n\n", metaGet(meta, "reps"))
	w.WriteString("Throughput in KiB/s (higher is better), times in seconds (lower is better). The speed columns are ratios of medians turned so that above 1 means faster: for KiB/s config/reference, for seconds reference/config.\n\n")
	w.WriteString("| job | config | result | unit | speed vs native | speed vs gocryptfs |\n|---|---|---:|---|---:|---:|\n")
	for _, j := range jobInfo {
		for _, c := range configs {
			x := st[j.Job][c]
			if x == nil {
				continue
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", j.Job, c, cell(x), x.Unit, ratio(x.VsNative), ratio(x.VsGocryptfs))
		}
	}
	w.WriteString("\nJobs:\n\n")
	for _, j := range jobInfo {
		fmt.Fprintf(w, "- **%s**: %s\n", j.Job, j.Desc)
	}

	writeRequests(w, meta, configs, rq)

	w.WriteString("\n## Daemons\n\nEach daemon serves one mount for the whole run. Peak RSS is VmHWM and RSS is VmRSS from /proc/PID/status, read after each repetition (the last one just before unmount); CPU is utime+stime from /proc/PID/stat spent during each repetition.\n\n")
	w.WriteString("| config | peak RSS KiB, end | RSS KiB per repetition | CPU s per repetition, median (min–max) | CPU s total |\n|---|---:|---|---:|---:|\n")
	for _, c := range configs {
		peak, cpu := st["daemon-peak-rss"][c], st["daemon-cpu"][c]
		if peak == nil {
			continue
		}
		var total float64
		for _, v := range cpu.Values {
			total += v
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %.1f |\n", c, num(peak.Max, "KiB"), perRep(samples, "daemon-rss", c), cell(cpu), total)
	}
	w.WriteString("\n" + rssGrowth(samples, configs))
}

func perRep(samples []sample, job, config string) string {
	var parts []string
	for _, s := range samples {
		if s.Job == job && s.Config == config {
			parts = append(parts, num(s.Value, s.Unit))
		}
	}
	return strings.Join(parts, " → ")
}

// rssGrowth says which daemons' RSS grew at every repetition.
func rssGrowth(samples []sample, configs []string) string {
	var grew, flat []string
	for _, c := range configs {
		var v []float64
		for _, s := range samples {
			if s.Job == "daemon-rss" && s.Config == c {
				v = append(v, s.Value)
			}
		}
		if len(v) < 2 {
			continue
		}
		up := true
		for i := 1; i < len(v); i++ {
			if v[i] <= v[i-1]*1.05 {
				up = false
			}
		}
		if up {
			grew = append(grew, fmt.Sprintf("%s (%s → %s KiB)", c, num(v[0], "KiB"), num(v[len(v)-1], "KiB")))
		} else {
			flat = append(flat, c)
		}
	}
	switch {
	case len(grew) == 0 && len(flat) == 0:
		return "RSS growth across repetitions: one repetition only, not assessed.\n"
	case len(grew) == 0:
		return "RSS growth across repetitions: none (no daemon grew by more than 5% at every repetition).\n"
	}
	return "RSS growth across repetitions: **grew by more than 5% at every repetition:** " + strings.Join(grew, ", ") + ".\n"
}

var colors = map[string]string{
	"native":        "#888888",
	"cryptpt-pt":    "#1b9e77",
	"cryptpt-nopt":  "#7570b3",
	"cryptpt-enc":   "#d95f02",
	"cryptpt-encwb": "#e6ab02",
	"cryptpt-mixed": "#66a61e",
	"gocryptfs":     "#e7298a",
}

// writeSVG draws, per job, one horizontal bar per configuration with its
// speed relative to native, and a line at 1 (native).
func writeSVG(w *bytes.Buffer, meta []metaKV, configs []string, st map[string]map[string]*stat) {
	var shown []string
	for _, c := range configs {
		if c != "native" {
			shown = append(shown, c)
		}
	}
	var jobs []string
	maxR := 1.25
	for _, j := range jobInfo {
		if st[j.Job] == nil {
			continue
		}
		jobs = append(jobs, j.Job)
		for _, c := range shown {
			if x := st[j.Job][c]; x != nil && x.VsNative != nil && *x.VsNative > maxR {
				maxR = *x.VsNative
			}
		}
	}
	maxR = math.Min(math.Ceil(maxR*4)/4, 3)
	const (
		left, right, top = 120.0, 60.0, 70.0
		barH, gap        = 13.0, 12.0
		plotW            = 560.0
	)
	groupH := barH*float64(len(shown)) + gap
	height := top + groupH*float64(len(jobs)) + 40
	width := left + plotW + right
	x := func(r float64) float64 { return left + plotW*math.Min(r, maxR)/maxR }

	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`+"\n", width, height)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(w, `<text x="10" y="18" font-size="14" font-weight="bold">Speed relative to native (median of %s; &gt;1 = faster than native)</text>`+"\n", html.EscapeString(metaGet(meta, "reps")))
	caches := "caches dropped for the cold rows"
	if metaGet(meta, "drop_caches") != "1" {
		caches = "caches NOT dropped"
	}
	fmt.Fprintf(w, `<text x="10" y="34" fill="#444">%s, fio %s file, %s; %s files; %s</text>`+"\n",
		html.EscapeString(metaGet(meta, "host")), html.EscapeString(metaGet(meta, "size")), html.EscapeString(metaGet(meta, "runtime")), html.EscapeString(metaGet(meta, "files")), caches)
	lx := 10.0
	for _, c := range shown {
		fmt.Fprintf(w, `<rect x="%.0f" y="44" width="12" height="12" fill="%s"/><text x="%.0f" y="54">%s</text>`+"\n", lx, colors[c], lx+16, c)
		lx += 30 + 7*float64(len(c))
	}
	// Grid.
	bottom := top + groupH*float64(len(jobs)) - gap/2
	for t := 0.0; t <= maxR+1e-9; t += 0.25 {
		stroke, sw := "#e0e0e0", 1.0
		if math.Abs(t-1) < 1e-9 {
			stroke, sw = "#333", 1.5
		}
		fmt.Fprintf(w, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="%s" stroke-width="%.1f"/>`+"\n", x(t), top-6, x(t), bottom, stroke, sw)
		if math.Mod(t, 0.5) < 1e-9 {
			fmt.Fprintf(w, `<text x="%.1f" y="%.0f" text-anchor="middle" fill="#444">%g</text>`+"\n", x(t), bottom+14, t)
		}
	}
	fmt.Fprintf(w, `<text x="%.1f" y="%.0f" text-anchor="middle" fill="#444">× native (1 = native)</text>`+"\n", left+plotW/2, bottom+30)
	for i, j := range jobs {
		y0 := top + groupH*float64(i)
		fmt.Fprintf(w, `<text x="%.0f" y="%.1f" text-anchor="end" font-weight="bold">%s</text>`+"\n", left-8, y0+groupH/2-gap/2+4, j)
		if i%2 == 1 {
			fmt.Fprintf(w, `<rect x="0" y="%.1f" width="%.0f" height="%.1f" fill="#000" fill-opacity="0.035"/>`+"\n", y0-gap/2, width, groupH)
		}
		for k, c := range shown {
			xs := st[j][c]
			if xs == nil || xs.VsNative == nil {
				continue
			}
			r := *xs.VsNative
			y := y0 + barH*float64(k)
			fmt.Fprintf(w, `<rect x="%.0f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %.2f× native (%s %s)</title></rect>`+"\n",
				left, y, math.Max(x(r)-left, 1), barH-2, colors[c], j, c, r, cell(xs), xs.Unit)
			label := fmt.Sprintf("%.2f", r)
			if r > maxR {
				label += " ▶"
			}
			fmt.Fprintf(w, `<text x="%.1f" y="%.1f" font-size="10">%s</text>`+"\n", x(r)+3, y+barH-4, label)
		}
	}
	w.WriteString("</svg>\n")
}
