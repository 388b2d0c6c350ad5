// Command bulk-poll waits on a FHIR Bulk Data status URL and prints the export's manifest, one
// line of JSON per manifest page, the second step of `bulk-kickoff URL | bulk-poll | bulk-fetch`
// (DESIGN.md §1, §2). Rerunning it with the same URL is how a user resumes.
package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/tidwall/gjson"
	"github.com/urfave/cli/v2"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
)

func main() { os.Exit(tool.Main(newApp(tool.Deps{}))) }

const description = `Polls a Bulk Data status URL until the export is complete, then prints the manifest on
stdout as one line of JSON with a "_bulkpipe" member (statusUrl, fhirBase, exportUrl, expires,
page) for bulk-fetch. With partial manifests (--allow-partial-manifests at kickoff) each page is
printed as soon as it arrives, so bulk-fetch can start while the export runs; --merge prints one
merged manifest at the end instead. The status URL is the argument, or the first line of stdin.

Waits honour Retry-After (capped by --max-wait) and back off exponentially otherwise; progress
goes to stderr. Interrupted, killed or timed out, bulk-poll is resumed by running it again with
the same URL. --cancel deletes the export on the server instead.

Examples:
   bulk-kickoff "$BULK_FHIR_URL/Group/abc" --type Patient,Condition | bulk-poll > manifest.ndjson
   bulk-poll 'https://ehr.example/fhir/status/42' --log log.ndjson -o manifest.ndjson
   bulk-poll --merge --max-wait 1m < status-url.txt
   bulk-poll --cancel 'https://ehr.example/fhir/status/42'`

// newApp is bulk-poll's command line, run with d (tests pass their clock and sleeps).
func newApp(d tool.Deps) *cli.App {
	return tool.Command{Name: "bulk-poll", Usage: "wait for a FHIR Bulk Data export and print its manifest",
		ArgsUsage: "[STATUS_URL|-]", Description: description, Flags: tool.Flags(pollFlags(), tool.ServerFlags()), Run: run}.App(d)
}

func pollFlags() []cli.Flag {
	return []cli.Flag{
		tool.OutputFlag("the manifest, when complete,"),
		&cli.BoolFlag{Name: "merge", Usage: "print one merged manifest at the end instead of each page as it arrives"},
		&cli.BoolFlag{Name: "cancel", Usage: "DELETE the export on the server instead of polling (202 or 404 both succeed)"},
		&cli.DurationFlag{Name: "max-wait", Value: bulk.DefaultMaxWait, Usage: "longest single wait between polls and retries, whatever Retry-After says (`DURATION`)"},
		&cli.DurationFlag{Name: "timeout", Value: bulk.DefaultTimeout, Usage: "give up when the export is not complete after `DURATION`"},
		&cli.StringFlag{Name: "log", EnvVars: []string{"BULK_LOG"}, Usage: "append status events to the export log `FILE` (log.ndjson format)"},
		&cli.BoolFlag{Name: "log-progress", Usage: "also log a status_progress event for every 202"},
		tool.QuietFlag(),
	}
}

func run(c *cli.Context, d tool.Deps) error {
	st := d.Status(c)
	defer st.End()
	statusURL, err := statusURLArg(c)
	if err != nil {
		return err
	}
	maxWait := c.Duration("max-wait")
	if maxWait <= 0 || c.Duration("timeout") < 0 {
		return tool.UsageErrorf("--max-wait must be > 0 and --timeout >= 0")
	}
	logPath := c.String("log")
	ex, err := exportdir.FindExport(c.String("fhir-url"), tool.RecordDir(), logPath, statusURL, func(err error) { st.Warn("%v", err) })
	if err != nil {
		return err
	}
	log := &statusLog{statusURL: statusURL, now: d.Now}
	if logPath != "" {
		if log.w, err = exportdir.OpenLog(logPath); err != nil {
			return err
		}
		defer log.w.Close()
	}
	client, err := newClient(c, d, st, ex, statusURL)
	if err != nil {
		return err
	}
	if c.Bool("cancel") {
		return cancel(c, st, client, statusURL)
	}
	out, err := tool.CreateOutput(c, c.String("output"))
	if err != nil {
		return err
	}
	defer out.Abort()
	// The status URL is what resumes the export (bulk-poll URL): shown on or off a terminal.
	st.Line("polling %s", fhirclient.Redact(statusURL))
	sink := &pageSink{c: c, st: st, out: out, log: log, ex: ex, statusURL: statusURL}
	rep := &reporter{st: st, log: log, logProgress: c.Bool("log-progress")}
	opts := bulk.PollOptions{MaxWait: maxWait, Timeout: c.Duration("timeout"), Now: d.Now, Sleep: d.Sleep,
		ReadTimeout: d.ReadTimeout, Progress: rep.progress}
	if perr := bulk.Poll(c.Context, client, statusURL, opts, sink.add); perr != nil {
		if c.Context.Err() == nil {
			if err := log.event(exportdir.EventStatusError, exportdir.NewErrorDetail(perr), false); err != nil {
				st.Warn("%v", err)
			}
		}
		if errors.Is(perr, bulk.ErrTimeout) {
			perr = fmt.Errorf("%w; raise --timeout, or run bulk-poll again with the same URL", perr)
		}
		return authHint(c, perr)
	}
	if err := sink.finish(); err != nil {
		return err
	}
	if err := out.Commit(); err != nil {
		return err
	}
	st.Summary("export complete: %d output, %d deleted, %d error files", sink.total.Output, sink.total.Deleted, sink.total.Error)
	return nil
}

// newClient builds the client for the status URL's server, whose origin it trusts (DESIGN.md
// §2, token safety): the status URL comes from the server the export was started on.
func newClient(c *cli.Context, d tool.Deps, st *tool.Status, ex *exportdir.Known, statusURL string) (*fhirclient.Client, error) {
	su, _ := url.Parse(statusURL)
	client, err := tool.NewClientWith(c, tool.ClientConfig{Base: ex.Base, Origin: su.Scheme + "://" + su.Host, Types: ex.Types,
		TokenURL: ex.TokenURL, Status: st, Now: d.Now, Sleep: d.Sleep,
		MaxWait: map[fhirclient.Route]time.Duration{fhirclient.RouteStatus: c.Duration("max-wait")}})
	if err != nil {
		return nil, err
	}
	if err := client.Trust(statusURL); err != nil {
		return nil, tool.UsageErrorf("status URL: %v", err)
	}
	return client, nil
}

// reporter shows each poll's progress, and logs it with --log-progress.
type reporter struct {
	st          *tool.Status
	log         *statusLog
	logProgress bool
}

func (r *reporter) progress(p bulk.Progress) {
	if p.Err != nil {
		// A failed poll about to be retried is a diagnostic, as every tool's retries are.
		r.st.Line("%s", progressText(p))
	} else {
		r.st.Progress(true, "%s", progressText(p))
	}
	if r.logProgress && p.Err == nil {
		if err := r.log.event(exportdir.EventStatusProgress, exportdir.StatusProgress{XProgressHeader: p.XProgress,
			RetryAfterHeader: p.RetryAfter}, false); err != nil {
			r.st.Warn("%v", err)
		}
	}
	tool.Failpoint("poll.wait")
}

// cancel DELETEs the export (bulk-poll --cancel) and forgets bulk-kickoff's record of it.
func cancel(c *cli.Context, st *tool.Status, client *fhirclient.Client, statusURL string) error {
	if err := bulk.Cancel(c.Context, client, statusURL); err != nil {
		return authHint(c, err)
	}
	st.Summary("cancelled %s", fhirclient.Redact(statusURL))
	if dir := tool.RecordDir(); dir != "" {
		if err := bulk.RemoveRecord(dir, statusURL); err != nil {
			st.Warn("%v", err)
		}
	}
	return nil
}

// statusLog appends the export's status events to --log, when one is given.
type statusLog struct {
	w         *exportdir.LogWriter // nil: no --log
	statusURL string
	now       func() time.Time
}

func (l *statusLog) event(id string, detail any, sync bool) error {
	if l.w == nil {
		return nil
	}
	e, err := exportdir.NewEvent(l.statusURL, id, detail, l.now())
	if err != nil {
		return err
	}
	return l.w.Write(e, sync)
}

// pageSink takes each manifest page as it arrives: printed at once (or kept for --merge),
// counted, and logged.
type pageSink struct {
	c         *cli.Context
	st        *tool.Status
	out       *tool.Output
	log       *statusLog
	ex        *exportdir.Known
	statusURL string

	pages [][]byte // with --merge
	total bulk.Totals
}

func (s *pageSink) add(p bulk.Page) error {
	learn(s.ex, p.Raw)
	o, del, e := s.total.Add(p)
	if s.c.Bool("merge") {
		s.pages = append(s.pages, p.Raw)
	} else if err := writeManifest(s.out, p.Raw, bulk.Context{StatusURL: s.statusURL, FHIRBase: s.ex.Base,
		ExportURL: s.ex.ExportURL, Expires: p.Expires, Page: p.Number}); err != nil {
		return err
	}
	running := ""
	if p.Partial {
		running = " (export still running)"
	}
	s.st.Line("manifest page %d: %d output, %d deleted, %d error files%s", p.Number, o, del, e, running)
	tool.Failpoint("poll.page")
	return s.log.event(exportdir.EventStatusPageComplete, exportdir.StatusPageComplete{TransactionTime: p.TransactionTime,
		OutputFileCount: o, DeletedFileCount: del, ErrorFileCount: e}, false)
}

// finish writes the merged manifest (--merge) and the export's closing events.
func (s *pageSink) finish() error {
	if s.c.Bool("merge") {
		merged, err := bulk.MergePages(s.pages)
		if err != nil {
			return err
		}
		if err := writeManifest(s.out, merged, bulk.Context{StatusURL: s.statusURL, FHIRBase: s.ex.Base,
			ExportURL: s.ex.ExportURL, Expires: s.total.Expires, Page: 1}); err != nil {
			return err
		}
	}
	if err := s.log.event(exportdir.EventStatusComplete, exportdir.StatusComplete{TransactionTime: s.total.TransactionTime}, true); err != nil {
		return err
	}
	return s.log.event(exportdir.EventManifestComplete, exportdir.ManifestComplete{TransactionTime: s.total.TransactionTime,
		TotalOutputFileCount: s.total.Output, TotalDeletedFileCount: s.total.Deleted, TotalErrorFileCount: s.total.Error,
		TotalManifests: s.total.Pages}, false)
}

// statusURLArg is the STATUS_URL argument, or the first line of stdin ("-" or no argument).
func statusURLArg(c *cli.Context) (string, error) {
	if c.NArg() > 1 {
		return "", tool.UsageErrorf("too many arguments (want one STATUS_URL): %q", c.Args().Slice())
	}
	arg := c.Args().First()
	raw := arg
	if arg == "" || arg == "-" {
		in, err := tool.Input(c, arg)
		if err != nil {
			return "", err
		}
		defer in.Close()
		if raw, err = tool.FirstLine(in); err != nil {
			return "", err
		}
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		msg := fmt.Sprintf("status URL %q: want an absolute http or https URL", fhirclient.Redact(raw))
		if arg == "" || arg == "-" {
			return "", errors.New(msg + " on the first line of stdin")
		}
		return "", tool.UsageErrorf("%s", msg)
	}
	return raw, nil
}

// learn records the manifest's request member (the kickoff URL; STU1–3) as the export URL when
// none is known, for the log's Group only: the server wrote it, so it is never a FHIR base.
func learn(k *exportdir.Known, manifest []byte) {
	if k.ExportURL == "" {
		k.ExportURL = gjson.GetBytes(manifest, "request").String()
	}
}

func writeManifest(out *tool.Output, raw []byte, ctx bulk.Context) error {
	line, err := bulk.WithContext(raw, ctx)
	if err != nil {
		return fmt.Errorf("manifest page %d: %w", ctx.Page, err)
	}
	if _, err := out.Write(append(line, '\n')); err != nil {
		return err
	}
	// Each page reaches bulk-fetch as soon as it is complete.
	return out.Flush()
}

// authHint explains a 401 when bulk-poll had no way to get a token (DESIGN.md §1).
func authHint(c *cli.Context, err error) error {
	se, ok := errors.AsType[*fhirclient.StatusError](err)
	if !ok || se.StatusCode != http.StatusUnauthorized {
		return err
	}
	if !tool.HasCredentials(c) {
		return fmt.Errorf("%w (the server asks for a token: give SMART credentials, --smart-client-id and --smart-key, "+
			"with --fhir-url or --token-url so bulk-poll can find the token endpoint, or --bearer-token)", err)
	}
	return err
}

// progressText is one progress report, for the live line or a plain line.
func progressText(p bulk.Progress) string {
	var b strings.Builder
	if p.Page > 1 {
		fmt.Fprintf(&b, "page %d: ", p.Page)
	}
	next := "next poll"
	if p.Err != nil {
		// A transient OperationOutcome or a body cut short: the export itself is fine.
		fmt.Fprintf(&b, "%v", p.Err)
		next = "trying again"
	} else {
		b.WriteString("in progress")
		if p.XProgress != "" {
			fmt.Fprintf(&b, " (%s)", oneLine(p.XProgress, 100))
		}
	}
	fmt.Fprintf(&b, "; %s in %v (poll %d, %v elapsed)", next, p.Wait.Round(time.Millisecond), p.Attempt,
		p.Elapsed.Round(time.Second))
	return b.String()
}

// oneLine keeps server text from breaking the line it is shown on.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		s = string(r[:n]) + "…"
	}
	return s
}
