package load

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/store"
	"github.com/bulkpipe/bulkpipe/pkg/store/duckdb"
)

const (
	kickoff   = `{"exportId":"https://x/status/1","timestamp":"2024-05-01T11:00:00Z","eventId":"kickoff","eventDetail":{"exportUrl":"https://x/fhir/Group/g1/$export","requestParameters":{}}}` + "\n"
	complete  = `{"exportId":"https://x/status/1","timestamp":"2024-05-01T12:30:00Z","eventId":"status_complete","eventDetail":{"transactionTime":"2024-05-01T12:00:00Z"}}` + "\n"
	request   = `{"exportId":"https://x/status/1","timestamp":"2024-05-01T12:31:00Z","eventId":"download_request","eventDetail":{"fileUrl":"https://x/f/1","itemType":"output","resourceType":"Patient"}}` + "\n"
	attReq    = `{"exportId":"https://x/status/1","timestamp":"2024-05-01T13:00:00Z","eventId":"download_request","eventDetail":{"fileUrl":"https://x/Binary/1","itemType":"attachment"}}` + "\n"
	exportEnd = `{"exportId":"https://x/status/1","timestamp":"2024-05-01T12:40:00Z","eventId":"export_complete","eventDetail":{"files":1}}` + "\n"
	patients  = `{"resourceType":"Patient","id":"p1"}` + "\n" + `{"resourceType":"Patient","id":"p2"}` + "\n"
)

// folder writes files (name → content) into a new folder and returns its path.
func folder(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// options are Options for a load into a new database file in t's folder, with its warnings
// collected into *warns.
func options(t *testing.T, warns *[]string, dirs ...string) *Options {
	db := filepath.Join(t.TempDir(), "test.duckdb")
	return &Options{
		Dirs:    dirs,
		Open:    func(ctx context.Context) (*duckdb.DB, error) { return duckdb.Open(ctx, db) },
		Now:     func() time.Time { return time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC) },
		Version: "test",
		Warn:    func(msg string) { *warns = append(*warns, msg) },
	}
}

// TestRunChecksEveryFolderFirst: a folder that cannot be loaded stops the run before the
// database is opened or the server's client is built, whichever position it has, so no folder
// before it is loaded and its error is the one reported.
func TestRunChecksEveryFolderFirst(t *testing.T) {
	good := folder(t, map[string]string{"log.ndjson": kickoff + complete, "Patient.000.ndjson": patients})
	tests := []struct {
		name    string
		files   map[string]string
		options bool // the error is an *OptionsError
		want    string
	}{
		{"no log", map[string]string{"Patient.000.ndjson": patients}, true, "no export log: give the export's Group and time"},
		{"no time", map[string]string{"log.ndjson": kickoff, "Patient.000.ndjson": patients}, true, "the export log has no transactionTime"},
		{"part file", map[string]string{"log.ndjson": kickoff + complete, "Patient.000.ndjson.part": patients}, false, "is an unfinished download"},
		{"no files", map[string]string{"log.ndjson": kickoff + complete}, false, "no NDJSON files in"},
		{"unfinished", map[string]string{"log.ndjson": kickoff + complete + request, "Patient.000.ndjson": patients}, false, "the download did not finish"},
		{"unfinished by state", map[string]string{"log.ndjson": kickoff + complete, "Patient.000.ndjson": patients,
			".bulkpipe/state.json": `{"exportId":"https://x/status/1","files":[]}`}, false, "the download did not finish"},
	}
	for _, tt := range tests {
		bad := folder(t, tt.files)
		var warns []string
		o := options(t, &warns, good, bad)
		opened, connected := false, false
		open := o.Open
		o.Open = func(ctx context.Context) (*duckdb.DB, error) { opened = true; return open(ctx) }
		o.FHIR = func() (*fhirclient.Client, error) { connected = true; return nil, errors.New("no server in this test") }
		_, err := Run(t.Context(), o)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Run = %v, want an error saying %q", tt.name, err, tt.want)
			continue
		}
		if _, ok := errors.AsType[*OptionsError](err); ok != tt.options {
			t.Errorf("%s: Run = %T, want an *OptionsError: %v", tt.name, err, tt.options)
		}
		if opened || connected {
			t.Errorf("%s: Run opened the database (%v) or connected to the server (%v) before refusing %s", tt.name, opened, connected, bad)
		}
	}
}

// TestRunOverrides: Group and Time stand in for a missing log, and win over a log's.
func TestRunOverrides(t *testing.T) {
	group, at := "g9", time.Date(2023, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name      string
		files     map[string]string
		group     *string
		at        *time.Time
		wantGroup string
		wantTime  time.Time
	}{
		{"log", map[string]string{"log.ndjson": kickoff + complete, "Patient.000.ndjson": patients}, nil, nil, "g1", time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)},
		{"no log", map[string]string{"Patient.000.ndjson": patients}, &group, &at, group, at},
		{"over the log", map[string]string{"log.ndjson": kickoff + complete, "Patient.000.ndjson": patients}, &group, &at, group, at},
	}
	for _, tt := range tests {
		o := &Options{Group: tt.group, Time: tt.at}
		src, err := readFolder(o, folder(t, tt.files))
		if err != nil {
			t.Errorf("%s: readFolder: %v", tt.name, err)
			continue
		}
		if src.Export.Group != tt.wantGroup || !src.Export.Time.Equal(tt.wantTime) {
			t.Errorf("%s: readFolder = Group %q, time %v, want %q, %v", tt.name, src.Export.Group, src.Export.Time, tt.wantGroup, tt.wantTime)
		}
	}
}

// TestRunLoads: a finished folder and an unfinished one under AllowIncomplete load in order,
// with the callbacks in order per folder and the incomplete encounters explained.
func TestRunLoads(t *testing.T) {
	enc := `{"resourceType":"Encounter","id":"e1"}` + "\n"
	finished := folder(t, map[string]string{"log.ndjson": kickoff + complete + request + attReq + exportEnd, "Patient.000.ndjson": patients, "Encounter.000.ndjson": enc})
	unfinished := folder(t, map[string]string{"log.ndjson": kickoff + complete + request, "Patient.000.ndjson": patients})
	var warns, calls []string
	o := options(t, &warns, finished, unfinished)
	o.AllowIncomplete = true
	o.Start = func(dir string) { calls = append(calls, "start "+dir) }
	o.Done = func(dir string, st store.Stats, err error) {
		calls = append(calls, "done "+dir)
		if err != nil || st.Rows == 0 {
			t.Errorf("Done(%s) = %d rows, %v; want rows and no error", dir, st.Rows, err)
		}
	}
	var counts []duckdb.Count
	o.Summary = func(c []duckdb.Count) { counts = c }
	res, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Folders != 2 || res.Rows != 5 {
		t.Errorf("Run = %d folders, %d rows, want 2, 5", res.Folders, res.Rows)
	}
	if want := []string{"start " + finished, "done " + finished, "start " + unfinished, "done " + unfinished}; !slices.Equal(calls, want) {
		t.Errorf("callbacks = %q, want %q", calls, want)
	}
	if i := slices.IndexFunc(counts, func(c duckdb.Count) bool { return c.Name == "patient" }); i < 0 || counts[i].Rows != 2 {
		t.Errorf("Summary counts = %v, want patient 2", counts)
	}
	want := []string{
		unfinished + ": the download did not finish: rows loaded without completion rows (--allow-incomplete)",
		`group "g1": 1 encounter is incomplete: none of the ten linked tables`,
	}
	if len(warns) != len(want) {
		t.Fatalf("warnings = %q, want %d", warns, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(warns[i], want[i]) {
			t.Errorf("warning %d = %q, want it to start %q", i, warns[i], want[i])
		}
	}
}

// TestExplain: the incomplete encounters of each group, explained for the groups loaded (or
// every group), with the verbs agreeing.
func TestExplain(t *testing.T) {
	var all []duckdb.Gap
	for _, tb := range store.LinkedTables {
		all = append(all, duckdb.Gap{Group: "a", Table: tb, Encounters: 3})
	}
	tests := []struct {
		name   string
		gaps   []duckdb.Gap
		every  bool
		groups []string
		want   []string
	}{
		{"none", nil, true, nil, nil},
		{"all ten", all, false, []string{"a"}, []string{`group "a": 3 encounters are incomplete: none of the ten linked tables (` + strings.Join(store.LinkedTables, ", ") + `) was exported for the group yet; export them and load that folder`}},
		{"another group", all, false, []string{"b"}, nil},
		{"one never, one stale", []duckdb.Gap{{Group: "b", Table: "observation", Encounters: 1}, {Group: "b", Table: "specimen", Encounters: 2, Exported: true}}, true, nil, []string{
			`group "b": 1 encounter is incomplete: observation was never exported for the group (an encounter is complete once all ten linked tables are); export it and load that folder too, or, if the server holds none, load the export folder again with --assume-complete Observation`,
			`group "b": 2 encounters are waiting for a newer export of specimen: it was exported only before those encounters were`,
		}},
		{"two never", []duckdb.Gap{{Group: "", Table: "condition", Encounters: 4}, {Group: "", Table: "procedure", Encounters: 5}, {Group: "z", Table: "specimen", Encounters: 1}}, false, []string{""}, []string{
			`group "": 5 encounters are incomplete: condition, procedure were never exported for the group (an encounter is complete once all ten linked tables are); export them and load that folder too, or, if the server holds none, load the export folder again with --assume-complete Condition,Procedure`,
		}},
	}
	for _, tt := range tests {
		if got := explain(tt.gaps, tt.every, tt.groups); !slices.Equal(got, tt.want) {
			t.Errorf("%s: explain = %q, want %q", tt.name, got, tt.want)
		}
	}
}
