// Command ndjson-merge recombines the slices of a sliced Bulk Data export (Observations exported
// category by category, say) into one complete, de-duplicated export folder (DESIGN.md §6).
package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/tool"
	"github.com/urfave/cli/v2"
)

func main() { os.Exit(tool.Main(newApp())) }

func newApp() *cli.App {
	return &cli.App{
		Name:      "ndjson-merge",
		Usage:     "merge the slices of a sliced export into one de-duplicated export folder",
		ArgsUsage: "SRC... --out DIR",
		Description: `Each SRC is an export folder (with its log.ndjson), an NDJSON file, or - for stdin.
Duplicates (same resourceType/id) collapse to the copy with the newest meta.lastUpdated; ties go
to the slice with the later transactionTime, then to the later argument. A deleted/ entry removes
the copies of earlier slices. The merged log takes the earliest slice's transactionTime and the
Group all slices share. Output is sorted by resourceType, then id. See ndjson-merge(1).

Examples:
   ndjson-merge obs-lab obs-vitals obs-rest --out obs
   ndjson-merge a.ndjson b.ndjson --export-timestamp 2024-05-01T00:00:00Z --out -
   ndjson-merge slices/* --out merged --mem 2GB --max-file-size 256MB`,
		HideHelpCommand: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "write the merged export folder `DIR` (- for NDJSON on stdout, one resource type only)"},
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "replace --out if it exists and is not empty (never a source, or a folder holding or inside one)"},
			&cli.StringFlag{Name: "mem", Value: "512MB", Usage: "memory for sorting before runs are spilled to disk (`SIZE`: 256MB, 1GB, 64KiB)"},
			&cli.StringFlag{Name: "max-file-size", Value: "1GiB", Usage: "start a new Type.NNN.ndjson file past this `SIZE`"},
			&cli.StringFlag{Name: "max-line", Value: "256MiB", Usage: "refuse input lines longer than `SIZE`"},
			&cli.StringFlag{Name: "tmp", Usage: "put sorted runs in `DIR` (default: beside --out; $TMPDIR with --out -)"},
			&cli.StringFlag{Name: "export-group", Usage: "Group `ID` of sources without a log (default: none, a system or Patient-level export)"},
			&cli.StringFlag{Name: "export-timestamp", Usage: "transactionTime of sources without a log (`TIME`: RFC 3339, or a date for midnight UTC)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress and no summary on stderr (warnings still shown)"},
		},
		Action: run,
	}
}

func run(c *cli.Context) error {
	st := tool.NewStatus(c)
	o := &options{
		sources: c.Args().Slice(),
		out:     c.String("out"),
		force:   c.Bool("force"),
		tmp:     c.String("tmp"),
		group:   c.String("export-group"),
		stdin:   c.App.Reader,
		stdout:  c.App.Writer,
		warn:    func(msg string) { st.Warn("%s", msg) },
		now:     time.Now,
		version: c.App.Version,
	}
	if len(o.sources) == 0 {
		return tool.UsageErrorf("no sources: give export folders or NDJSON files (- for stdin) and --out DIR")
	}
	if o.out == "" {
		return tool.UsageErrorf("--out is required: a folder for the merged export, or - for NDJSON on stdout")
	}
	var err error
	sizes := []struct {
		flag string
		dst  *int64
		min  int64
	}{{"mem", &o.mem, 1 << 10}, {"max-file-size", &o.maxFile, 1}}
	for _, s := range sizes {
		if *s.dst, err = parseSize(c.String(s.flag)); err != nil {
			return tool.UsageErrorf("--%s: %v", s.flag, err)
		}
		if *s.dst < s.min {
			return tool.UsageErrorf("--%s %s: want at least %s", s.flag, c.String(s.flag), tool.FormatBytes(s.min))
		}
	}
	maxLine, err := parseSize(c.String("max-line"))
	if err != nil || maxLine < 1 || maxLine > 1<<31-1<<20 {
		return tool.UsageErrorf("--max-line %q: want a size from 1 byte to 2047MiB", c.String("max-line"))
	}
	o.maxLine = int(maxLine)
	if ts := c.String("export-timestamp"); ts != "" {
		if o.timestamp, err = parseTimestamp(ts); err != nil {
			return tool.UsageErrorf("--export-timestamp: %v", err)
		}
		o.hasTime = true
	}
	if o.out == "-" && c.Bool("force") {
		return tool.UsageErrorf("--force applies to an output folder, not --out -")
	}
	if o.out != "-" {
		if err := checkOutOutsideSources(o.out, o.sources); err != nil {
			return tool.UsageErrorf("%v", err)
		}
	}
	// The sort buffers hold no pointers, so a soft limit a little above --mem makes the garbage
	// collector return memory early instead of letting the heap double (peak RSS ≈ --mem).
	debug.SetMemoryLimit(o.mem + o.mem/4 + 32<<20)
	if st.Terminal() {
		o.progress = func(pr progress) { showProgress(st, pr) }
		defer st.End() // clear the line before tool.Run prints an error
	}
	started := o.now()
	res, err := merge(c.Context, o)
	if err != nil {
		return err
	}
	st.End()
	into := "in " + strings.TrimRight(o.out, "/") + "/"
	if o.out == "-" {
		into = "on stdout"
	}
	st.Summary("%d resources read, %d written (%s), %d deletions kept, %d errors kept, %s, in %s",
		res.read, res.written, strings.Join(res.types, ", "), res.deleted, res.errors, into,
		o.now().Sub(started).Round(time.Millisecond))
	return nil
}

// parseTimestamp reads --export-timestamp: an instant, or a date taken as midnight UTC.
func parseTimestamp(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time with an offset nor a date (YYYY-MM-DD)", s)
}

// showProgress redraws the progress line on a terminal.
func showProgress(st *tool.Status, pr progress) {
	line := fmt.Sprintf("%s %d resources", pr.phase, pr.records)
	if pr.bytes > 0 {
		line += ", " + tool.FormatBytes(pr.bytes)
	}
	if pr.runs > 0 {
		line += fmt.Sprintf(", %d sorted runs on disk", pr.runs)
	}
	st.Progress(false, "%s", line)
}
