package exportdir

import (
	"errors"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
)

func TestFindExport(t *testing.T) {
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	recDir := t.TempDir()
	const recStatus, logStatus = "https://rec.example/status/1", "https://log.example/status/2"
	rec := bulk.Record{StatusURL: recStatus, FHIRBase: "https://rec.example/fhir", TokenURL: "https://rec.example/token",
		ExportURL: "https://rec.example/fhir/Group/g/$export?_type=Patient", Types: []string{"Patient"}}
	if err := bulk.SaveRecord(recDir, rec, now); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "log.ndjson")
	lw, err := OpenLog(logPath)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := bulk.KickoffRequest{URL: "https://log.example/fhir/Group/h", Types: []string{"Condition", "Patient"}}.Prepare()
	if err != nil {
		t.Fatal(err)
	}
	if err := lw.Write(SentKickoff(pk, &bulk.KickoffResult{StatusURL: logStatus}, nil, nil, "test", now), true); err != nil {
		t.Fatal(err)
	}
	lw.Close()

	tests := []struct {
		name, fhirURL, logPath, statusURL string
		want                              Known
	}{
		{"record", "", "", recStatus, Known{Base: rec.FHIRBase, ExportURL: rec.ExportURL, TokenURL: rec.TokenURL, Types: rec.Types}},
		{"record of the --fhir-url server", rec.FHIRBase + "/", "", recStatus,
			Known{Base: rec.FHIRBase, ExportURL: rec.ExportURL, TokenURL: rec.TokenURL, Types: rec.Types}},
		{"record of another server than --fhir-url's", "https://other.example/fhir", "", recStatus,
			Known{Base: "https://other.example/fhir"}},
		{"log's kickoff", "", logPath, logStatus, Known{Base: "https://log.example/fhir", ExportURL: pk.URL,
			Types: []string{"Condition", "Patient"}}},
		{"log's kickoff, --fhir-url wins the base", "https://flag.example/fhir", logPath, logStatus,
			Known{Base: "https://flag.example/fhir", ExportURL: pk.URL, Types: []string{"Condition", "Patient"}}},
		{"no such log", "", filepath.Join(t.TempDir(), "none.ndjson"), logStatus, Known{}},
	}
	for _, tt := range tests {
		got, err := FindExport(tt.fhirURL, recDir, tt.logPath, tt.statusURL, func(err error) { t.Errorf("%s: warning %v", tt.name, err) })
		if err != nil {
			t.Errorf("FindExport(%s) = %v", tt.name, err)
			continue
		}
		if got.Base != tt.want.Base || got.ExportURL != tt.want.ExportURL || got.TokenURL != tt.want.TokenURL ||
			!slices.Equal(got.Types, tt.want.Types) {
			t.Errorf("FindExport(%s) = %+v, want %+v", tt.name, *got, tt.want)
		}
	}
}

func TestSentKickoff(t *testing.T) {
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	pk, err := bulk.KickoffRequest{URL: "https://x.example/fhir", Patients: []string{"1", "2"}}.Prepare()
	if err != nil {
		t.Fatal(err)
	}
	ok := SentKickoff(pk, &bulk.KickoffResult{StatusURL: "https://x.example/status/1",
		Header: http.Header{"Set-Cookie": {"s"}, "X-Id": {"7"}}}, nil, &fhirclient.Capability{SoftwareName: "S"}, "1.0", now)
	if ok.ExportID != "https://x.example/status/1" || ok.Client != "bulkpipe" || ok.ClientVersion != "1.0" {
		t.Errorf("SentKickoff(202) = id %q, client %q %q", ok.ExportID, ok.Client, ok.ClientVersion)
	}
	want := `{"exportUrl":"https://x.example/fhir/$export","errorCode":null,"errorBody":null,"softwareName":"S",` +
		`"softwareVersion":null,"softwareReleaseDate":null,"fhirVersion":null,"requestParameters":{"_patientCount":2},` +
		`"responseHeaders":{"x-id":"7"},"logVersion":"2"}`
	if string(ok.EventDetail) != want {
		t.Errorf("SentKickoff(202).EventDetail = %s, want %s", ok.EventDetail, want)
	}
	se := &fhirclient.StatusError{StatusCode: 429, Body: []byte("busy")}
	failed := SentKickoff(pk, nil, errors.Join(errors.New("kickoff"), se), nil, "1.0", now)
	if len(failed.ExportID) != len("urn:uuid:")+36 {
		t.Errorf("SentKickoff(429).ExportID = %q, want a urn:uuid", failed.ExportID)
	}
	want = `{"exportUrl":"https://x.example/fhir/$export","errorCode":429,"errorBody":"busy","softwareName":null,` +
		`"softwareVersion":null,"softwareReleaseDate":null,"fhirVersion":null,"requestParameters":{"_patientCount":2},` +
		`"responseHeaders":{},"logVersion":"2"}`
	if string(failed.EventDetail) != want {
		t.Errorf("SentKickoff(429).EventDetail = %s, want %s", failed.EventDetail, want)
	}
}
