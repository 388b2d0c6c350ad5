package incremental

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/store"
)

const tx = "2026-12-04T02:00:00.123Z"

// folder writes an export folder: a log with a kickoff of exportURL with params, a
// status_complete at tx, export_complete when complete, and one file per type.
func folder(t *testing.T, exportURL, params string, complete bool, types ...string) string {
	t.Helper()
	dir := t.TempDir()
	id := "http://s/status/1"
	log := `{"exportId":"` + id + `","timestamp":"2026-12-04T02:00:00Z","eventId":"kickoff","eventDetail":{"exportUrl":"` + exportURL + `","requestParameters":` + params + `}}` + "\n" +
		`{"exportId":"` + id + `","timestamp":"2026-12-04T02:01:00Z","eventId":"status_complete","eventDetail":{"transactionTime":"` + tx + `"}}` + "\n"
	if complete {
		log += `{"exportId":"` + id + `","timestamp":"2026-12-04T02:02:00Z","eventId":"export_complete","eventDetail":{}}` + "\n"
	}
	write(t, filepath.Join(dir, "log.ndjson"), log)
	for _, typ := range types {
		write(t, filepath.Join(dir, typ+".000.ndjson"), `{"resourceType":"`+typ+`","id":"1"}`+"\n")
	}
	return dir
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFromFolder(t *testing.T) {
	group := Want{Level: bulk.LevelGroup, Group: "cohort", Types: []string{"Patient", "Condition"}}
	sys := Want{Level: bulk.LevelSystem}
	txTime, _ := time.Parse(time.RFC3339Nano, tx)
	tests := []struct {
		name     string
		dir      func(t *testing.T) string
		want     Want
		since    time.Time
		reason   string // in Choice.Reason, or the error
		unusable bool
	}{
		{"group, same types", func(t *testing.T) string {
			return folder(t, "http://s/fhir/Group/cohort/$export?_type=Patient,Condition", `{"_type":"Patient,Condition"}`, true, "Patient", "Condition")
		}, group, txTime, `the transactionTime of the export in DIR (complete, same Group "cohort", types Patient,Condition)`, false},
		{"a requested type with no file is complete", func(t *testing.T) string {
			return folder(t, "http://s/fhir/Group/cohort/$export", `{"_type":"Patient,Condition"}`, true, "Patient")
		}, group, txTime, "", false},
		{"_until earlier than transactionTime", func(t *testing.T) string {
			return folder(t, "http://s/fhir/Group/cohort/$export", `{"_type":"Patient,Condition","_until":"2026-12-01T00:00:00Z"}`, true, "Patient", "Condition")
		}, group, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), "the _until (earlier than its transactionTime)", false},
		{"all types after all types", func(t *testing.T) string {
			return folder(t, "http://s/fhir/$export", `{}`, true, "Patient")
		}, sys, txTime, "same system level, all types", false},
		{"some types after all types", func(t *testing.T) string {
			return folder(t, "http://s/fhir/$export", `{}`, true, "Patient")
		}, Want{Level: bulk.LevelSystem, Types: []string{"Patient", "Condition"}}, txTime, "", false},
		{"unfinished download", func(t *testing.T) string {
			return folder(t, "http://s/fhir/Group/cohort/$export", `{"_type":"Patient,Condition"}`, false, "Patient", "Condition")
		}, group, time.Time{}, "its download did not finish (no export_complete in", true},
		{"another Group", func(t *testing.T) string {
			return folder(t, "http://s/fhir/Group/other/$export", `{"_type":"Patient,Condition"}`, true, "Patient", "Condition")
		}, group, time.Time{}, `it is an export of Group "other", not Group "cohort"`, true},
		{"system level after Patient level", func(t *testing.T) string {
			return folder(t, "http://s/fhir/Patient/$export", `{}`, true, "Patient")
		}, sys, time.Time{}, "it is an export of Patient level, not system level", true},
		{"fewer types", func(t *testing.T) string {
			return folder(t, "http://s/fhir/Group/cohort/$export", `{"_type":"Patient"}`, true, "Patient")
		}, group, time.Time{}, "Condition not in it; export them in full first (the same kickoff with --type Condition and without --since)", true},
		{"all types after some", func(t *testing.T) string {
			return folder(t, "http://s/fhir/$export", `{"_type":"Patient"}`, true, "Patient")
		}, sys, time.Time{}, "it asked only for types Patient, and this export asks for every type", true},
		{"sliced by _typeFilter", func(t *testing.T) string {
			return folder(t, "http://s/fhir/Group/cohort/$export", `{"_type":"Patient,Condition","_typeFilter":"Condition?category=problem-list-item"}`, true, "Patient", "Condition")
		}, group, time.Time{}, "not complete in it: Condition (exported with _typeFilter", true},
		{"limited to patients", func(t *testing.T) string {
			return folder(t, "http://s/fhir/Group/cohort/$export", `{"_type":"Patient,Condition","_patientCount":2}`, true, "Patient", "Condition")
		}, group, time.Time{}, "limited to 2 listed patients", true},
		{"no log", func(t *testing.T) string { return t.TempDir() }, group, time.Time{}, "it has no export log", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.dir(t)
			got, err := Choose(context.Background(), dir, tt.want, nil)
			if tt.unusable {
				var ue *UnusableError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.reason) {
					t.Fatalf("Choose = %+v, %v; want an *UnusableError with %q", got, err, tt.reason)
				}
				if !strings.Contains(err.Error(), "export") || ue.Hint == "" {
					t.Errorf("Choose error %q says nothing of what to do", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Choose: %v", err)
			}
			if !got.Since.Equal(tt.since) {
				t.Errorf("Choose since = %s, want %s", got.Since, tt.since)
			}
			if reason := strings.ReplaceAll(got.Reason, dir, "DIR"); !strings.Contains(reason, tt.reason) {
				t.Errorf("Choose reason = %q, want %q in it", reason, tt.reason)
			}
		})
	}
}

func TestFromRows(t *testing.T) {
	t1 := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	t2 := t1.Add(24 * time.Hour)
	g := "http://s/fhir/Group/cohort/$export"
	rows := []store.CompletionRow{
		{Table: "patient", Group: "cohort", ExportTime: t1, ExportURL: g},
		{Table: "condition", Group: "cohort", ExportTime: t1, ExportURL: g},
		{Table: "patient", Group: "cohort", ExportTime: t2, ExportURL: g + "?_since=x"},
		{Table: "condition", Group: "cohort", ExportTime: t2, ExportURL: g + "?_since=x"},
		{Table: "observation", Group: "cohort", ExportTime: t1, ExportURL: g},
		{Table: "patient", Group: "", ExportTime: t2.Add(time.Hour), ExportURL: "http://s/fhir/$export"},
		{Table: "encounter", Group: "", ExportTime: t1, ExportURL: "http://s/fhir/Patient/$export"},
		// Loaded with --export-group renamed: the row's Group is what counts.
		{Table: "patient", Group: "renamed", ExportTime: t1, ExportURL: "http://s/fhir/Group/original/$export"},
	}
	group := func(types ...string) Want { return Want{Level: bulk.LevelGroup, Group: "cohort", Types: types} }
	tests := []struct {
		name   string
		want   Want
		since  time.Time
		reason string
		err    bool
	}{
		{"latest of the same export", group("Patient", "Condition"), t2, `the transactionTime of the latest complete export in DB (same Group "cohort", types Patient,Condition, ` + g + "?_since=x)", false},
		{"the earliest of the types' latest", group("Patient", "Observation"), t1, "the earliest of the latest complete exports in DB of each type (same Group \"cohort\": Patient 2026-12-02T02:00:00Z, Observation 2026-12-01T02:00:00Z)", false},
		{"--export-group", Want{Level: bulk.LevelGroup, Group: "renamed", Types: []string{"Patient"}}, t1, `same Group "renamed"`, false},
		{"system level", Want{Level: bulk.LevelSystem, Types: []string{"Patient"}}, t2.Add(time.Hour), "same system level", false},
		{"Patient level is not system level", Want{Level: bulk.LevelPatient, Types: []string{"Patient"}}, time.Time{}, "no complete export of Patient for Patient level", true},
		{"a type never exported", group("Patient", "Procedure"), time.Time{}, "no complete export of Procedure for Group \"cohort\"; export them in full first", true},
		{"another Group only", Want{Level: bulk.LevelGroup, Group: "nope", Types: []string{"Patient"}}, time.Time{}, `(it has exports of Group "cohort", Group "renamed", Patient level, system level)`, true},
		{"every type", Want{Level: bulk.LevelGroup, Group: "cohort"}, time.Time{}, "name the types with --type (complete there: Condition,Observation,Patient)", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromRows("DB", rows, tt.want)
			if tt.err {
				if _, ok := errors.AsType[*UnusableError](err); !ok || !strings.Contains(err.Error(), tt.reason) {
					t.Fatalf("FromRows = %+v, %v; want an *UnusableError with %q", got, err, tt.reason)
				}
				return
			}
			if err != nil || !got.Since.Equal(tt.since) || !strings.Contains(got.Reason, tt.reason) {
				t.Errorf("FromRows = %s %q, %v; want %s %q", got.Since, got.Reason, err, tt.since, tt.reason)
			}
		})
	}
}

func TestChooseSource(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "notes.txt")
	write(t, notDB, "hello, this is not a database")
	db := filepath.Join(dir, "x.duckdb")
	write(t, db, "\x00\x00\x00\x00\x00\x00\x00\x00DUCK\x00\x00")
	read := func(_ context.Context, path string) ([]store.CompletionRow, error) {
		return []store.CompletionRow{{Table: "patient", ExportTime: time.Unix(0, 0), ExportURL: "http://s/$export"}}, nil
	}
	w := Want{Level: bulk.LevelSystem, Types: []string{"Patient"}}
	if _, err := Choose(context.Background(), notDB, w, read); err == nil || !strings.Contains(err.Error(), "neither an export folder nor a DuckDB database") {
		t.Errorf("Choose(a text file) = %v, want neither a folder nor a database", err)
	}
	if _, err := Choose(context.Background(), filepath.Join(dir, "missing"), w, read); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Choose(missing) = %v, want ErrNotExist", err)
	}
	if got, err := Choose(context.Background(), db, w, read); err != nil || !got.Since.Equal(time.Unix(0, 0)) {
		t.Errorf("Choose(database) = %+v, %v; want the reader's row", got, err)
	}
}

func TestExplainSince(t *testing.T) {
	outcome := func(text string) *fhirclient.OperationOutcome {
		return &fhirclient.OperationOutcome{Issues: []fhirclient.Issue{{Severity: "error", Code: "not-supported", Diagnostics: text}}}
	}
	tests := []struct {
		err   error
		since string
		named bool
		wrap  bool
	}{
		{&fhirclient.StatusError{StatusCode: 400, Outcome: outcome("_since is not supported")}, "2026-12-01T00:00:00Z", true, true},
		{&fhirclient.StatusError{StatusCode: 422, Outcome: outcome("bad request")}, "2026-12-01T00:00:00Z", false, true},
		{&fhirclient.StatusError{StatusCode: 501, Body: []byte("no _since here")}, "2026-12-01T00:00:00Z", true, true},
		{&fhirclient.StatusError{StatusCode: 400, Outcome: outcome("_since is not supported")}, "", false, false},
		{&fhirclient.StatusError{StatusCode: 403, Outcome: outcome("_since")}, "2026-12-01T00:00:00Z", false, false},
		{errors.New("connection reset"), "2026-12-01T00:00:00Z", false, false},
	}
	for _, tt := range tests {
		got := ExplainSince(tt.err, tt.since)
		sre, ok := errors.AsType[*SinceRefusedError](got)
		if ok != tt.wrap || (ok && sre.Named != tt.named) {
			t.Errorf("ExplainSince(%v, %q) = %v, want wrapped %v (named %v)", tt.err, tt.since, got, tt.wrap, tt.named)
			continue
		}
		if !errors.Is(got, tt.err) {
			t.Errorf("ExplainSince(%v) = %v, which does not wrap it", tt.err, got)
		}
		if ok && !strings.Contains(got.Error(), "--type-filter 'TYPE?_lastUpdated=gt"+tt.since+"'") {
			t.Errorf("ExplainSince(%v) = %q, want the _typeFilter alternative", tt.err, got)
		}
	}
}
