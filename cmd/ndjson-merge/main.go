// Command ndjson-merge recombines the slices of a sliced Bulk Data export (Observations exported
// category by category, say) into one complete, de-duplicated export folder (DESIGN.md §6).
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtime"
	"github.com/bulkpipe/bulkpipe/pkg/merge"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
	"github.com/urfave/cli/v2"
)

func main() { os.Exit(tool.Main(newApp())) }

func newApp() *cli.App {
	return &cli.App{
		Name:      "ndjson-merge",
		Usage:     "merge the slices of a sliced export into one de-duplicated export folder",
		ArgsUsage: "SRC... --dir DIR",
		Description: `Each SRC is an export folder (with its log.ndjson), an NDJSON file, or - for stdin.
Duplicates (same resourceType/id) collapse to the copy with the newest meta.lastUpdated; ties go
to the slice with the later transactionTime, then to the later argument. A deleted/ entry removes
the copies of earlier slices. The merged log takes the earliest slice's transactionTime and the
Group all slices share. Output is sorted by resourceType, then id. See ndjson-merge(1).

Examples:
   ndjson-merge obs-lab obs-vitals obs-rest --dir obs
   ndjson-merge a.ndjson b.ndjson --export-timestamp 2024-05-01T00:00:00Z --dir -
   ndjson-merge slices/* --dir merged --mem 2GB --max-file-size 256MB`,
		HideHelpCommand: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Aliases: []string{"d", "out"}, Usage: "write the merged export folder `DIR` (- for NDJSON on stdout, one resource type only)"},
			tool.OldFlag("dir", "o"),
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "replace --dir if it exists and is not empty (never a source, or a folder holding or inside one)"},
			&cli.StringFlag{Name: "mem", Value: "512MB", Usage: "memory for the sort and merge buffers together (`SIZE`: 256MB, 1GB, 64KiB)"},
			&cli.StringFlag{Name: "max-file-size", Value: "1GiB", Usage: "start a new Type.NNN.ndjson file past this `SIZE`"},
			tool.MaxLineFlag(),
			&cli.StringFlag{Name: "tmp", Usage: "put sorted runs in `DIR` (default: beside --dir; $TMPDIR with --dir -)"},
			&cli.StringFlag{Name: "export-group", Usage: "Group `ID` of sources without a log (default: none, a system or Patient-level export)"},
			&cli.StringFlag{Name: "export-timestamp", Usage: "transactionTime of sources without a log (`TIME`: a date, or an RFC 3339 time with a zone)"},
			&cli.BoolFlag{Name: "check-filters", Usage: "merge nothing: check each slice against the _typeFilter its log records, exit 1 when one holds resources its filter excludes"},
			tool.QuietFlag(),
		},
		Action: run,
	}
}

func run(c *cli.Context) error {
	st := tool.NewStatus(c)
	o := &merge.Options{
		Sources: c.Args().Slice(),
		Force:   c.Bool("force"),
		Tmp:     c.String("tmp"),
		Group:   c.String("export-group"),
		Stdin:   c.App.Reader,
		Stdout:  c.App.Writer,
		Warn:    func(msg string) { st.Warn("%s", msg) },
		Now:     time.Now,
		Version: c.App.Version,
	}
	var err error
	if o.Out, err = tool.Renamed(c, "dir", "o"); err != nil {
		return err
	}
	if len(o.Sources) == 0 {
		return tool.UsageErrorf("no sources: give export folders or NDJSON files (- for stdin) and --dir DIR")
	}
	if c.Bool("check-filters") {
		return checkFilters(c, st, o)
	}
	if o.Out == "" {
		return tool.UsageErrorf("--dir is required: a folder for the merged export, or - for NDJSON on stdout")
	}
	sizes := []struct {
		flag string
		dst  *int64
		min  int64
	}{{"mem", &o.Mem, 1 << 10}, {"max-file-size", &o.MaxFile, 1}}
	for _, s := range sizes {
		if *s.dst, err = tool.ParseSize(c.String(s.flag)); err != nil {
			return tool.UsageErrorf("--%s: %v", s.flag, err)
		}
		if *s.dst < s.min {
			return tool.UsageErrorf("--%s %s: want at least %s", s.flag, c.String(s.flag), tool.FormatBytes(s.min))
		}
	}
	if o.MaxLine, err = tool.MaxLine(c); err != nil {
		return err
	}
	if ts := c.String("export-timestamp"); ts != "" {
		if o.Timestamp, err = fhirtime.Parse(ts); err != nil {
			return tool.UsageErrorf("--export-timestamp: %v", err)
		}
		o.HasTime = true
	}
	// The sort's buffers are --mem in all and hold no pointers, so a soft limit a little above --mem
	// makes the garbage collector collect the small garbage of parsing early (each cycle scans only
	// the small pointer-holding heap) instead of letting the heap grow towards double: peak RSS stays
	// within --mem + 64 MiB.
	debug.SetMemoryLimit(o.Mem + 32<<20)
	if st.Terminal() {
		o.Progress = func(pr merge.Progress) { showProgress(st, pr) }
		defer st.End() // clear the line before tool.Run prints an error
	}
	started := o.Now()
	res, err := merge.Run(c.Context, o)
	if _, ok := errors.AsType[*merge.OptionsError](err); ok {
		return tool.UsageErrorf("%v", err)
	}
	if err != nil {
		return err
	}
	st.End()
	into := "in " + strings.TrimRight(o.Out, "/") + "/"
	if o.Out == "-" {
		into = "on stdout"
	}
	st.Summary("%d resources read, %d written (%s), %d deletions kept, %d errors kept, %s, in %s",
		res.Read, res.Written, strings.Join(res.Types, ", "), res.Deleted, res.Errors, into,
		o.Now().Sub(started).Round(time.Millisecond))
	return nil
}

// checkFilters is --check-filters: each slice that holds resources its _typeFilter excludes is
// one line, and the run fails, so that a script can stop slicing on a server that ignores the
// filter before it exports the next slice.
func checkFilters(c *cli.Context, st *tool.Status, o *merge.Options) error {
	var err error
	if o.MaxLine, err = tool.MaxLine(c); err != nil {
		return err
	}
	mm, err := merge.CheckFilters(c.Context, o)
	if err != nil {
		return err
	}
	for _, m := range mm {
		st.Print("%s", m.String())
	}
	if len(mm) > 0 {
		return fmt.Errorf("%d of %d slices hold resources their _typeFilter excludes", len(mm), len(o.Sources))
	}
	st.Summary("%d slices checked: each holds only what its _typeFilter selects (as far as it can be checked here)", len(o.Sources))
	return nil
}

// showProgress redraws the progress line on a terminal.
func showProgress(st *tool.Status, pr merge.Progress) {
	line := fmt.Sprintf("%s %d resources", pr.Phase, pr.Records)
	if pr.Bytes > 0 {
		line += ", " + tool.FormatBytes(pr.Bytes)
	}
	if pr.Runs > 0 {
		line += fmt.Sprintf(", %d sorted runs on disk", pr.Runs)
	}
	st.Progress(false, "%s", line)
}
