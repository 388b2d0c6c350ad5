// Command ndjson-merge recombines the slices of a sliced Bulk Data export (Observations exported
// category by category, say) into one complete, de-duplicated export folder (DESIGN.md §6).
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtime"

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
			&cli.StringFlag{Name: "export-timestamp", Usage: "transactionTime of sources without a log (`TIME`: a date, or an RFC 3339 time with a zone)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress on stderr"},
		},
		Action: run,
	}
}

func run(c *cli.Context) error {
	stderr := c.App.ErrWriter
	o := &options{
		sources: c.Args().Slice(),
		out:     c.String("out"),
		force:   c.Bool("force"),
		tmp:     c.String("tmp"),
		group:   c.String("export-group"),
		stdin:   c.App.Reader,
		stdout:  c.App.Writer,
		warn:    func(msg string) { fmt.Fprintf(stderr, "%s: warning: %s\n", c.App.Name, msg) },
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
			return tool.UsageErrorf("--%s %s: want at least %s", s.flag, c.String(s.flag), formatSize(s.min))
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
	var p *progressLine
	if !c.Bool("quiet") && tool.IsTerminal(stderr) {
		p = &progressLine{w: stderr, name: c.App.Name}
		o.progress = p.show
		defer p.done() // clear the line before tool.Run prints an error
	}
	started := o.now()
	res, err := merge(c.Context, o)
	if err != nil {
		return err
	}
	if p != nil {
		p.done()
		fmt.Fprintf(stderr, "%s: %d resources read, %d written (%s), %d deletions kept, %d errors kept, in %s\n",
			c.App.Name, res.read, res.written, strings.Join(res.types, ", "), res.deleted, res.errors,
			o.now().Sub(started).Round(time.Millisecond))
	}
	return nil
}

// parseTimestamp reads --export-timestamp as etl-load does: a FHIR date (its first instant, UTC)
// or a dateTime with a zone.
func parseTimestamp(s string) (time.Time, error) { return fhirtime.Parse(s) }

// progressLine redraws one status line on a terminal, at most a few times a second.
type progressLine struct {
	w     io.Writer
	name  string
	last  time.Time
	drawn bool
}

func (p *progressLine) show(pr progress) {
	now := time.Now()
	if now.Sub(p.last) < 200*time.Millisecond {
		return
	}
	p.last, p.drawn = now, true
	line := fmt.Sprintf("%s: %s %d records", p.name, pr.phase, pr.records)
	if pr.bytes > 0 {
		line += ", " + formatSize(pr.bytes)
	}
	if pr.runs > 0 {
		line += fmt.Sprintf(", %d sorted runs on disk", pr.runs)
	}
	fmt.Fprintf(p.w, "\r\033[K%s", line)
}

func (p *progressLine) done() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}
