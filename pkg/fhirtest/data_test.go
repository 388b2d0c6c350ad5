package fhirtest

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tidwall/gjson"
)

// liveFolder is a --data folder a test changes between exports.
type liveFolder struct {
	t   *testing.T
	dir string
}

func (f liveFolder) write(name string, lines ...string) {
	f.t.Helper()
	content := strings.Join(lines, "\n") + "\n"
	if len(lines) == 0 {
		content = ""
	}
	if err := os.WriteFile(filepath.Join(f.dir, name), []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func res(typ, id, patient string, updated time.Time) string {
	subj := ""
	if patient != "" {
		subj = `,"subject":{"reference":"Patient/` + patient + `"}`
	}
	return `{"resourceType":"` + typ + `","id":"` + id + `","meta":{"lastUpdated":"` + updated.UTC().Format(time.RFC3339Nano) + `"}` + subj + `}`
}

func tomb(typ, id string, at time.Time) string {
	return `{"type":"` + typ + `","id":"` + id + `","deleted":"` + at.UTC().Format(time.RFC3339Nano) + `"}`
}

// deletedKeys downloads a manifest's deleted items and lists the DELETE entries' URLs.
func deletedKeys(t *testing.T, m *manifestT) []string {
	t.Helper()
	var keys []string
	for _, it := range m.Deleted {
		if it.Type != "Bundle" {
			t.Errorf("deleted item of type %q, want Bundle", it.Type)
		}
		for _, line := range fileLines(t, it.URL, nil) {
			if typ := gjson.GetBytes(line, "type").Str; typ != "transaction" {
				t.Errorf("deleted Bundle type %q, want transaction", typ)
			}
			gjson.GetBytes(line, "entry").ForEach(func(_, e gjson.Result) bool {
				if m := e.Get("request.method").Str; m != "DELETE" {
					t.Errorf("deleted entry method %q, want DELETE", m)
				}
				keys = append(keys, e.Get("request.url").Str)
				return true
			})
		}
	}
	return keys
}

// TestDataDirLive: a --data folder changed between exports is read again at the next kickoff;
// _since selects by meta.lastUpdated, and the deletions of deleted.ndjson at or after _since
// are in the manifest's deleted item, within the export's scope.
func TestDataDirLive(t *testing.T) {
	f := liveFolder{t, t.TempDir()}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	f.write("Patient.ndjson", res("Patient", "p1", "", t0), res("Patient", "p2", "", t0))
	f.write("Observation.ndjson", res("Observation", "o1", "p1", t0), res("Observation", "o2", "p2", t0),
		res("Observation", "o3", "p1", t0), res("Observation", "gone", "p1", t0))
	f.write("Group.ndjson", `{"resourceType":"Group","id":"g","member":[{"entity":{"reference":"Patient/p1"}}]}`)
	// A tombstone before the first export: the resource is not served, and nobody hears of it
	// in an export _since later.
	f.write(TombstoneFile, tomb("Observation", "gone", t0.Add(time.Minute)))
	s := start(t, Options{DataDir: f.dir})

	got, m1 := export(t, s, "/$export", url.Values{"_type": {"Patient,Observation"}})
	want := map[string][]string{"Patient": {"Patient/p1", "Patient/p2"}, "Observation": {"Observation/o1", "Observation/o2", "Observation/o3"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("first export (-want +got):\n%s", d)
	}
	tx1, err := time.Parse(time.RFC3339Nano, m1.TransactionTime)
	if err != nil {
		t.Fatal(err)
	}

	// Between the exports: o1 updated, o4 and p3 new, o2 and o3 deleted (o3's line stays, older
	// than its tombstone), p2 re-created after a deletion.
	t1 := time.Now().Add(time.Second)
	f.write("Patient.ndjson", res("Patient", "p1", "", t0), res("Patient", "p2", "", t1.Add(time.Second)), res("Patient", "p3", "", t1))
	f.write("Observation.ndjson", res("Observation", "o1", "p1", t1), res("Observation", "o3", "p1", t0),
		res("Observation", "o4", "p3", t1))
	f.write(TombstoneFile, tomb("Observation", "gone", t0.Add(time.Minute)), tomb("Observation", "o2", t1),
		tomb("Observation", "o3", t1), tomb("Patient", "p2", t1))

	since := url.Values{"_type": {"Patient,Observation"}, "_since": {tx1.Format(time.RFC3339Nano)}}
	got, m2 := export(t, s, "/$export", since)
	want = map[string][]string{"Patient": {"Patient/p2", "Patient/p3"}, "Observation": {"Observation/o1", "Observation/o4"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("export _since the first (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"Observation/o2", "Observation/o3"}, deletedKeys(t, m2)); d != "" {
		t.Errorf("deleted _since the first (-want +got):\n%s", d)
	}
	if tx2, _ := time.Parse(time.RFC3339Nano, m2.TransactionTime); !tx2.After(tx1) {
		t.Errorf("second transactionTime %s, want after the first %s", m2.TransactionTime, m1.TransactionTime)
	}

	// The same request as the first export now sees the changed folder, and no deletions.
	got, m3 := export(t, s, "/$export", url.Values{"_type": {"Patient,Observation"}})
	want = map[string][]string{"Patient": {"Patient/p1", "Patient/p2", "Patient/p3"}, "Observation": {"Observation/o1", "Observation/o4"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("full export of the changed folder (-want +got):\n%s", d)
	}
	if len(m3.Deleted) != 0 {
		t.Errorf("full export: deleted = %+v, want none (deletions are reported only with _since)", m3.Deleted)
	}

	// Group g holds p1: o3 (p1's) is reported deleted, o2 (p2's) is not.
	got, m4 := export(t, s, "/Group/g/$export", since)
	if d := cmp.Diff(map[string][]string{"Observation": {"Observation/o1"}}, got); d != "" {
		t.Errorf("Group export _since the first (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"Observation/o3"}, deletedKeys(t, m4)); d != "" {
		t.Errorf("Group export: deleted (-want +got):\n%s", d)
	}

	// _until before the deletions: none reported.
	q := url.Values{"_type": {"Observation"}, "_since": {tx1.Format(time.RFC3339Nano)}, "_until": {t1.Add(-time.Millisecond).Format(time.RFC3339Nano)}}
	if _, m5 := export(t, s, "/$export", q); len(m5.Deleted) != 0 {
		t.Errorf("export _until before the deletions: deleted = %+v, want none", m5.Deleted)
	}

	// The last Condition deleted: its type is still exported, so the deletion is reported.
	f.write("Condition.ndjson", res("Condition", "c1", "p1", t0))
	_, m6 := export(t, s, "/$export", url.Values{"_type": {"Condition"}})
	tx6, _ := time.Parse(time.RFC3339Nano, m6.TransactionTime)
	f.write("Condition.ndjson")
	f.write(TombstoneFile, tomb("Condition", "c1", time.Now()))
	got, m7 := export(t, s, "/$export", url.Values{"_type": {"Condition"}, "_since": {tx6.Format(time.RFC3339Nano)}})
	if len(got) != 0 || !cmp.Equal(deletedKeys(t, m7), []string{"Condition/c1"}) {
		t.Errorf("export _since, after the last Condition was deleted: output %v, deleted %v; want none and Condition/c1", got, deletedKeys(t, m7))
	}
}

// TestDataDirTransactionTime: the folder is read after the export's transactionTime, so a
// change made before a kickoff is in that export whatever its meta.lastUpdated says.
func TestDataDirTransactionTime(t *testing.T) {
	f := liveFolder{t, t.TempDir()}
	t0 := time.Now().Add(-time.Hour)
	f.write("Patient.ndjson", res("Patient", "p1", "", t0))
	s := start(t, Options{DataDir: f.dir})
	f.write("Patient.ndjson", res("Patient", "p1", "", t0), res("Patient", "late", "", t0))
	before := time.Now()
	got, m := export(t, s, "/$export", nil)
	if d := cmp.Diff(map[string][]string{"Patient": {"Patient/p1", "Patient/late"}}, got); d != "" {
		t.Errorf("export after a change (-want +got):\n%s", d)
	}
	tx, err := time.Parse(time.RFC3339Nano, m.TransactionTime)
	if err != nil || tx.Before(before.Add(-time.Millisecond)) {
		t.Errorf("transactionTime %s (%v), want at or after the kickoff (%s)", m.TransactionTime, err, before.UTC().Format(time.RFC3339Nano))
	}
}

// TestDataDirBadTombstone: a broken deleted.ndjson fails the server at start, and an export
// after the folder broke, naming the file and line; fixed, the next export works.
func TestDataDirBadTombstone(t *testing.T) {
	f := liveFolder{t, t.TempDir()}
	f.write("Patient.ndjson", res("Patient", "p1", "", time.Now()))
	f.write(TombstoneFile, `{"type":"Patient","id":"p1"}`)
	if _, err := NewServer(Options{DataDir: f.dir}); err == nil || !strings.Contains(err.Error(), "deleted.ndjson: line 1: deleted:") {
		t.Errorf("NewServer with a tombstone without time: %v, want an error naming deleted.ndjson line 1", err)
	}
	f.write(TombstoneFile)
	s := start(t, Options{DataDir: f.dir})
	f.write(TombstoneFile, tomb("Patient", "p1", time.Now()), `{"type":"Nope","id":"x","deleted":"2024-01-01T00:00:00Z"}`)
	resp, body := do(t, "GET", kickoff(t, s, "/$export", nil, nil), nil, nil)
	for i := 0; resp.StatusCode == 202 && i < 20; i++ {
		resp, body = do(t, "GET", resp.Request.URL.String(), nil, nil)
	}
	if resp.StatusCode != 500 || !strings.Contains(string(body), `line 2: type \"Nope\"`) {
		t.Errorf("export after a bad tombstone = %d %s, want 500 naming line 2", resp.StatusCode, body)
	}
	f.write(TombstoneFile)
	if got, _ := export(t, s, "/$export", nil); len(got["Patient"]) != 1 {
		t.Errorf("export after the fix = %v, want Patient/p1", got)
	}
}

func TestParseTombstone(t *testing.T) {
	tests := []struct {
		line    string
		want    tombstone
		wantErr string
	}{
		{`{"type":"Observation","id":"o-1","deleted":"2026-12-05T07:31:00Z"}`,
			tombstone{typ: "Observation", id: "o-1", at: time.Date(2026, 12, 5, 7, 31, 0, 0, time.UTC).UnixNano()}, ""},
		{`{"type":"Patient","id":"p","deleted":"2026-12-05T08:31:00.5+01:00"}`,
			tombstone{typ: "Patient", id: "p", at: time.Date(2026, 12, 5, 7, 31, 0, 5e8, time.UTC).UnixNano()}, ""},
		{`{"type":"Patient","id":"p"}`, tombstone{}, "deleted:"},
		{`{"type":"patient","id":"p","deleted":"2026"}`, tombstone{}, "not a FHIR resource type"},
		{`{"type":"Patient","id":"Patient/p","deleted":"2026"}`, tombstone{}, "not a resource id"},
		{`["Patient","p"]`, tombstone{}, "not a JSON object"},
		{`{"type":"Patient",`, tombstone{}, "not a JSON object"},
	}
	for _, tt := range tests {
		got, err := parseTombstone([]byte(tt.line))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseTombstone(%s) = %v, want an error with %q", tt.line, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseTombstone(%s) = %+v, %v, want %+v", tt.line, got, err, tt.want)
		}
	}
}

func FuzzParseTombstone(f *testing.F) {
	f.Add([]byte(`{"type":"Observation","id":"o-1","deleted":"2026-12-05T07:31:00Z"}`))
	f.Add([]byte(`{"type":"Patient","id":"p","deleted":"2026"}`))
	f.Add([]byte(`{"type":1}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		got, err := parseTombstone(line)
		if err != nil {
			return
		}
		// What is accepted names a resource (Type/id) and an instant.
		if !isResourceType(got.typ) || got.id == "" || strings.Contains(got.id, "/") {
			t.Errorf("parseTombstone(%q) = %+v: accepted a bad type or id", line, got)
		}
	})
}
