package load

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/store"
)

// readFolder discovers a folder's files and its export metadata (DESIGN.md §4): the log's Group
// and transactionTime, each overridden by its option; missing either is an *OptionsError.
func readFolder(o *Options, dir string) (store.Source, error) {
	files, err := exportdir.Discover(dir)
	if err != nil {
		return store.Source{}, err
	}
	if part := partFile(dir); part != "" {
		// Completion rows would claim whole tables for a folder that lacks some of its files.
		return store.Source{}, fmt.Errorf("%s: %s is an unfinished download: finish it with bulk-fetch (or remove it) before loading", dir, part)
	}
	src := store.Source{Dir: dir, ExtraTypes: manifestTypes(dir)}
	exp, logPath, err := readExport(dir)
	if err != nil {
		return src, err
	}
	data := slices.ContainsFunc(files, func(f exportdir.File) bool { return f.ItemType != exportdir.ItemError })
	if !data && (exp == nil || !exportCompleted(exp)) {
		// Not an export folder (or the wrong one): loading it would do nothing, or write
		// completion rows for requested types that no download ever looked for. Only a finished
		// download that returned no file proves the Group has none.
		return src, fmt.Errorf("no NDJSON files in %s", dir)
	}
	if src.Export, err = o.export(dir, exp, logPath); err != nil {
		return src, err
	}
	src.Files = dataFiles(files)
	return src, nil
}

// readExport reads the folder's log: the export its last kickoff started, and the log's path.
// A folder without a log, or with a log that has no kickoff, has no export (nil).
func readExport(dir string) (*exportdir.Export, string, error) {
	logPath, err := exportdir.FindLog(dir)
	if errors.Is(err, exportdir.ErrNoLog) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	exp, err := exportdir.ReadLog(logPath)
	if errors.Is(err, exportdir.ErrNoKickoff) {
		return nil, logPath, nil
	}
	if err != nil {
		return nil, "", err
	}
	return exp, logPath, nil
}

// export is the folder's export as the load records it: the log's, overridden by Options.Group
// and Options.Time. Without a Group and a time the rows could not be ordered against other
// exports, so the load cannot start.
func (o *Options) export(dir string, exp *exportdir.Export, logPath string) (store.Export, error) {
	var e store.Export
	var haveGroup, haveTime bool
	if exp != nil {
		e = store.Export{Group: exp.Group, URL: exp.ExportURL, RequestParameters: exp.RequestParameters}
		haveGroup = true
		unfinished, err := downloadUnfinished(dir, exp)
		if err != nil {
			return e, err
		}
		if unfinished && !o.AllowIncomplete {
			// The exportId is a status URL a server chose: redacted like every URL printed.
			return e, fmt.Errorf("%s: the download did not finish (%s has no export_complete for %q): run bulk-fetch again to finish it, or load the rows without completion rows with --allow-incomplete",
				dir, logPath, fhirclient.Redact(exp.ExportID))
		}
		e.Unfinished = unfinished
		if exp.HasTime {
			e.Time, haveTime = store.Micro(exp.TransactionTime), true
		}
	}
	if o.Group != nil {
		e.Group, haveGroup = *o.Group, true
	}
	if o.Time != nil {
		e.Time, haveTime = *o.Time, true
	}
	if !haveGroup || !haveTime {
		what := "no export log"
		if exp != nil {
			what = "the export log has no transactionTime (export not finished?)"
		}
		return e, optionsErrorf("%s: %s: give the export's Group and time with --export-group and --export-timestamp", dir, what)
	}
	return e, nil
}

// dataFiles are the files a load reads: output and deleted/, not error/, which holds
// OperationOutcomes rather than data (DESIGN.md §7).
func dataFiles(files []exportdir.File) []store.File {
	var out []store.File
	for _, f := range files {
		if f.ItemType == exportdir.ItemError {
			continue
		}
		path := f.Path
		out = append(out, store.File{
			Path:         path,
			Deleted:      f.ItemType == exportdir.ItemDeleted,
			ResourceType: f.ResourceType,
			Open:         func() (io.ReadCloser, error) { return exportdir.OpenFile(path) },
		})
	}
	return out
}

// manifestTypes returns the output types the folder's manifest.json names: a server's own types
// are loaded besides FHIR's. A folder without a readable manifest names none.
func manifestTypes(dir string) []string {
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil
	}
	m, err := bulk.ParseManifest(b)
	if err != nil {
		return nil
	}
	var types []string
	for _, it := range m.Output {
		if !slices.Contains(types, it.Type) {
			types = append(types, it.Type)
		}
	}
	return types
}

// downloadUnfinished reports whether the folder records a download of its export that never
// ended. Every downloader whose folders etl-load reads (bulk-fetch, SMART bulk-data-client,
// Cumulus ETL) logs export_complete once every file is on disk, and logs download events (or,
// bulk-fetch, writes .bulkpipe/state.json) as files arrive. So a log with a file's
// download_request or a state with verified files, and no export_complete for the export, is an
// unfinished download: bulk-fetch writes kickoff and status_complete before the first file, so
// those prove nothing. A log with neither (written by hand, or by a tool that logs only the
// kickoff) cannot tell and is trusted, as is a folder without a log, whose Group and time the
// user gives.
func downloadUnfinished(dir string, exp *exportdir.Export) (bool, error) {
	if exportCompleted(exp) {
		return false, nil
	}
	if slices.ContainsFunc(exp.Events, fileRequest) {
		return true, nil
	}
	st, err := exportdir.ReadState(dir)
	if err != nil {
		return false, err
	}
	return st.ExportID != "" || len(st.Files) > 0, nil
}

// fileRequest reports whether e is the download_request of an export file. Attachment downloads
// (ndjson-inline --log appends them to the folder's log) are not: they come after the export.
func fileRequest(e exportdir.Event) bool {
	if e.EventID != "download_request" {
		return false
	}
	var d struct {
		ItemType string `json:"itemType"`
	}
	json.Unmarshal(e.EventDetail, &d)
	return d.ItemType != "attachment"
}

// exportCompleted reports whether the log says every file of its export is on disk.
func exportCompleted(exp *exportdir.Export) bool {
	return slices.ContainsFunc(exp.Events, func(e exportdir.Event) bool { return e.EventID == "export_complete" })
}

// partFile returns a download in progress (bulk-fetch's NAME.part) in dir or its deleted/.
func partFile(dir string) string {
	for _, sub := range []string{"", "deleted"} {
		entries, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".part") && !e.IsDir() {
				return filepath.Join(dir, sub, e.Name())
			}
		}
	}
	return ""
}

// deletions reads the DELETE entries of one deleted/ Bundle line (store.Options.Deletions).
func deletions(line []byte) []store.Deletion {
	var out []store.Deletion
	for _, d := range exportdir.Deletions(line) {
		out = append(out, store.Deletion{ResourceType: d.ResourceType, ID: d.ID})
	}
	return out
}
