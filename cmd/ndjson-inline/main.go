// Command ndjson-inline downloads the clinical-note attachments of FHIR NDJSON once and keeps them
// inside the lines (DESIGN.md §5): DocumentReference.content[].attachment and
// DiagnosticReport.presentedForm[] get data, size, hash and contentType, so the notes outlive
// the EHR's links and tokens. It is a filter (NDJSON in, NDJSON out, same order), or with
// --in-place it rewrites files and export folders. The engine is package attachment.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/bulkpipe/bulkpipe/pkg/attachment"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
)

func main() { os.Exit(tool.Main(newApp())) }

const description = `Reads NDJSON (FILEs, or stdin) and writes it to stdout with the text attachments of
DocumentReference.content[].attachment and DiagnosticReport.presentedForm[] inlined: each
attachment whose contentType is selected (text/plain, text/html, application/xhtml+xml by
default; parameters such as charset ignored) and that has a url but no data is downloaded
(relative URLs such as Binary/123 against --fhir-url, keeping its path; Accept: the media type; a
FHIR Binary answer is decoded), checked, and stored as data (base64), size, hash (SHA-1, base64)
and contentType "<type>; charset=<the answer's, else utf-8>"; url and every other field stay.
Other lines, and lines that need nothing, are copied byte for byte, in the same order.

With --in-place, each FILE, and every *.ndjson and *.ndjson.gz of each DIR whose name gives a
selected resource type, is rewritten through a temporary file and a rename (a crash leaves the
old file or the new one; a file that needs nothing is not rewritten). In an export folder the
FHIR base comes from its log when --fhir-url is not given, and .bulkpipe/state.json is updated
so bulk-fetch never fetches over the rewrite.

The token (and --header values) go only to relative URLs and trusted origins (the FHIR base's,
and --token-origin), never to another host. An attachment URL is data, not a place the user
chose: one that reaches a link-local address or a cloud metadata endpoint (169.254.169.254,
metadata.google.internal), by name, by what the name resolves to, or by a redirect, is refused
unless --allow-link-local is given. A failed attachment is left as it was and reported;
the counts of inlined, already inlined, skipped and failed attachments end the run on stderr.

Examples:
   ndjson-inline --in-place export/
   ndjson-inline --fhir-url "$BULK_FHIR_URL" DocumentReference.000.ndjson > inlined.ndjson
   bulk-fetch --dir export/ manifest.ndjson &&
       ndjson-inline --in-place --log export/log.ndjson export/
   ndjson-inline --in-place --mimetype text/plain,application/pdf --max-size 10MB \
       --log export/log.ndjson export/`

func newApp() *cli.App {
	return &cli.App{
		Name:        "ndjson-inline",
		Usage:       "download clinical-note attachments once and keep them inside the NDJSON",
		UsageText:   "ndjson-inline [options] [FILE...|-]\nndjson-inline --in-place [options] FILE|DIR...",
		ArgsUsage:   "[FILE...|-]",
		Description: description,
		Flags:       tool.Flags(inlineFlags(), tool.ServerFlags()),
		Action:      run,
	}
}

func inlineFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "in-place", Aliases: []string{"i"}, Usage: "rewrite each FILE, and the files of each export folder DIR, instead of writing stdout"},
		&cli.StringSliceFlag{Name: "resource", Usage: "inline attachments of these resource `TYPES` only (comma-separated or repeated; default DocumentReference,DiagnosticReport)"},
		&cli.StringSliceFlag{Name: "mimetype", Usage: "inline attachments of these media `TYPES` (comma-separated or repeated; default text/plain,text/html,application/xhtml+xml)"},
		&cli.IntFlag{Name: "parallel", Aliases: []string{"j"}, Value: attachment.DefaultParallel, Usage: "download at most `N` attachments at once"},
		&cli.StringFlag{Name: "max-size", Value: "64MiB", Usage: "skip attachments larger than `SIZE` (such as 10MB; at most 1GiB, which 0 means)"},
		&cli.DurationFlag{Name: "stall-timeout", Value: attachment.DefaultStallTimeout, Usage: "retry a download that receives nothing for `DURATION`"},
		&cli.BoolFlag{Name: "allow-link-local", Usage: "let attachment URLs reach link-local addresses (169.254.0.0/16, fe80::/10) and cloud metadata endpoints, refused by default"},
		&cli.BoolFlag{Name: "strict", Usage: "exit 1 when an attachment failed (the others are still inlined)"},
		&cli.StringFlag{Name: "log", EnvVars: []string{"BULK_LOG"}, Usage: "append download_complete and download_error events to the export log `FILE`"},
		tool.MaxLineFlag(),
		tool.QuietFlag(),
	}
}

// config is what the flags say, checked.
type config struct {
	policy   attachment.Policy
	parallel int
	stall    time.Duration
	maxLine  int
	strict   bool
	quiet    bool
	allowLL  bool
	log      string
}

func parseConfig(c *cli.Context) (*config, error) {
	cfg := &config{parallel: c.Int("parallel"), stall: c.Duration("stall-timeout"), strict: c.Bool("strict"),
		quiet: c.Bool("quiet"), log: c.String("log"), allowLL: c.Bool("allow-link-local")}
	cfg.policy.Resources = attachment.SplitList(c.StringSlice("resource"))
	cfg.policy.MIMETypes = attachment.SplitList(c.StringSlice("mimetype"))
	var err error
	if cfg.policy.MaxSize, err = tool.ParseSize(c.String("max-size")); err != nil {
		return nil, tool.UsageErrorf("--max-size: %v", err)
	}
	if cfg.policy.MaxSize > attachment.HardMaxSize {
		return nil, tool.UsageErrorf("--max-size %s: at most 1GiB (an attachment is held in memory, and its base64 must fit in a line)", c.String("max-size"))
	}
	if cfg.maxLine, err = tool.MaxLine(c); err != nil {
		return nil, err
	}
	switch {
	case cfg.parallel < 1:
		return nil, tool.UsageErrorf("--parallel must be at least 1")
	case cfg.stall <= 0:
		return nil, tool.UsageErrorf("--stall-timeout must be more than 0")
	}
	// Check the policy now, so a typo in --resource or --mimetype is a usage error.
	if _, err := attachment.New(attachment.Options{Policy: cfg.policy, Fetcher: noFetcher{}}); err != nil {
		return nil, tool.UsageErrorf("%v", err)
	}
	return cfg, nil
}

func run(c *cli.Context) error {
	cfg, err := parseConfig(c)
	if err != nil {
		return err
	}
	args := c.Args().Slice()
	inPlace := c.Bool("in-place")
	if inPlace {
		if len(args) == 0 {
			return tool.UsageErrorf("--in-place needs the FILEs or export folders to rewrite")
		}
		for _, a := range args {
			if a == "-" {
				return tool.UsageErrorf("--in-place cannot rewrite stdin: give files or folders")
			}
		}
	} else {
		for _, a := range args {
			if fi, err := os.Stat(a); err == nil && fi.IsDir() {
				return tool.UsageErrorf("%s is a folder: give --in-place to rewrite its files, or name the files to read", a)
			}
		}
	}
	r := newReporter(c, cfg)
	defer r.close()
	if cfg.log != "" {
		if err := r.openLog(cfg.log); err != nil {
			return err
		}
	}
	var total attachment.Stats
	if inPlace {
		total, err = runInPlace(c, cfg, r, args)
	} else {
		total, err = runFilter(c, cfg, r, args)
	}
	r.finish()
	if err == nil {
		err = r.err()
	}
	if err != nil {
		if errors.Is(err, exportdir.ErrLocked) {
			return fmt.Errorf("%w (bulk-fetch or another ndjson-inline is writing there; wait for it)", err)
		}
		return err
	}
	r.st.Summary("%d attachments inlined, %d already inlined, %d skipped, %d failed, in %s",
		total.Inlined, total.Already, total.Skipped, total.Failed, inputNames(args))
	if cfg.strict && total.Failed > 0 {
		return fmt.Errorf("%d attachments failed (--strict)", total.Failed)
	}
	return nil
}

// runFilter inlines each input in turn onto stdout.
func runFilter(c *cli.Context, cfg *config, r *reporter, args []string) (attachment.Stats, error) {
	if len(args) == 0 {
		args = []string{""}
	}
	var total attachment.Stats
	clients := newClients(c, cfg, r.st)
	for _, arg := range args {
		name := arg
		if name == "" || name == "-" {
			name = "-"
		}
		base, exportID, err := folderContext(c, arg)
		if err != nil {
			return total, err
		}
		fetcher, err := clients.get(base)
		if err != nil {
			return total, err
		}
		in, err := newInliner(cfg, fetcher, r, exportID)
		if err != nil {
			return total, err
		}
		rc, err := open(c, arg)
		if err != nil {
			return total, err
		}
		st, err := in.Stream(c.Context, name, rc, c.App.Writer)
		rc.Close()
		total.Add(st)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// runInPlace rewrites the files and folders of args (attachment.InPlace), each folder with the
// client of its FHIR base: --fhir-url, else its log's.
func runInPlace(c *cli.Context, cfg *config, r *reporter, args []string) (attachment.Stats, error) {
	cs := newClients(c, cfg, r.st)
	total, err := attachment.InPlace(c.Context, &attachment.InPlaceOptions{
		Paths:     args,
		Resources: cfg.policy.Resources,
		Inliner: func(dir string) (*attachment.Inliner, bool, error) {
			base, exportID, err := folderContext(c, dir)
			if err != nil {
				return nil, false, err
			}
			var fetcher attachment.Fetcher = noFetcher{}
			if base != "" {
				if fetcher, err = cs.get(base); err != nil {
					return nil, false, err
				}
			}
			in, err := newInliner(cfg, fetcher, r, exportID)
			return in, base != "", err
		},
		Warn: func(msg string) { r.say("%s", msg) },
		OnFile: func(path string, st attachment.Stats, changed bool) {
			if cfg.quiet {
				return
			}
			note := "unchanged"
			if changed {
				note = "rewritten"
			}
			r.say("%s: %s (%s)", path, st, note)
		},
	})
	if e, ok := errors.AsType[*attachment.NoBaseError](err); ok {
		return total, tool.UsageErrorf("%s needs downloads but no FHIR base URL is known: give --fhir-url (or BULK_FHIR_URL); %s has no export log naming the server", e.Path, e.Dir)
	}
	return total, err
}

// newInliner builds the engine for one input or folder, reporting through r.
func newInliner(cfg *config, f attachment.Fetcher, r *reporter, exportID string) (*attachment.Inliner, error) {
	return attachment.New(attachment.Options{
		Policy: cfg.policy, Fetcher: f, Parallel: cfg.parallel, StallTimeout: cfg.stall, MaxLine: cfg.maxLine,
		AllowLinkLocal: cfg.allowLL,
		OnDownload:     func(d attachment.Download) { r.download(d, exportID) },
	})
}

// open opens an input: stdin for "" and "-", else a file, gunzipped when it is gzipped.
func open(c *cli.Context, arg string) (io.ReadCloser, error) {
	if arg == "" || arg == "-" {
		return tool.Input(c, arg)
	}
	return exportdir.OpenFile(arg)
}

// noFetcher stands in where nothing may be downloaded: checking the policy, and rewriting a folder
// without a known FHIR base once Check has said it needs no download.
type noFetcher struct{}

var errNoBase = errors.New("no FHIR base URL is known: give --fhir-url")

func (noFetcher) Resolve(string) (*url.URL, error) { return nil, errNoBase }
func (noFetcher) Load(context.Context, *fhirclient.Request, func(*http.Response) error) error {
	return errNoBase
}

// inputNames names the inputs in the summary line: "stdin", "a.ndjson", "export/, b.ndjson",
// or the first two and how many more.
func inputNames(args []string) string {
	names := make([]string, 0, len(args))
	for _, a := range args {
		if a == "-" {
			a = "stdin"
		}
		names = append(names, a)
	}
	switch {
	case len(names) == 0:
		return "stdin"
	case len(names) > 3:
		return fmt.Sprintf("%s, %s and %d more", names[0], names[1], len(names)-2)
	}
	return strings.Join(names, ", ")
}
