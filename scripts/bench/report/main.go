// Command report is the measuring and reporting half of `make bench` (scripts/bench/run.sh,
// issue 8). It keeps the shell script free of arithmetic and of timer quirks:
//
//	report run -o RESULTS -step S -name N -role tool|limit|ref -bytes B [-items K] [target] [-show TEXT] -- CMD [ARG...]
//	report curlcfg -base URL -dir DIR FILE...
//	report table -results RESULTS -meta META [-md DOC]
//	report scale -part fetch|load|merge -results RESULTS -meta META [-md DOC]
//
// "run" times one command and appends a JSON line to RESULTS: wall seconds, user and system
// CPU seconds and peak RSS, all from the rusage wait4(2) returns for the child (so a shell
// pipeline's CPU includes every process it waited for, and its peak RSS is that of its largest
// single process), plus the 1-minute load average when it ended (the machine may be shared).
// "curlcfg" writes curl config files fetching the attachments ndjson-inline would inline, so both
// download the same URLs. "table" keeps the best (shortest) round of each contestant, prints the
// table and rewrites the generated block of the Markdown report. Nothing here judges: targets are
// printed beside the numbers, never asserted (issue 8: no timing assertions).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/fhirjson"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: report run|curlcfg|table|scale [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runCmd(os.Args[2:])
	case "curlcfg":
		err = curlcfg(os.Args[2:])
	case "table":
		err = table(os.Args[2:])
	case "scale":
		err = scale(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			os.Exit(exit.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

// Record is one measured command: a line of the results file.
type Record struct {
	Step  string  `json:"step"`  // the comparison it belongs to, such as "fetch"
	Name  string  `json:"name"`  // the contestant, such as "curl -o + sync"
	Role  string  `json:"role"`  // tool (ours), limit (its physical limit) or ref (a sanity reference)
	Bytes int64   `json:"bytes"` // input bytes both contestants of the step process
	Items int64   `json:"items,omitempty"`
	Unit  string  `json:"unit,omitempty"` // what Items counts, such as "attachments"
	Wall  float64 `json:"wall"`
	User  float64 `json:"user"`
	Sys   float64 `json:"sys"`
	RSS   int64   `json:"rssKiB"`
	Load1 float64 `json:"load1"`
	// Load1Start is the 1-minute load average when the command started (make bench-scale).
	Load1Start float64 `json:"load1Start,omitempty"`
	FDs        int     `json:"fds,omitempty"` // the most descriptors the command held (sampled)
	// Written is what the command wrote to storage (Linux: rusage ru_oublock × 512, the task I/O
	// accounting's write_bytes less what it deleted before writeback); 0 where unknown.
	Written int64 `json:"writtenBytes,omitempty"`
	// Grown is how much the files under -grow DIR grew over the run (make bench-scale, lake).
	Grown int64  `json:"grownBytes,omitempty"`
	Limit string `json:"limit,omitempty"` // the memory limit the command was given, such as 2GiB
	// Targets, from the tool's issue, printed beside the numbers (never asserted).
	TargetRatio  float64 `json:"targetRatio,omitempty"`  // tool: speed ÷ the step's first limit's speed
	TargetMBs    float64 `json:"targetMBs,omitempty"`    // tool: MB/s
	TargetFaster float64 `json:"targetFaster,omitempty"` // ref: its speed ÷ the tool's speed
	Note         string  `json:"note,omitempty"`
	Cmd          string  `json:"cmd"`
	Show         string  `json:"show,omitempty"` // the command as the report prints it, when Cmd is unreadable
	Exit         int     `json:"exit"`
}

func runCmd(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	var r Record
	out := fs.String("o", "", "results file (appended)")
	fs.StringVar(&r.Step, "step", "", "step")
	fs.StringVar(&r.Name, "name", "", "contestant")
	fs.StringVar(&r.Role, "role", "tool", "tool, limit or ref (bench-scale's lake part: base, new or onto)")
	fs.Int64Var(&r.Bytes, "bytes", 0, "input bytes")
	fs.Int64Var(&r.Items, "items", 0, "items processed (attachments)")
	fs.StringVar(&r.Unit, "unit", "", "what -items counts")
	fs.Float64Var(&r.TargetRatio, "target-ratio", 0, "target speed ratio to the first limit")
	fs.Float64Var(&r.TargetMBs, "target-mbs", 0, "target MB/s")
	fs.Float64Var(&r.TargetFaster, "target-faster", 0, "for a ref: how many times faster than the tool it must be")
	fs.StringVar(&r.Note, "note", "", "free text shown under the table")
	fs.StringVar(&r.Show, "show", "", "the command as the report should print it (default: the command run)")
	fs.StringVar(&r.Limit, "limit", "", "the memory limit given to the command (reported beside its peak RSS)")
	noteFile := fs.String("note-file", "", "read the note from the last line of this file after the run")
	errFile := fs.String("error-file", "", "if the command fails, read the note from the first line of this file (its stderr)")
	grow := fs.String("grow", "", "record how much the files under this folder grow over the run")
	fs.Parse(args)
	if *out == "" || r.Step == "" || r.Name == "" || fs.NArg() == 0 {
		return errors.New("run: -o, -step, -name and a command are required")
	}
	r.Cmd = strings.Join(fs.Args(), " ")
	cmd := exec.Command(fs.Arg(0), fs.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	r.Load1Start = load1()
	var before int64
	var err error
	if *grow != "" {
		if before, err = dirBytes(*grow); err != nil {
			return err
		}
	}
	start := time.Now()
	err = cmd.Run()
	r.Wall = time.Since(start).Seconds()
	if cmd.ProcessState == nil {
		return err
	}
	if *grow != "" {
		after, derr := dirBytes(*grow)
		if derr != nil {
			return derr
		}
		r.Grown = after - before
	}
	r.Written = written(cmd.ProcessState)
	r.Exit = cmd.ProcessState.ExitCode()
	r.User = cmd.ProcessState.UserTime().Seconds()
	r.Sys = cmd.ProcessState.SystemTime().Seconds()
	r.RSS = maxRSS(cmd.ProcessState)
	r.Load1 = load1()
	readNote(&r, *noteFile, *errFile)
	line, jerr := json.Marshal(r)
	if jerr != nil {
		return jerr
	}
	f, ferr := os.OpenFile(*out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o666)
	if ferr != nil {
		return ferr
	}
	if _, ferr = f.Write(append(line, '\n')); ferr != nil {
		f.Close()
		return ferr
	}
	if ferr = f.Close(); ferr != nil {
		return ferr
	}
	return err // the command's exit status becomes ours
}

// readNote sets r's note from the last line of noteFile, or, when the command failed, from the
// first line of errFile (its stderr); an empty name or a missing file leaves it.
func readNote(r *Record, noteFile, errFile string) {
	if noteFile != "" {
		if b, err := os.ReadFile(noteFile); err == nil {
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			r.Note = strings.TrimSpace(lines[len(lines)-1])
		}
	}
	if errFile != "" && r.Exit != 0 {
		// The first line: DuckDB's errors go on with lines of advice after it.
		if b, err := os.ReadFile(errFile); err == nil {
			first, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
			r.Note = strings.TrimSpace(first)
		}
	}
}

// dirBytes is the size of the regular files under dir: 0 when dir does not exist yet.
func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	return n, err
}

// load1 is the 1-minute load average, or -1 where /proc/loadavg is missing.
func load1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

var textTypes = map[string]bool{"text/plain": true, "text/html": true, "application/xhtml+xml": true}

// curlBatch URLs per curl config file: curl -K slows down with very long configs, so each curl
// gets a batch over one keep-alive connection and xargs -P runs PARALLEL curls over the batches
// (the method of scripts/bench/inline.sh).
const curlBatch = 200

// curlcfg writes, for every attachment ndjson-inline would fetch by default (a text media type,
// a url, no data), a curl config entry fetching it to /dev/null with the same Accept header, and
// prints the number of attachments.
func curlcfg(args []string) error {
	fs := flag.NewFlagSet("curlcfg", flag.ExitOnError)
	base := fs.String("base", "", "FHIR base URL for relative attachment URLs")
	dir := fs.String("dir", "", "folder for the config files")
	fs.Parse(args)
	if *base == "" || *dir == "" {
		return errors.New("curlcfg: -base and -dir are required")
	}
	n := 0
	var cfg *os.File
	var w *bufio.Writer
	flush := func() error {
		if cfg == nil {
			return nil
		}
		if err := w.Flush(); err != nil {
			return err
		}
		return cfg.Close()
	}
	for _, path := range fs.Args() {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 256<<20)
		for sc.Scan() {
			for _, a := range fhirjson.Attachments(sc.Bytes()) {
				mt, _, _ := mime.ParseMediaType(a.ContentType)
				if !textTypes[mt] || a.HasData || a.URL == "" {
					continue
				}
				if n%curlBatch == 0 {
					if err := flush(); err != nil {
						f.Close()
						return err
					}
					if cfg, err = os.Create(filepath.Join(*dir, fmt.Sprintf("%06d.cfg", n/curlBatch))); err != nil {
						f.Close()
						return err
					}
					w = bufio.NewWriter(cfg)
				}
				u := a.URL
				if !strings.Contains(u, "://") {
					u = strings.TrimSuffix(*base, "/") + "/" + u
				}
				fmt.Fprintf(w, "url = %q\noutput = \"/dev/null\"\nheader = \"Accept: %s\"\n", u, mt)
				n++
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	if err := flush(); err != nil {
		return err
	}
	fmt.Println(n)
	return nil
}

// row is the best round of one contestant.
type row struct {
	Record
	rounds int
}

func (r row) mbs() float64 { return float64(r.Bytes) / 1e6 / r.Wall }

func (r row) cpuPerGB() float64 {
	if r.Bytes == 0 {
		return 0
	}
	return (r.User + r.Sys) / (float64(r.Bytes) / 1e9)
}

type step struct {
	name string
	rows []*row
}

func (s *step) tool() *row {
	for _, r := range s.rows {
		if r.Role == "tool" {
			return r
		}
	}
	return nil
}

func readResults(path string) ([]*step, []float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var steps []*step
	var loads []float64
	dec := json.NewDecoder(f)
	for {
		var r Record
		if err := dec.Decode(&r); err == io.EOF {
			break
		} else if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		if r.Load1 >= 0 {
			loads = append(loads, r.Load1)
		}
		var s *step
		for _, x := range steps {
			if x.name == r.Step {
				s = x
			}
		}
		if s == nil {
			s = &step{name: r.Step}
			steps = append(steps, s)
		}
		var best *row
		for _, x := range s.rows {
			if x.Name == r.Name {
				best = x
			}
		}
		switch {
		case best == nil:
			s.rows = append(s.rows, &row{Record: r, rounds: 1})
		case r.Wall < best.Wall:
			best.Record, best.rounds = r, best.rounds+1
		default:
			best.rounds++
		}
	}
	return steps, loads, nil
}

// readMeta reads KEY=VALUE lines written by run.sh.
func readMeta(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for l := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
			m[k] = v
		}
	}
	return m, nil
}

// cells renders one row: contestant, MB, wall, MB/s, vs limit, CPU-s/GB, RSS, target.
func cells(s *step, r *row) []string {
	t := s.tool()
	vs, target := "", ""
	switch {
	case r.Role == "tool":
		var parts []string
		first := true
		for _, l := range s.rows {
			if l.Role != "limit" {
				continue
			}
			ratio := l.Wall / r.Wall
			parts = append(parts, fmt.Sprintf("%.2f× %s", ratio, l.Name))
			if first && r.TargetRatio > 0 {
				target = fmt.Sprintf("≥ %.2f× %s: %s", r.TargetRatio, l.Name, verdict(ratio >= r.TargetRatio))
			}
			first = false
		}
		vs = strings.Join(parts, ", ")
		if r.TargetMBs > 0 {
			target = fmt.Sprintf("≥ %.0f MB/s: %s", r.TargetMBs, verdict(r.mbs() >= r.TargetMBs))
		}
	case r.Role == "limit":
		vs = "(limit)"
	case r.Role == "ref" && t != nil:
		faster := t.Wall / r.Wall
		vs = fmt.Sprintf("%.1f× %s's speed", faster, t.Name)
		if r.TargetFaster > 0 {
			target = fmt.Sprintf("≥ %.0f× the tool: %s", r.TargetFaster, verdict(faster >= r.TargetFaster))
		}
	}
	cpu, mbs := "—", "—"
	if r.Bytes > 0 {
		cpu = fmt.Sprintf("%.1f", r.cpuPerGB())
		mbs = fmt.Sprintf("%.1f", r.mbs())
	}
	name := r.Name
	if r.Exit != 0 {
		name += fmt.Sprintf(" (exit %d)", r.Exit)
	}
	return []string{s.name, name, fmt.Sprintf("%.1f", float64(r.Bytes)/1e6), fmt.Sprintf("%.2f", r.Wall),
		mbs, vs, cpu, fmt.Sprintf("%.0f", float64(r.RSS)/1024), target}
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**below**"
}

var header = []string{"step", "contestant", "MB", "wall s", "MB/s", "vs limit (speed ratio)", "CPU-s/GB", "peak RSS MiB", "target (issue)"}

func table(args []string) error {
	fs := flag.NewFlagSet("table", flag.ExitOnError)
	results := fs.String("results", "", "results file of report run")
	metaPath := fs.String("meta", "", "KEY=VALUE file written by run.sh")
	md := fs.String("md", "", "Markdown report whose generated block to rewrite")
	fs.Parse(args)
	steps, loads, err := readResults(*results)
	if err != nil {
		return err
	}
	meta := map[string]string{}
	if *metaPath != "" {
		if meta, err = readMeta(*metaPath); err != nil {
			return err
		}
	}
	var rows [][]string
	for _, s := range steps {
		for _, r := range s.rows {
			rows = append(rows, cells(s, r))
		}
	}
	printText(os.Stdout, rows)
	for _, n := range notes(steps, meta) {
		fmt.Println("- " + strings.ReplaceAll(n, "`", ""))
	}
	if *md == "" {
		return nil
	}
	block := markdown(steps, rows, loads, meta)
	return rewriteBlock(*md, benchMarks, block)
}

func printText(w io.Writer, rows [][]string) {
	width := make([]int, len(header))
	for _, r := range append([][]string{header}, rows...) {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(strings.ReplaceAll(c, "**", ""))))
		}
	}
	for _, r := range append([][]string{header}, rows...) {
		var b strings.Builder
		for i, c := range r {
			c = strings.ReplaceAll(c, "**", "")
			pad := width[i] - len([]rune(c))
			if i >= 2 && i <= 4 || i == 6 || i == 7 { // numbers right-aligned
				b.WriteString(strings.Repeat(" ", pad) + c)
			} else {
				b.WriteString(c + strings.Repeat(" ", pad))
			}
			b.WriteString("  ")
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// notes are the per-row facts the table has no column for: items per second, the tool's own
// summary line, and the caveats of the measurement.
func notes(steps []*step, meta map[string]string) []string {
	var out []string
	for _, s := range steps {
		for _, r := range s.rows {
			if r.Items > 0 {
				out = append(out, fmt.Sprintf("%s, %s: %.0f %s/s", s.name, r.Name, float64(r.Items)/r.Wall, r.Unit))
			}
			if r.Note != "" {
				out = append(out, fmt.Sprintf("%s, %s: `%s`", s.name, r.Name, r.Note))
			}
		}
	}
	return out
}

func markdown(steps []*step, rows [][]string, loads []float64, meta map[string]string) string {
	var b bytes.Buffer
	get := func(k string) string {
		if v := meta[k]; v != "" {
			return v
		}
		return "?"
	}
	fmt.Fprintf(&b, "Generated by `make bench` (scripts/bench/run.sh) on %s.\n\n", get("date"))
	fmt.Fprintf(&b, "- Machine: %d cores (%s), %s RAM, Linux %s, %s.\n", runtime.NumCPU(), cpuModel(), memTotal(),
		strings.TrimSpace(readString("/proc/sys/kernel/osrelease")), get("go"))
	if len(loads) > 0 {
		lo, hi := loads[0], loads[0]
		for _, l := range loads {
			lo, hi = min(lo, l), max(hi, l)
		}
		fmt.Fprintf(&b, "- Load average (1 min) at the end of each measured command: %.2f–%.2f; before the run %s, after it %s. "+
			"A load above the core count means other processes shared the CPUs.\n", lo, hi, get("load_before"), get("load_after"))
	}
	fmt.Fprintf(&b, "- Settings: BENCH_SIZE_MB=%s, BENCH_ROUNDS=%s (best round kept), BENCH_PARALLEL=%s, BENCH_MEM=%s.\n",
		get("size_mb"), get("rounds"), get("parallel"), get("mem"))
	fmt.Fprintf(&b, "- Export: %s MB in %s files from bulk-testserver --patients %s (files of at most %s lines), served on loopback.\n",
		mb(get("export_bytes")), get("export_files"), get("patients"), get("file_lines"))
	fmt.Fprintf(&b, "- Inline: pass-through of the export's %s MB that is not DocumentReference or DiagnosticReport; "+
		"rewrite of its %s MB of DocumentReference and DiagnosticReport (%s text attachments, served by bulk-testserver).\n",
		mb(get("pass_bytes")), mb(get("notes_bytes")), get("attachments"))
	fmt.Fprintf(&b, "- Merge: %s MB of Observations in 10 slice folders, 20%% of the lines copies of other slices' lines (scripts/bench/benchtool gen).\n",
		mb(get("merge_bytes")))
	fmt.Fprintf(&b, "- Load: the fetched export folder (%s MB) into a new DuckDB file, by etl-load and by DuckDB SQL (scripts/bench/report/sqlload).\n\n",
		mb(get("export_bytes")))

	b.WriteString("| " + strings.Join(header, " | ") + " |\n|")
	for i := range header {
		if i >= 2 && i <= 4 || i == 6 || i == 7 {
			b.WriteString("---:|")
		} else {
			b.WriteString("---|")
		}
	}
	b.WriteString("\n")
	for _, r := range rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	if ns := notes(steps, meta); len(ns) > 0 {
		b.WriteString("\n")
		for _, n := range ns {
			b.WriteString("- " + n + "\n")
		}
	}
	b.WriteString("\nCommands as run from the repository root (`$WORK` is the run's temporary folder; `$BASE` the test server's FHIR base URL):\n\n```\n")
	for _, s := range steps {
		for _, r := range s.rows {
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
			if base := meta["base"]; base != "" {
				cmd = strings.ReplaceAll(cmd, base, "$BASE")
			}
			fmt.Fprintf(&b, "%-20s %s\n", s.name+":", cmd)
		}
	}
	b.WriteString("```\n")
	return b.String()
}

func mb(bytes string) string {
	n, err := strconv.ParseFloat(bytes, 64)
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%.0f", n/1e6)
}

func readString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func cpuModel() string {
	for l := range strings.Lines(readString("/proc/cpuinfo")) {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func memTotal() string {
	for l := range strings.Lines(readString("/proc/meminfo")) {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
			if kib, err := strconv.ParseFloat(f[1], 64); err == nil {
				return fmt.Sprintf("%.1f GiB", kib/(1<<20))
			}
		}
	}
	return "?"
}

// marks are the comment lines around one generated block of the report.
type marks struct{ begin, end string }

const (
	beginMark = "<!-- bench:begin (generated by make bench; edits inside are overwritten) -->"
	endMark   = "<!-- bench:end -->"
)

var benchMarks = marks{beginMark, endMark}

// scaleMarks delimit the block of one part of make bench-scale (fetch, load, merge), so a rerun
// of one part rewrites its block and leaves the others' results in place.
func scaleMarks(part string) marks {
	return marks{
		"<!-- bench-scale:" + part + ":begin (generated by make bench-scale; edits inside are overwritten) -->",
		"<!-- bench-scale:" + part + ":end -->",
	}
}

// rewriteBlock replaces the generated block of the report at path, keeping the hand-written
// rest; a missing file is created with only the block. A file without the markers is left alone.
func rewriteBlock(path string, m marks, block string) error {
	old, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		old = []byte("# bulkpipe benchmarks\n\n" + m.begin + "\n" + m.end + "\n")
	} else if err != nil {
		return err
	}
	s, err := replaceBlock(string(old), m, block)
	if err != nil {
		return fmt.Errorf("%s: %w; results not written", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o666); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// replaceBlock puts block between the first begin marker of doc and the end marker after it.
func replaceBlock(doc string, m marks, block string) (string, error) {
	i := strings.Index(doc, m.begin)
	if i < 0 {
		return "", fmt.Errorf("no %q line", m.begin)
	}
	j := strings.Index(doc[i:], m.end)
	if j < 0 {
		return "", fmt.Errorf("no %q line after %q", m.end, m.begin)
	}
	return doc[:i+len(m.begin)] + "\n" + block + doc[i+j:], nil
}
