// Command bulk-fetch downloads the files of a FHIR Bulk Data export into an export folder,
// verified and resumable: the third step of `bulk-kickoff URL | bulk-poll | bulk-fetch --dir DIR`
// (DESIGN.md §1, §3). The engine is package fetch; this file wires flags, the client, stdout and
// stderr to it.
package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fetch"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
)

func main() { os.Exit(tool.Main(newApp())) }

const description = `Reads manifest lines (from bulk-poll, a file, or stdin) until EOF and downloads every file of
the export into DIR: Type.NNN.ndjson numbered per type across manifest pages, deleted/ and
error/ subfolders, manifest.json, log.ndjson and .bulkpipe/state.json. Downloads of a page start
as soon as the page arrives. stdout lists each data file once it is verified.

Each file streams into NAME.part, decoded from gzip if the server compressed it, and is checked
line by line (valid JSON, the manifest's resourceType, the manifest's count) before it is
renamed. Interrupted, killed or cut off, bulk-fetch is resumed by running it again: verified
files are never fetched again, partial ones continue where they stopped (Range), expired links
are replaced by fetching the manifest again from the status URL. When every file is verified
the export is deleted on the server (--no-delete keeps it), and the issues the server wrote in
error/ are printed; a fatal or error issue makes the exit status 1.

Examples:
   bulk-kickoff "$BULK_FHIR_URL/Group/abc" | bulk-poll | bulk-fetch --dir export/
   bulk-poll "$STATUS_URL" -o manifest.ndjson && bulk-fetch --dir export/ manifest.ndjson
   bulk-fetch --dir export/ --parallel 10 --gzip < manifest.ndjson
   bulk-fetch --dir export/ --verify manifest.ndjson      # re-check every file's SHA-256`

func newApp() *cli.App {
	return &cli.App{
		Name:        "bulk-fetch",
		Usage:       "download a FHIR Bulk Data export's files into a verified, resumable export folder",
		UsageText:   "bulk-fetch --dir DIR [options] [MANIFEST|-]",
		ArgsUsage:   "[MANIFEST|-]",
		Description: description,
		Flags:       tool.Flags(fetchFlags(), inlineFlags(), tool.ServerFlags()),
		Action:      run,
	}
}

func fetchFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "dir", Aliases: []string{"d"}, Usage: "the export folder `DIR` (created if needed; required)"},
		&cli.StringFlag{Name: "status-url", EnvVars: []string{"BULK_STATUS_URL"},
			Usage: "status `URL` of the export, overriding the manifest's _bulkpipe context (to delete it and refresh expired links)"},
		&cli.IntFlag{Name: "parallel", Aliases: []string{"j"}, Value: fetch.DefaultParallel,
			Usage: "download at most `N` files at once (fewer while the server answers 429)"},
		&cli.DurationFlag{Name: "stall-timeout", Value: fetch.DefaultStallTimeout,
			Usage: "abandon and resume a download that receives nothing for `DURATION`"},
		&cli.BoolFlag{Name: "verify", Usage: "re-check the SHA-256 of files already verified before trusting them"},
		&cli.BoolFlag{Name: "new-export", Usage: "replace the files of another export already in DIR"},
		&cli.BoolFlag{Name: "no-delete", Usage: "keep the export on the server when every file is verified"},
		&cli.BoolFlag{Name: "gzip", Usage: "keep files gzipped on disk as .ndjson.gz (compressed after verification)"},
		&cli.StringFlag{Name: "log", EnvVars: []string{"BULK_LOG"},
			Usage: "copy this export's events from the export log `FILE` of bulk-kickoff and bulk-poll into DIR/log.ndjson"},
		tool.MaxLineFlag(),
		tool.QuietFlag(),
	}
}

func run(c *cli.Context) error {
	dir := c.String("dir")
	maxLine, err := checkFlags(c, dir)
	if err != nil {
		return err
	}
	st := tool.NewStatus(c)
	parallel, err := parallelWithinLimit(c, st)
	if err != nil {
		return err
	}
	in, err := tool.Input(c, c.Args().First())
	if err != nil {
		return err
	}
	defer in.Close()
	pr, first, err := firstPage(c, in, maxLine)
	if err != nil {
		return err
	}
	statusURL := cmp.Or(c.String("status-url"), first.Context.StatusURL)
	client, trusted, err := newClient(c, st, first, statusURL)
	if err != nil {
		return err
	}
	var bars *progress
	if st.Terminal() {
		files, verified := fileCounts(dir, first)
		bars = newProgress(c.Context, c.App.ErrWriter, files, verified)
		st.SetWriter(bars)
	}
	out, err := tool.CreateOutput(c, "-")
	if err != nil {
		return err
	}
	paths := &pathWriter{out: out}
	opts := fetch.Options{
		Dir: dir, Client: client, StatusURL: c.String("status-url"),
		Parallel: parallel, StallTimeout: c.Duration("stall-timeout"), MaxLine: maxLine,
		Verify: c.Bool("verify"), NewExport: c.Bool("new-export"), NoDelete: c.Bool("no-delete"),
		Gzip: c.Bool("gzip"), LogFrom: c.String("log"), Version: tool.Version(), FHIRBase: trusted,
		On: callbacks(st, paths),
	}
	inl, err := newInliner(c, client, maxLine, st.Print)
	if err != nil {
		return err
	}
	if inl != nil {
		opts.PostVerify = inl.postVerify
	}
	if bars != nil {
		bars.attach(&opts.On)
	}
	failed := &failures{}
	failed.wrap(c, &opts.On)
	start := time.Now()
	res, err := fetch.Run(c.Context, opts, pr)
	if bars != nil {
		bars.wait()
		st.SetWriter(c.App.ErrWriter)
	}
	if err == nil {
		err = paths.err()
	}
	// The server's issues in error/ are printed whatever happened to the other files: they may
	// say why the export is incomplete.
	fatal := printIssues(st, res)
	if err != nil {
		failed.printOthers(st, err)
		return explain(c, err)
	}
	if inl != nil {
		if err := inl.finish(st.Quiet()); err != nil {
			return err
		}
	}
	return finish(st, res, dir, statusURL, fatal, time.Since(start))
}

// firstPage reads the first manifest page, which names the server, before anything is built.
func firstPage(c *cli.Context, in io.Reader, maxLine int) (*fetch.PageReader, *fetch.Page, error) {
	arg := c.Args().First()
	pr := fetch.NewPageReader(in, arg, maxLine)
	first, err := pr.Peek()
	if errors.Is(err, fetch.ErrNoInput) {
		if arg != "" && arg != "-" {
			return nil, nil, fmt.Errorf("%s holds no manifest (is it empty? did the step that wrote it fail?)", arg)
		}
		return nil, nil, tool.ErrNoInput
	}
	return pr, first, err
}

// callbacks show the engine's warnings, retries and limits on stderr and print each verified
// file's path on stdout.
func callbacks(st *tool.Status, paths *pathWriter) fetch.Callbacks {
	return fetch.Callbacks{
		Warn:    func(msg string) { st.Warn("%s", msg) },
		Written: paths.write,
		Retry: func(rel string, attempt int, wait, reason string) {
			st.Line("%s: %s; retrying (%s, attempt %d)", rel, reason, wait, attempt+1)
		},
		Limit: func(n int, reason string) { st.Line("%s: %d parallel downloads", reason, n) },
	}
}

// finish closes a run in which every file was verified: the summary, bulk-kickoff's record
// forgotten once the export is deleted, and the exit status the server's issues ask for.
func finish(st *tool.Status, res *fetch.Result, dir, statusURL string, fatal int, took time.Duration) error {
	if res.Deleted {
		st.Line("deleted the export on the server")
	}
	st.Summary("%d files (%d downloaded now), %d resources, %s in %s, %v", res.Files, res.Downloaded, res.Resources,
		tool.FormatBytes(res.Bytes), dir, took.Round(time.Millisecond))
	if res.Deleted {
		if dir := tool.RecordDir(); dir != "" {
			if err := bulk.RemoveRecord(dir, statusURL); err != nil {
				st.Warn("%v", err)
			}
		}
	}
	if fatal > 0 {
		return fmt.Errorf("the server reported %d fatal or error issues in %s (above); the files it did export are in place", fatal, strings.TrimRight(dir, "/")+"/error/")
	}
	return nil
}

// parallelWithinLimit is --parallel, lowered to what the process's limit on open files allows
// (with a line on st that says so), or an error when the limit leaves no room for one download:
// beyond it, every connection fails with "too many open files" and is retried until it gives up.
// A download holds its socket and its .part, and with --inline its attachments' connections.
func parallelWithinLimit(c *cli.Context, st *tool.Status) (int, error) {
	parallel := c.Int("parallel")
	nofile, limited := tool.OpenFileLimit()
	if !limited {
		return parallel, nil
	}
	per, what := fetch.DescriptorsPerDownload, ""
	if c.Bool("inline") {
		per += c.Int("inline-parallel")
		what = fmt.Sprintf(" with --inline-parallel %d", c.Int("inline-parallel"))
	}
	most := fetch.ParallelWithin(nofile, per)
	if most < 1 {
		return 0, fmt.Errorf("the limit on open files (ulimit -n) is %d: bulk-fetch%s needs at least %d (%d, and %d per parallel download); raise it",
			nofile, what, fetch.FixedDescriptors+per, fetch.FixedDescriptors, per)
	}
	if parallel > most {
		st.Print("the limit on open files (ulimit -n %d) allows %d parallel downloads%s, not --parallel %d: downloading %d at once",
			nofile, most, what, parallel, most)
		parallel = most
	}
	return parallel, nil
}

// checkFlags refuses what no download could fix, before stdin is read, and returns --max-line.
func checkFlags(c *cli.Context, dir string) (int, error) {
	switch {
	case dir == "":
		return 0, tool.UsageErrorf("no export folder: give --dir DIR")
	case c.NArg() > 1:
		return 0, tool.UsageErrorf("too many arguments (want one MANIFEST): %q", c.Args().Slice())
	case c.Int("parallel") < 1:
		return 0, tool.UsageErrorf("--parallel must be at least 1")
	case c.Duration("stall-timeout") <= 0:
		return 0, tool.UsageErrorf("--stall-timeout must be more than 0")
	}
	maxLine, err := tool.MaxLine(c)
	if err != nil {
		return 0, err
	}
	if s := c.String("status-url"); s != "" {
		if u, err := url.Parse(s); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return 0, tool.UsageErrorf("--status-url %q: want an absolute http or https URL", fhirclient.Redact(s))
		}
	}
	return maxLine, nil
}

// newClient builds the client for the export's server (fetch.FindServer), with the token
// endpoint bulk-kickoff recorded when the base is that record's; trusted is the base credentials
// may go to ("" when only the status URL's origin stands in for it).
func newClient(c *cli.Context, st *tool.Status, first *fetch.Page, statusURL string) (*fhirclient.Client, string, error) {
	secrets := len(c.StringSlice("header")) > 0 || tool.HasCredentials(c)
	srv, err := fetch.FindServer(first, c.String("fhir-url"), statusURL, tool.RecordDir(), secrets,
		func(err error) { st.Warn("%v", err) })
	if _, ok := errors.AsType[*fetch.ServerError](err); ok {
		return nil, "", tool.UsageErrorf("%v", err)
	} else if err != nil {
		return nil, "", err
	}
	cfg := tool.ClientConfig{Base: srv.Base, Types: srv.Types, Linked: inlineReads(c, srv.Types), Status: st,
		TokenURL: srv.TokenURL}
	client, err := tool.NewClientWith(c, cfg)
	return client, srv.Trusted, err
}

// pathWriter prints each verified file's path on stdout, as soon as it is verified, so the next
// step of a pipeline can start on it; the first write error stops the printing and is kept.
type pathWriter struct {
	mu   sync.Mutex
	out  *tool.Output
	werr error
}

func (p *pathWriter) write(path string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.werr == nil {
		_, p.werr = io.WriteString(p.out, path+"\n")
	}
	if p.werr == nil {
		p.werr = p.out.Flush()
	}
}

func (p *pathWriter) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.werr
}

// failures keeps every file that failed: the run's error names the first, the others are
// printed before it.
type failures struct {
	mu   sync.Mutex
	errs []error
}

// wrap records each failed file reported to on.Done, keeping the callback already there.
func (f *failures) wrap(c *cli.Context, on *fetch.Callbacks) {
	done := on.Done
	on.Done = func(rel string, err error) {
		if done != nil {
			done(rel, err)
		}
		if err != nil && c.Context.Err() == nil {
			f.mu.Lock()
			f.errs = append(f.errs, err)
			f.mu.Unlock()
		}
	}
}

// printOthers prints the failures the run's error does not already name.
func (f *failures) printOthers(st *tool.Status, runErr error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.errs {
		if !errors.Is(runErr, e) {
			st.Print("%v", e)
		}
	}
}

// printIssues prints the OperationOutcome issues of the export's error files and counts the fatal
// or error ones.
func printIssues(st *tool.Status, res *fetch.Result) int {
	fatal := 0
	if res == nil {
		return 0
	}
	for _, is := range res.Issues {
		if is.Fatal() {
			fatal++
		}
		st.Print("%s: %s: %s", is.File, orDefault(is.Severity, "issue"), is.Text())
	}
	return fatal
}

// explain adds the way out to the failures a user can fix.
func explain(c *cli.Context, err error) error {
	if se, ok := errors.AsType[*fhirclient.StatusError](err); ok && se.StatusCode == http.StatusUnauthorized && !tool.HasCredentials(c) {
		return fmt.Errorf("%w (the files need a token: give --bearer-token, or --smart-client-id and --smart-key)", err)
	}
	if errors.Is(err, exportdir.ErrLocked) {
		return fmt.Errorf("%w (another bulk-fetch is writing there; wait for it, or stop it)", err)
	}
	return err
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// fileCounts are the files the first manifest page lists, and how many of them earlier runs
// verified in dir (state.json of the same export), for the total bar.
func fileCounts(dir string, first *fetch.Page) (files, verified int) {
	m := first.Manifest
	files = len(m.Output) + len(m.Deleted) + len(m.Error)
	if s, err := exportdir.ReadState(dir); err == nil && s.TransactionTime == m.TransactionTime {
		verified = min(len(s.Files), files)
	}
	return files, verified
}
