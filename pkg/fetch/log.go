package fetch

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
)

// openLog opens DIR/log.ndjson and makes sure it describes this export (DESIGN.md §4): the
// export's events from Options.LogFrom are copied in (once: a rerun does not copy them again),
// then a kickoff and a status_complete are synthesized from the context and the manifest when
// the log still has none for this exportId, so that readers find the Group and the time.
func (e *engine) openLog() error {
	// Opened before it is read, so that a symbolic link there is refused before anything else.
	var err error
	if e.log, err = exportdir.OpenFolderLog(e.o.Dir); err != nil {
		return err
	}
	existing, err := exportdir.LogEvents(filepath.Join(e.o.Dir, exportdir.LogName))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	seen := map[string]bool{}
	has := map[string]bool{}
	for _, ev := range existing {
		seen[eventKey(ev)] = true
		if ev.ExportID == e.exportID {
			has[ev.EventID] = true
		}
	}
	if e.o.LogFrom != "" {
		events, err := exportdir.LogEvents(e.o.LogFrom)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			e.warn(fmt.Sprintf("--log %s does not exist: writing the export's kickoff and completion from the manifest instead", e.o.LogFrom))
		case err != nil:
			return err
		}
		for _, ev := range events {
			if ev.ExportID != e.exportID || seen[eventKey(ev)] {
				continue
			}
			sync := ev.EventID == "kickoff" || ev.EventID == "status_complete"
			if err := e.log.Write(ev, sync); err != nil {
				return err
			}
			seen[eventKey(ev)] = true
			has[ev.EventID] = true
		}
	}
	now := e.now()
	if !has["kickoff"] {
		detail := exportdir.NewKickoff(e.exportURL, requestParameters(e.exportURL))
		detail.Synthesized = "bulk-fetch: from the export context and the manifest"
		if e.o.FHIRBase != "" {
			detail.Context = &exportdir.KickoffContext{FHIRBase: e.o.FHIRBase}
		}
		ev, err := exportdir.NewEvent(e.exportID, exportdir.EventKickoff, detail, now)
		if err != nil {
			return err
		}
		ev.Client, ev.ClientVersion = "bulkpipe", e.o.Version
		if err := e.log.Write(ev, true); err != nil {
			return err
		}
	}
	if !has["status_complete"] && e.txTime != "" {
		if err := e.logEvent(exportdir.EventStatusComplete, exportdir.StatusComplete{TransactionTime: e.txTime}, true); err != nil {
			return err
		}
	}
	return nil
}

// eventKey identifies an event for copying it once.
func eventKey(ev exportdir.Event) string {
	return ev.ExportID + "\x00" + ev.Timestamp + "\x00" + ev.EventID + "\x00" + string(ev.EventDetail)
}

// requestParameters are the kickoff URL's query parameters as the kickoff event records them:
// each as one comma list, patient replaced by _patientCount (DESIGN.md §4).
func requestParameters(exportURL string) map[string]any {
	params := map[string]any{}
	u, err := url.Parse(exportURL)
	if err != nil {
		return params
	}
	for k, vs := range u.Query() {
		if k == "patient" {
			n := 0
			for _, v := range vs {
				n += len(strings.Split(v, ","))
			}
			params["_patientCount"] = n
			continue
		}
		params[k] = strings.Join(vs, ",")
	}
	return params
}

// logEvent appends one event of this export to DIR/log.ndjson.
func (e *engine) logEvent(id string, detail any, sync bool) error {
	if e.log == nil {
		return nil
	}
	ev, err := exportdir.NewEvent(e.exportID, id, detail, e.now())
	if err != nil {
		return err
	}
	return e.log.Write(ev, sync)
}

// logError records a failed attempt as download_error, with the server's answer when there was
// one. A log that cannot be written is reported, not fatal: the download itself goes on.
func (e *engine) logError(fileURL string, err error) {
	detail := exportdir.NewDownloadError(fhirclient.Redact(fileURL), err)
	if werr := e.logEvent(exportdir.EventDownloadError, detail, false); werr != nil {
		e.warn(werr.Error())
	}
}
