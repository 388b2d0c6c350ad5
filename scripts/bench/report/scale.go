package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"github.com/bulkpipe/bulkpipe/pkg/tool"
)

// The scale targets of issue 14, printed beside the numbers (never asserted).
const (
	trendMax     = 1.25 // etl-load s/GB at the largest size ÷ s/GB at the smallest
	incMax       = 1.5  // s/GB of the incremental load ÷ s/GB of the same size into a new DB
	speedMin     = 1.0  // the tool's speed ÷ its baseline's
	loadRSSSlack = 256 << 20
	mergeSlack   = 64 << 20
	// A download holds two descriptors, its socket and its .part, so bulk-fetch may hold
	// 2 × --parallel + fdSlack: what it holds whatever the downloads is 12 (stdio; the runtime's
	// poller, its wake-up eventfd and two cgroup files it rereads for GOMAXPROCS; the manifest, the
	// folder's lock, the log, the state journal and the folder it syncs), the rest is room for a
	// socket closing while the next one opens.
	fdSlack = 16
)

// The step names scripts/bench/scale.sh writes: "load N GB" into a new database and
// "load N GB onto M GB" onto the largest one; incLabel tells them apart.
const incLabel = " onto "

// scale renders one part (fetch, load, merge or lake) of make bench-scale: a table of every measured
// command, then the issue's targets with their numbers, and rewrites that part's block of -md.
func scale(args []string) error {
	fs := flag.NewFlagSet("scale", flag.ExitOnError)
	part := fs.String("part", "", "fetch, load, merge or lake")
	results := fs.String("results", "", "results file of report run")
	metaPath := fs.String("meta", "", "KEY=VALUE file written by scale.sh")
	md := fs.String("md", "", "Markdown report whose bench-scale block of -part to rewrite")
	fs.Parse(args)
	switch *part {
	case "fetch", "load", "merge", "lake":
	default:
		return errors.New("scale: -part fetch, load, merge or lake is required")
	}
	recs, err := readRecords(*results)
	if err != nil {
		return err
	}
	meta := map[string]string{}
	if *metaPath != "" {
		if meta, err = readMeta(*metaPath); err != nil {
			return err
		}
	}
	header, cells := scaleHeader, scaleCells
	if *part == "lake" {
		header, cells = lakeHeader, lakeCells
	}
	var rows [][]string
	for _, r := range recs {
		rows = append(rows, cells(r))
	}
	var targets []string
	switch *part {
	case "fetch":
		targets = fetchTargets(recs, meta)
	case "load":
		targets = loadTargets(recs)
	case "merge":
		targets = mergeTargets(recs)
	case "lake":
		targets = lakeTargets(recs)
	}
	printPlain(os.Stdout, header, rows)
	for _, t := range targets {
		fmt.Println("- " + strings.ReplaceAll(t, "**", ""))
	}
	if *md == "" {
		return nil
	}
	return rewriteBlock(*md, scaleMarks(*part), scaleMarkdown(*part, recs, rows, targets, meta))
}

func readRecords(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var recs []Record
	dec := json.NewDecoder(f)
	for {
		var r Record
		if err := dec.Decode(&r); err == io.EOF {
			return recs, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		recs = append(recs, r)
	}
}

var scaleHeader = []string{"step", "contestant", "GB", "wall s", "MB/s", "s/GB", "peak RSS MiB", "memory limit", "fds", "load 1 min (start → end)"}

func gb(r Record) float64 { return float64(r.Bytes) / 1e9 }

// secPerGB is wall seconds per 10^9 input bytes; 0 without input.
func secPerGB(r Record) float64 {
	if r.Bytes == 0 {
		return 0
	}
	return r.Wall / gb(r)
}

func scaleCells(r Record) []string {
	name := r.Name
	if r.Exit != 0 {
		name += fmt.Sprintf(" (exit %d)", r.Exit)
	}
	mbs, spg := "—", "—"
	if r.Bytes > 0 && r.Wall > 0 {
		mbs = fmt.Sprintf("%.1f", float64(r.Bytes)/1e6/r.Wall)
		spg = fmt.Sprintf("%.1f", secPerGB(r))
	}
	limit, fds := "—", "—"
	if r.Limit != "" {
		limit = r.Limit
	}
	if r.FDs > 0 {
		fds = strconv.Itoa(r.FDs)
	}
	return []string{r.Step, name, fmt.Sprintf("%.3f", gb(r)), fmt.Sprintf("%.1f", r.Wall), mbs, spg,
		fmt.Sprintf("%.0f", float64(r.RSS)/1024), limit, fds, fmt.Sprintf("%.2f → %.2f", r.Load1Start, r.Load1)}
}

// pair finds the tool's and the baseline's (role limit) record of one step.
func pair(recs []Record, step string) (tool, base *Record) {
	for i := range recs {
		if recs[i].Step != step {
			continue
		}
		switch recs[i].Role {
		case "tool":
			tool = &recs[i]
		case "limit":
			base = &recs[i]
		}
	}
	return tool, base
}

// steps lists the step names in the order they were run.
func steps(recs []Record) []string {
	var out []string
	for _, r := range recs {
		if len(out) == 0 || out[len(out)-1] != r.Step {
			out = append(out, r.Step)
		}
	}
	return out
}

// speedTarget compares the tool with its baseline on the same bytes: their speed ratio is the
// baseline's wall time over the tool's.
func speedTarget(step string, t, b *Record) string {
	if t.Exit == 0 && b.Exit != 0 {
		return fmt.Sprintf("%s: %s ≥ %.1f× %s's speed: **%s failed** (exit %d after %.1f s) where %s finished in %.1f s",
			step, t.Name, speedMin, b.Name, b.Name, b.Exit, b.Wall, t.Name, t.Wall)
	}
	if t.Exit != 0 || b.Exit != 0 {
		return fmt.Sprintf("%s: %s ≥ %.1f× %s's speed: **not measured** (exit %d and %d)", step, t.Name, speedMin, b.Name, t.Exit, b.Exit)
	}
	ratio := b.Wall / t.Wall
	return fmt.Sprintf("%s: %s ≥ %.1f× %s's speed: %.2f× (%.1f s vs %.1f s) — %s", step, t.Name, speedMin, b.Name,
		ratio, t.Wall, b.Wall, metVerdict(ratio >= speedMin))
}

// rssTarget compares the tool's peak RSS with its memory limit plus slack.
func rssTarget(step string, t *Record, slack int64) string {
	limit, err := tool.ParseSize(t.Limit)
	if err != nil || limit == 0 {
		return fmt.Sprintf("%s: %s peak RSS ≤ limit + %d MiB: **not measured** (no memory limit given)", step, t.Name, slack>>20)
	}
	rss := t.RSS * 1024
	return fmt.Sprintf("%s: %s peak RSS ≤ %s + %d MiB = %.0f MiB: %.0f MiB (%+.0f MiB) — %s", step, t.Name, t.Limit, slack>>20,
		float64(limit+slack)/(1<<20), float64(rss)/(1<<20), float64(rss-limit-slack)/(1<<20), metVerdict(rss <= limit+slack))
}

func metVerdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

// loadTargets: s/GB at the largest size against the smallest, the incremental load against the
// same size into a new database, and at every size the speed against sqlload and RSS against
// the limit.
func loadTargets(recs []Record) []string {
	var fresh []Record
	var inc *Record
	var out, failed []string
	for _, s := range steps(recs) {
		t, b := pair(recs, s)
		if t == nil || b == nil {
			continue
		}
		switch {
		case strings.Contains(s, incLabel):
			inc = t
		case t.Exit == 0:
			fresh = append(fresh, *t)
		default:
			failed = append(failed, s)
		}
		out = append(out, speedTarget(s, t, b), rssTarget(s, t, loadRSSSlack))
		if _, onto, ok := strings.Cut(s, incLabel); ok {
			// The baseline's database holds the larger load only if that load succeeded.
			if _, lb := pair(recs, "load "+onto); lb != nil && lb.Exit != 0 {
				out = append(out, fmt.Sprintf("%s: %s's database was empty, not %s: its %s load had failed, so its time here is not an incremental load's",
					s, b.Name, onto, onto))
			}
		}
	}
	sort.Slice(fresh, func(i, j int) bool { return fresh[i].Bytes < fresh[j].Bytes })
	var head []string
	if len(failed) > 0 {
		head = append(head, fmt.Sprintf("etl-load s/GB at the largest size ≤ %.2f × s/GB at the smallest: **not measured** (etl-load failed: %s)",
			trendMax, strings.Join(failed, ", ")))
	} else if len(fresh) >= 2 {
		small, large := fresh[0], fresh[len(fresh)-1]
		ratio := secPerGB(large) / secPerGB(small)
		head = append(head, fmt.Sprintf("etl-load s/GB at %.3g GB ≤ %.2f × s/GB at %.3g GB: %.1f vs %.1f s/GB, %.2f× — %s",
			gb(large), trendMax, gb(small), secPerGB(large), secPerGB(small), ratio, metVerdict(ratio <= trendMax)))
	}
	if inc != nil && len(fresh) > 0 {
		small := fresh[0]
		if inc.Exit != 0 {
			head = append(head, fmt.Sprintf("%s ≤ %.1f × into a new database: **not measured** (exit %d)", inc.Step, incMax, inc.Exit))
		} else {
			// Per GB, as the incremental folder is a new export of the smallest size, not its bytes.
			ratio := secPerGB(*inc) / secPerGB(small)
			head = append(head, fmt.Sprintf("etl-load %s ≤ %.1f × %.3g GB into a new database: %.1f s (%.1f s/GB) vs %.1f s (%.1f s/GB), %.2f× — %s",
				inc.Step, incMax, gb(small), inc.Wall, secPerGB(*inc), small.Wall, secPerGB(small), ratio, metVerdict(ratio <= incMax)))
		}
	}
	return append(head, out...)
}

// mergeTargets: at every size ndjson-merge's speed against sort -u's and its RSS against --mem.
func mergeTargets(recs []Record) []string {
	var out []string
	for _, s := range steps(recs) {
		t, b := pair(recs, s)
		if t == nil || b == nil {
			continue
		}
		out = append(out, speedTarget(s, t, b), rssTarget(s, t, mergeSlack))
	}
	return out
}

// fetchTargets: bulk-fetch got every file of the manifest under the descriptor limit, holding
// at most 2 × --parallel + fdSlack descriptors; its speed beside curl's is reported, not a target.
func fetchTargets(recs []Record, meta map[string]string) []string {
	var out []string
	parallel, _ := strconv.Atoi(meta["parallel"])
	for _, s := range steps(recs) {
		t, b := pair(recs, s)
		if t == nil {
			continue
		}
		ok := t.Exit == 0 && strconv.FormatInt(t.Items, 10) == meta["export_files"]
		out = append(out, fmt.Sprintf("%s: %s completes %s files under ulimit -n %s: exit %d, %d files fetched — %s",
			s, t.Name, meta["export_files"], meta["nofile"], t.Exit, t.Items, metVerdict(ok)))
		out = append(out, fmt.Sprintf("%s: %s descriptors ≤ 2 × --parallel %d + %d: %d — %s",
			s, t.Name, parallel, fdSlack, t.FDs, metVerdict(t.FDs > 0 && t.FDs <= 2*parallel+fdSlack)))
		if b != nil && b.Wall > 0 && t.Wall > 0 {
			out = append(out, fmt.Sprintf("%s: %s's speed ÷ %s's: %.2f× (%.0f vs %.0f files/s; reported, no target)",
				s, t.Name, b.Name, b.Wall/t.Wall, float64(t.Items)/t.Wall, float64(b.Items)/b.Wall))
		}
	}
	return out
}

func printPlain(w io.Writer, head []string, rows [][]string) {
	width := make([]int, len(head))
	for _, r := range append([][]string{head}, rows...) {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	for _, r := range append([][]string{head}, rows...) {
		var b strings.Builder
		for i, c := range r {
			b.WriteString(c + strings.Repeat(" ", width[i]-len([]rune(c))) + "  ")
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// partSettings describes what a part measured, from scale.sh's meta.
func partSettings(part string, get func(string) string) string {
	switch part {
	case "fetch":
		return fmt.Sprintf("- Fetch: a manifest of %s one-line files (bulk-testserver --patients %s --file-lines 1), "+
			"downloaded by bulk-fetch --parallel %s and by xargs -P %s curl (100 URLs per curl) on the same URLs, each under "+
			"ulimit -n %s into a new folder.\n",
			get("export_files"), get("patients"), get("parallel"), get("parallel"), get("nofile"))
	case "load":
		return fmt.Sprintf("- Load: for each of SCALE_SIZES=%q GB an export from bulk-testserver (about 7000 patients per GB, files of at most "+
			"100000 lines) into a new DuckDB file, then a new export of the smallest size onto the largest one's database; "+
			"etl-load --memory-limit %s and sqlload -memory-limit %s (DuckDB SQL doing the same load), sqlload first.\n",
			get("sizes"), get("mem"), get("mem"))
	case "lake":
		return fmt.Sprintf("- Lake: an export of SCALE_LAKE_BASE_GB=%s GB from bulk-testserver (about 7000 patients per GB) appended by "+
			"etl-load --lake to a new lake (the base); then a new export of SCALE_LAKE_GB=%s GB (the same seeded patients, a later "+
			"export time) appended to a new, empty lake and then onto the base, in turn, %s times (the fastest of each counts); "+
			"etl-load --memory-limit %s. Written: what each run "+
			"wrote to storage, staging database included (rusage ru_oublock × 512, Linux's write_bytes less what was deleted before "+
			"writeback); lake growth: the size of the lake's files after the run less before.\n",
			get("lake_base_gb"), get("lake_gb"), get("lake_rounds"), get("mem"))
	default:
		return fmt.Sprintf("- Merge: for each of SCALE_MERGE_SIZES=%q GB, Observations in 10 slice folders with 20%% of the lines copies "+
			"of other slices' lines (scripts/bench/benchtool gen); LC_ALL=C sort -u -S %s and ndjson-merge --mem %s of the same files.\n",
			get("merge_sizes"), get("sort_mem"), get("merge_mem"))
	}
}

func scaleMarkdown(part string, recs []Record, rows [][]string, targets []string, meta map[string]string) string {
	var b bytes.Buffer
	get := func(k string) string {
		if v := meta[k]; v != "" {
			return v
		}
		return "?"
	}
	runs, issue := "one run of each command", "issue 14"
	if part == "lake" {
		runs, issue = "one row per run", "issue 16"
	}
	fmt.Fprintf(&b, "Generated by `make bench-scale` (scripts/bench/scale.sh, part %s) on %s; %s.\n\n", part, get("date_"+part), runs)
	fmt.Fprintf(&b, "- Machine: %d cores (%s), %s RAM, Linux %s, %s; shared with other work while this ran.\n",
		runtime.NumCPU(), cpuModel(), memTotal(), strings.TrimSpace(readString("/proc/sys/kernel/osrelease")), get("go"))
	fmt.Fprintf(&b, "- Load average (1, 5, 15 min) before the part: %s; after it: %s. Each row gives the 1-minute load "+
		"when its command started and ended; above %d, other processes were competing for the cores.\n",
		get("load_before_"+part), get("load_after_"+part), runtime.NumCPU())
	b.WriteString(partSettings(part, get))
	if n := meta["prep_"+part]; n != "" {
		fmt.Fprintf(&b, "- Preparation (not timed in the table): %s.\n", n)
	}
	if n := meta["incomplete_"+part]; n != "" {
		// Written by hand into the meta file when a run had to be cut short and rendered from
		// the results it had.
		fmt.Fprintf(&b, "- **Incomplete run**: %s.\n", n)
	}
	if part == "lake" {
		b.WriteString("\n| " + strings.Join(lakeHeader, " | ") + " |\n" + lakeAlign)
	} else {
		b.WriteString("\n| " + strings.Join(scaleHeader, " | ") + " |\n|---|---|")
		b.WriteString(strings.Repeat("---:|", 5) + "---|---:|---|\n")
	}
	for _, r := range rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	fmt.Fprintf(&b, "\nTargets (%s):\n\n", issue)
	for _, t := range targets {
		b.WriteString("- " + t + "\n")
	}
	var notes []string
	for _, r := range recs {
		if r.Note != "" && r.Exit != 0 {
			notes = append(notes, fmt.Sprintf("- %s, %s (exit %d): `%s`\n", r.Step, r.Name, r.Exit, r.Note))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\nErrors:\n\n" + strings.Join(notes, ""))
	}
	b.WriteString("\nCommands (`$WORK` is the run's temporary folder):\n\n```\n")
	for _, r := range recs {
		cmd := r.Cmd
		if r.Show != "" {
			cmd = r.Show
		}
		if root := meta["root"]; root != "" {
			cmd = strings.ReplaceAll(cmd, root+"/", "")
		}
		if w := meta["work"]; w != "" {
			cmd = strings.ReplaceAll(cmd, w, "$WORK")
		}
		fmt.Fprintf(&b, "%-22s %s\n", r.Step+":", cmd)
	}
	b.WriteString("```\n")
	return b.String()
}
