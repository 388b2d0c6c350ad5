package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/urfave/cli/v2"

	"github.com/bulkpipe/bulkpipe/pkg/attachment"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fetch"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
)

// inlineFlags are ndjson-inline's settings under names of their own, so they never collide
// with bulk-fetch's (--parallel, --max-size…): DESIGN.md §5, issue "bulk-fetch --inline".
func inlineFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "inline", Usage: "inline text attachments of DocumentReference and DiagnosticReport files as each is verified (as ndjson-inline)"},
		&cli.StringSliceFlag{Name: "inline-resource", Usage: "with --inline, only these resource `TYPES` (default DocumentReference,DiagnosticReport)"},
		&cli.StringSliceFlag{Name: "inline-mimetype", Usage: "with --inline, these media `TYPES` (default text/plain,text/html,application/xhtml+xml)"},
		&cli.IntFlag{Name: "inline-parallel", Value: attachment.DefaultParallel, Usage: "with --inline, `N` attachment downloads at once per file"},
		&cli.StringFlag{Name: "inline-max-size", Value: "64MiB", Usage: "with --inline, skip attachments larger than `SIZE` (at most 1GiB, which 0 means)"},
		&cli.BoolFlag{Name: "inline-strict", Usage: "with --inline, exit 1 when an attachment could not be inlined"},
	}
}

// inlineReads are the types --inline reads beyond the export's own, for SMART scopes: Binary,
// where Epic keeps attachments, but only with --inline and when some exported type (or an
// unknown set) has attachments to inline, since servers refuse a scope for a type they lack.
func inlineReads(c *cli.Context, types []string) []string {
	if !c.Bool("inline") {
		return nil
	}
	targets := attachment.SplitList(c.StringSlice("inline-resource"))
	if targets == nil {
		targets = attachment.DefaultResources
	}
	if len(types) == 0 || slices.ContainsFunc(types, func(t string) bool { return slices.Contains(targets, t) }) {
		return []string{"Binary"}
	}
	return nil
}

// inliner runs ndjson-inline's engine on each verified file, through fetch's PostVerify seam,
// so a file reaches its final name already inlined and state.json says so.
type inliner struct {
	inl    *attachment.Inliner
	strict bool
	say    func(format string, args ...any)

	mu    sync.Mutex
	total attachment.Stats
	log   atomic.Pointer[func(string, any) error] // the export's log, known once a file arrives
}

// newInliner is nil without --inline; flag mistakes are usage errors.
func newInliner(c *cli.Context, client *fhirclient.Client, maxLine int, say func(string, ...any)) (*inliner, error) {
	for _, name := range []string{"inline-resource", "inline-mimetype", "inline-parallel", "inline-max-size", "inline-strict"} {
		if c.IsSet(name) && !c.Bool("inline") {
			return nil, tool.UsageErrorf("--%s needs --inline", name)
		}
	}
	if !c.Bool("inline") {
		return nil, nil
	}
	maxSize, err := tool.ParseSize(c.String("inline-max-size"))
	if err != nil {
		return nil, tool.UsageErrorf("--inline-max-size: %v", err)
	}
	if c.Int("inline-parallel") < 1 {
		return nil, tool.UsageErrorf("--inline-parallel must be at least 1")
	}
	i := &inliner{strict: c.Bool("inline-strict"), say: say}
	i.inl, err = attachment.New(attachment.Options{
		Policy: attachment.Policy{
			Resources: attachment.SplitList(c.StringSlice("inline-resource")),
			MIMETypes: attachment.SplitList(c.StringSlice("inline-mimetype")),
			MaxSize:   maxSize,
		},
		Fetcher: client, Parallel: c.Int("inline-parallel"),
		StallTimeout: c.Duration("stall-timeout"), MaxLine: maxLine,
		OnDownload: i.downloaded,
	})
	if err != nil {
		return nil, tool.UsageErrorf("--inline: %v", err)
	}
	return i, nil
}

// downloaded reports a failed attachment and logs every download (called from several files
// at once).
func (i *inliner) downloaded(d attachment.Download) {
	if d.Result == attachment.Failed {
		i.say("warning: %s:%d: %s: not inlined: %v", d.Name, d.Line, d.URL, d.Err)
	}
	id, detail := d.Event()
	if log := i.log.Load(); id != "" && log != nil {
		if err := (*log)(id, detail); err != nil {
			i.say("warning: %v", err)
		}
	}
}

// postVerify is fetch.Options.PostVerify: files of other types are copied as they are.
func (i *inliner) postVerify(ctx context.Context, f fetch.FileInfo, r io.Reader, w io.Writer) (bool, error) {
	if f.ItemType != exportdir.ItemOutput || !i.inl.Targets(f.ResourceType) {
		_, err := io.Copy(w, r)
		return false, err
	}
	if f.Log != nil {
		i.log.Store(&f.Log)
	}
	st, err := i.inl.Stream(ctx, f.Rel, r, w)
	i.mu.Lock()
	i.total.Add(st)
	i.mu.Unlock()
	return st.Changed > 0, err
}

// finish prints the counts and, with --inline-strict, fails when an attachment was not inlined.
func (i *inliner) finish(quiet bool) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if !quiet || i.total.Failed > 0 {
		i.say("attachments: %s", i.total)
	}
	if i.strict && i.total.Failed > 0 {
		return fmt.Errorf("%d attachments could not be inlined (--inline-strict); the files are in place, and ndjson-inline --in-place retries them", i.total.Failed)
	}
	return nil
}
