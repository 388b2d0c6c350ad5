package exportdir

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFindLog(t *testing.T) {
	tests := []struct {
		files   []string
		want    string // "" = error
		wantErr string
	}{
		{[]string{"log.ndjson"}, "log.ndjson", ""},
		{[]string{"log.ndjson", "log.a.ndjson", "log.b.ndjson"}, "log.ndjson", ""},
		{[]string{"log.2024-01.ndjson", "Patient.000.ndjson"}, "log.2024-01.ndjson", ""},
		{[]string{"log.a.ndjson", "log.b.ndjson"}, "", "several export logs in DIR (log.a.ndjson, log.b.ndjson)"},
		{[]string{"Patient.000.ndjson", "log..ndjson", "log.ndjson.gz", "mylog.ndjson"}, "", "no export log: no log.ndjson or log.*.ndjson in DIR"},
		{nil, "", "no export log"},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		touch(t, dir, tt.files...)
		got, err := FindLog(dir)
		if tt.want != "" {
			if err != nil || got != filepath.Join(dir, tt.want) {
				t.Errorf("FindLog(%v) = %q, %v, want %s", tt.files, got, err, tt.want)
			}
			continue
		}
		if err == nil || !strings.Contains(strings.ReplaceAll(err.Error(), dir, "DIR"), tt.wantErr) {
			t.Errorf("FindLog(%v) error = %v, want %q", tt.files, err, tt.wantErr)
		}
		if strings.HasPrefix(tt.wantErr, "no export log") && !errors.Is(err, ErrNoLog) {
			t.Errorf("FindLog(%v) error = %v, want ErrNoLog", tt.files, err)
		}
	}
	// A directory named log.ndjson is not a log.
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "log.ndjson"), 0o755)
	touch(t, dir, "log.x.ndjson")
	if got, err := FindLog(dir); err != nil || filepath.Base(got) != "log.x.ndjson" {
		t.Errorf("FindLog(dir with log.ndjson/) = %q, %v, want log.x.ndjson", got, err)
	}
}

// A log as bulk-data-client writes it, with a false start and an older export before the last one.
const bdcLog = `{"exportId":"old","timestamp":"2024-01-01T00:00:00.000Z","eventId":"kickoff","eventDetail":{"exportUrl":"https://ehr/fhir/Group/old/$export","errorCode":null,"requestParameters":{"_type":"Patient"}},"_client":"bulk-data-client","_clientVersion":"2.0.0"}
{"exportId":"old","timestamp":"2024-01-01T00:05:00.000Z","eventId":"status_complete","eventDetail":{"transactionTime":"2024-01-01T00:00:00Z"}}

{"exportId":"https://ehr/fhir/status/2","timestamp":"2024-02-01T00:00:00.000Z","eventId":"kickoff","eventDetail":{"exportUrl":"https://ehr/fhir/Group/My%20Group/$export?_type=Patient,Observation&_since=2023-01-01","errorCode":null,"requestParameters":{"_type":"Patient,Observation","_since":"2023-01-01","_patientCount":2}}}
{"exportId":"https://ehr/fhir/status/2","timestamp":"2024-02-01T00:00:01.000Z","eventId":"status_progress","eventDetail":{"body":"50%"}}
{"exportId":"https://ehr/fhir/status/2","timestamp":"2024-02-01T01:00:00.000Z","eventId":"status_complete","eventDetail":{"transactionTime":"2024-02-01T00:00:00.123456+05:30"}}
{"exportId":"https://ehr/fhir/status/2","timestamp":"2024-02-01T01:00:01.000Z","eventId":"manifest_complete","eventDetail":{"transactionTime":"2020-01-01T00:00:00Z","totalOutputFileCount":2}}
{"exportId":"https://ehr/fhir/status/3","timestamp":"2024-02-02T00:00:00.000Z","eventId":"kickoff","eventDetail":{"exportUrl":"https://ehr/fhir/Group/x/$export","errorCode":429,"errorBody":"busy"}}
`

func TestReadLog(t *testing.T) {
	exp, err := ReadLogFrom(strings.NewReader(bdcLog), "log.ndjson")
	if err != nil {
		t.Fatalf("ReadLog = %v", err)
	}
	if exp.ExportID != "https://ehr/fhir/status/2" || exp.Group != "My Group" {
		t.Errorf("ReadLog: exportId, group = %q, %q, want status/2, My Group", exp.ExportID, exp.Group)
	}
	want := time.Date(2024, 1, 31, 18, 30, 0, 123456000, time.UTC)
	if !exp.HasTime || !exp.TransactionTime.Equal(want) {
		t.Errorf("ReadLog: time = %v (has %v), want %v", exp.TransactionTime, exp.HasTime, want)
	}
	wantParams := map[string]any{"_type": "Patient,Observation", "_since": "2023-01-01", "_patientCount": float64(2)}
	if diff := cmp.Diff(wantParams, exp.RequestParameters); diff != "" {
		t.Errorf("ReadLog: requestParameters mismatch (-want +got):\n%s", diff)
	}
	var ids []string
	for _, e := range exp.Events {
		ids = append(ids, e.EventID)
	}
	if diff := cmp.Diff([]string{"kickoff", "status_progress", "status_complete", "manifest_complete"}, ids); diff != "" {
		t.Errorf("ReadLog: events mismatch (-want +got):\n%s", diff)
	}
}

func kickoff(id, url string) string {
	return `{"exportId":"` + id + `","timestamp":"2024-01-01T00:00:00Z","eventId":"kickoff","eventDetail":{"exportUrl":"` + url + `"}}` + "\n"
}

func complete(id, tt string) string {
	return `{"exportId":"` + id + `","timestamp":"2024-01-01T00:00:00Z","eventId":"status_complete","eventDetail":{"transactionTime":"` + tt + `"}}` + "\n"
}

func TestReadLogRules(t *testing.T) {
	tests := []struct {
		name, log string
		group     string
		time      string // "" = no time
		wantErr   string
	}{
		{"system level", kickoff("a", "https://x/fhir/$export?_type=Patient") + complete("a", "2024-05-06T07:08:09Z"), "", "2024-05-06T07:08:09Z", ""},
		{"patient level", kickoff("a", "https://x/fhir/Patient/$export") + complete("a", "2024-05-06T07:08:09Z"), "", "2024-05-06T07:08:09Z", ""},
		{"group level", kickoff("a", "https://x/fhir/Group/g1/$export") + complete("a", "2024-05-06T07:08:09Z"), "g1", "2024-05-06T07:08:09Z", ""},
		{"group, no $export", kickoff("a", "https://x/fhir/Group/g1") + complete("a", "2024-05-06T07:08:09Z"), "g1", "2024-05-06T07:08:09Z", ""},
		{"group, encoded $export and slash", kickoff("a", "https://x/fhir/Group/a%2Fb/%24export"), "a/b", "", ""},
		{"base path containing Group", kickoff("a", "https://x/Group/fhir/Group/Group/$export"), "Group", "", ""},
		{"microseconds and offset", kickoff("a", "https://x/fhir/Group/g/$export") + complete("a", "2024-05-06T07:08:09.123456-04:00"), "g", "2024-05-06T11:08:09.123456Z", ""},
		{"whole seconds with +00:00", kickoff("a", "https://x/fhir/$export") + complete("a", "2024-05-06T07:08:09+00:00"), "", "2024-05-06T07:08:09Z", ""},
		{"last kickoff wins", kickoff("a", "https://x/fhir/Group/old/$export") + complete("a", "2023-01-01T00:00:00Z") + kickoff("b", "https://x/fhir/Group/new/$export") + complete("b", "2024-01-01T00:00:00Z"), "new", "2024-01-01T00:00:00Z", ""},
		{"time of the last kickoff's export only", kickoff("b", "https://x/fhir/Group/new/$export") + complete("a", "2023-01-01T00:00:00Z"), "new", "", ""},
		{"status_complete before kickoff line", complete("b", "2024-01-01T00:00:00Z") + kickoff("b", "https://x/fhir/$export"), "", "2024-01-01T00:00:00Z", ""},
		{"manifest_complete fallback", kickoff("a", "https://x/fhir/$export") + `{"exportId":"a","timestamp":"x","eventId":"manifest_complete","eventDetail":{"transactionTime":"2024-03-03T00:00:00Z"}}` + "\n", "", "2024-03-03T00:00:00Z", ""},
		{"crlf and bom", "\xEF\xBB\xBF" + strings.ReplaceAll(kickoff("a", "https://x/fhir/$export")+complete("a", "2024-01-01T00:00:00Z"), "\n", "\r\n"), "", "2024-01-01T00:00:00Z", ""},
		{"bad time", kickoff("a", "https://x/fhir/$export") + "\n" + complete("a", "yesterday"), "", "", `log.ndjson:3: status_complete transactionTime: "yesterday" is not a FHIR date or dateTime`},
		{"time without offset", kickoff("a", "https://x/fhir/$export") + complete("a", "2024-01-01T00:00:00"), "", "", `log.ndjson:2: status_complete transactionTime: "2024-01-01T00:00:00": a time needs a zone offset`},
		{"missing time", kickoff("a", "https://x/fhir/$export") + `{"exportId":"a","eventId":"status_complete","eventDetail":{}}` + "\n", "", "", `log.ndjson:2: status_complete transactionTime: "" is not`},
		{"bad JSON", kickoff("a", "https://x/fhir/$export") + "{\"exportId\":\n", "", "", "log.ndjson:2: unexpected end of JSON input"},
		{"not an object", "[1]\n", "", "", "log.ndjson:1: not a JSON object"},
		{"no kickoff", complete("a", "2024-01-01T00:00:00Z"), "", "", "log.ndjson: no kickoff event"},
		{"empty", "", "", "", "log.ndjson: no kickoff event"},
		{"kickoff without exportUrl", `{"exportId":"a","eventId":"kickoff","eventDetail":{}}`, "", "", "log.ndjson:1: kickoff eventDetail has no exportUrl"},
	}
	for _, tt := range tests {
		exp, err := ReadLogFrom(strings.NewReader(tt.log), "log.ndjson")
		if tt.wantErr != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("%s: ReadLog error = %v, want %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: ReadLog = %v", tt.name, err)
			continue
		}
		if exp.Group != tt.group {
			t.Errorf("%s: ReadLog group = %q, want %q", tt.name, exp.Group, tt.group)
		}
		got := ""
		if exp.HasTime {
			got = exp.TransactionTime.UTC().Format(time.RFC3339Nano)
		}
		if got != tt.time {
			t.Errorf("%s: ReadLog time = %q, want %q", tt.name, got, tt.time)
		}
	}
	_, err := ReadLogFrom(strings.NewReader(complete("a", "2024-01-01T00:00:00Z")), "x")
	if !errors.Is(err, ErrNoKickoff) {
		t.Errorf("ReadLog(no kickoff) = %v, want ErrNoKickoff", err)
	}
}

func TestReadLogFile(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, filepath.Join(dir, "log.ndjson"), kickoff("a", "https://x/fhir/Group/g/$export")+"oops\n")
	_, err := ReadLog(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":2: ") {
		t.Errorf("ReadLog(bad line 2) = %v, want %s:2: ...", err, path)
	}
	if _, err := ReadLog(filepath.Join(dir, "missing.ndjson")); err == nil {
		t.Errorf("ReadLog(missing) = nil error, want one")
	}
}

func TestGroupFromURL(t *testing.T) {
	tests := map[string]string{
		"https://x/fhir/Group/abc/$export":              "abc",
		"https://x/fhir/Group/abc/$export?_type=A/B":    "abc",
		"https://x/fhir/Group/abc":                      "abc",
		"https://x/fhir/Group/abc/":                     "abc",
		"https://x/fhir/Group/a%20b/$export":            "a b",
		"https://x/fhir/$export?group=Group/abc":        "",
		"https://x/fhir/Patient/$export":                "",
		"https://x/fhir/$export":                        "",
		"Group/xyz/$export":                             "xyz",
		"https://x/fhir/Group/bad%zz/$export":           "bad%zz",
		"https://x/fhir/Group/g/$export#Group/frag":     "g",
		"https://x/fhir/Group/g/Patient/$export":        "g",
		"https://x/fhir/Group/$export":                  "",
		"":                                              "",
		"::not a url/Group/q/$export?x":                 "q",
		"https://x/fhir/Group/%E2%9C%93/$export?_since": "✓",
	}
	for in, want := range tests {
		if got := GroupFromURL(in); got != want {
			t.Errorf("GroupFromURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLogWriter(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log.ndjson")
	// A crash left a half line: the next event must start on its own line.
	writeFile(t, path, kickoff("a", "https://x/fhir/Group/g/$export")+`{"exportId":"a","ti`)
	w, err := OpenLog(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2024, 3, 4, 5, 6, 7, 891234567, time.FixedZone("", -5*3600))
	e, err := NewEvent("a", "status_complete", map[string]any{"transactionTime": "2024-03-04T00:00:00Z", "url": "https://x/?a=1&b=<2>"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := "2024-03-04T05:06:07.891-05:00"; e.Timestamp != want {
		t.Errorf("NewEvent timestamp = %q, want %q", e.Timestamp, want)
	}
	if err := w.Write(e, true); err != nil {
		t.Fatal(err)
	}
	k, _ := NewEvent("b", "kickoff", json.RawMessage(`{"exportUrl":"https://x/fhir/$export"}`), now.UTC())
	k.Client, k.ClientVersion = "bulkpipe", "1.0"
	if err := w.Write(k, false); err != nil {
		t.Fatal(err)
	}
	nilDetail, _ := NewEvent("b", "status_progress", nil, now)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if err := w.Write(nilDetail, false); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 2+2+20 {
		t.Fatalf("log has %d lines, want 24:\n%s", len(lines), b)
	}
	wantLines := []string{
		`{"exportId":"a","timestamp":"2024-03-04T05:06:07.891-05:00","eventId":"status_complete","eventDetail":{"transactionTime":"2024-03-04T00:00:00Z","url":"https://x/?a=1&b=<2>"}}`,
		`{"exportId":"b","timestamp":"2024-03-04T10:06:07.891Z","eventId":"kickoff","eventDetail":{"exportUrl":"https://x/fhir/$export"},"_client":"bulkpipe","_clientVersion":"1.0"}`,
		`{"exportId":"b","timestamp":"2024-03-04T05:06:07.891-05:00","eventId":"status_progress","eventDetail":{}}`,
	}
	if diff := cmp.Diff(wantLines, lines[2:5]); diff != "" {
		t.Errorf("log lines mismatch (-want +got):\n%s", diff)
	}
	// The torn line stays an error for readers, pointing at it; the events after it are whole.
	if _, err := LogEvents(path); err == nil || !strings.HasPrefix(err.Error(), path+":2: ") {
		t.Errorf("LogEvents(torn log) = %v, want error at line 2", err)
	}
	os.WriteFile(path, []byte(strings.Join(append(lines[:1], lines[2:]...), "\n")), 0o644)
	events, err := LogEvents(path)
	if err != nil || len(events) != 23 {
		t.Fatalf("LogEvents = %d events, %v, want 23", len(events), err)
	}
	if events[2].Client != "bulkpipe" || events[2].ClientVersion != "1.0" {
		t.Errorf("LogEvents: _client = %q %q, want bulkpipe 1.0", events[2].Client, events[2].ClientVersion)
	}
	exp, err := ReadLog(path)
	if err != nil || exp.ExportID != "b" || exp.Group != "" || exp.HasTime || len(exp.Events) != 21 {
		t.Errorf("ReadLog(written log) = %+v, %v, want export b, system level, no time, 21 events", exp, err)
	}
}

func FuzzReadLog(f *testing.F) {
	f.Add(bdcLog)
	f.Add(kickoff("a", "https://x/fhir/Group/g%2F1/$export") + complete("a", "2024-01-01T00:00:00.5+01:00"))
	f.Add(`{"eventId":"kickoff","eventDetail":{"exportUrl":"","errorCode":0}}` + "\n" + `{"eventId":"status_complete","eventDetail":{"transactionTime":5}}`)
	f.Add("\xEF\xBB\xBF\r\n[]")
	f.Fuzz(func(t *testing.T, log string) {
		exp, err := ReadLogFrom(strings.NewReader(log), "log.ndjson")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "log.ndjson") {
				t.Fatalf("ReadLog error %q does not name the file", err)
			}
			return
		}
		if len(exp.Events) == 0 {
			t.Fatalf("ReadLog = %+v with no events", exp)
		}
		for _, e := range exp.Events {
			if e.ExportID != exp.ExportID {
				t.Fatalf("ReadLog: event of export %q in export %q", e.ExportID, exp.ExportID)
			}
		}
	})
}
