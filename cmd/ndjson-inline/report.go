package main

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/bulkpipe/bulkpipe/pkg/attachment"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
)

// maxShown bounds the failure lines printed: a server that lost every note would otherwise
// print one line per note. --log keeps them all.
const maxShown = 20

// fallbackExportID names the export of log events when neither the folder's log nor --log
// names one (DESIGN.md §4 wants an exportId on every event).
const fallbackExportID = "urn:bulkpipe:inline"

// reporter prints failures, progress and counts on stderr (through tool.Status) and writes
// --log events.
type reporter struct {
	st    *tool.Status
	quiet bool

	mu          sync.Mutex
	log         *exportdir.LogWriter
	logPath     string
	logExportID string
	logErr      error
	shown       int
	hidden      int
	done        attachment.Stats // for the progress line
}

func newReporter(c *cli.Context, cfg *config) *reporter {
	return &reporter{st: tool.NewStatus(c), quiet: cfg.quiet}
}

// openLog opens --log for appending. Events join the export that log describes when it has a
// kickoff, so `--log export/log.ndjson` files them under the folder's export.
func (r *reporter) openLog(path string) error {
	r.logExportID = fallbackExportID
	if exp, err := exportdir.ReadLog(path); err == nil {
		r.logExportID = exp.ExportID
	} else if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, exportdir.ErrNoKickoff) {
		return fmt.Errorf("--log: %w", err)
	}
	lw, err := exportdir.OpenLog(path)
	if err != nil {
		return fmt.Errorf("--log: %w", err)
	}
	r.log, r.logPath = lw, path
	return nil
}

func (r *reporter) close() {
	if r.log != nil {
		r.log.Close()
	}
}

// say prints one "ndjson-inline: message" line, --quiet or not (callers decide), clearing the
// progress line first.
func (r *reporter) say(format string, a ...any) { r.st.Print(format, a...) }

// download reports one attachment: failures on stderr (skips too, unless --quiet), an event in
// --log, and the progress line on a terminal. exportID is the export of the input's folder.
func (r *reporter) download(d attachment.Download, exportID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch d.Result {
	case attachment.Inlined:
		r.done.Inlined++
	case attachment.Failed:
		r.done.Failed++
	default:
		r.done.Skipped++
	}
	if d.Result == attachment.Failed || d.Result == attachment.Skipped && !r.quiet {
		if r.shown < maxShown {
			r.shown++
			what := "failed"
			if d.Result == attachment.Skipped {
				what = "skipped"
			}
			hint := ""
			if _, ok := errors.AsType[*fhirclient.ForbiddenAddressError](d.Err); ok {
				hint = " (--allow-link-local allows it)"
			}
			r.st.Print("%s:%d: %s %s %s: %v%s", d.Name, d.Line, d.Resource, d.Path, what, d.Err, hint)
		} else {
			r.hidden++
		}
	}
	if r.log != nil && r.logErr == nil {
		if id, detail := d.Event(); id != "" {
			if exportID == "" {
				exportID = r.logExportID
			}
			ev, err := exportdir.NewEvent(exportID, id, detail, time.Now())
			if err == nil {
				err = r.log.Write(ev, false)
			}
			r.logErr = err
		}
	}
	r.st.Progress(false, "attachments: %d inlined, %d skipped, %d failed", r.done.Inlined, r.done.Skipped, r.done.Failed)
}

// finish ends the progress line and says how many failure lines were not shown.
func (r *reporter) finish() {
	r.mu.Lock()
	r.st.End()
	hidden := r.hidden
	r.mu.Unlock()
	if hidden > 0 {
		more := "see --log for all of them"
		if r.log != nil {
			more = r.logPath + " has all of them"
		}
		r.say("%d more failed or skipped attachments not shown (%s)", hidden, more)
	}
}

// err is the first error writing --log.
func (r *reporter) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.logErr != nil {
		return fmt.Errorf("--log %s: %w", r.logPath, r.logErr)
	}
	return nil
}
