package exportdir

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
)

// The details marshal to the bytes the tools wrote before they shared these types (maps, so
// alphabetical keys), which readers and other helpers' logs already hold.
func TestEventDetailBytes(t *testing.T) {
	se := &fhirclient.StatusError{Method: "GET", URL: "http://x/f", StatusCode: 503, Status: "503 Service Unavailable",
		Header: http.Header{"Retry-After": {"5"}, "Set-Cookie": {"s=1"}, "X-A": {"1", "2"}},
		Body:   []byte(`{"resourceType":"OperationOutcome"}`)}
	k := NewKickoff("https://x/fhir/Group/g/$export?_type=Patient", map[string]any{"_type": "Patient"})
	k.SoftwareName = "HAPI"
	synth := NewKickoff("https://x/fhir/$export", nil)
	synth.Synthesized, synth.Context = "bulk-fetch: from the export context and the manifest", &KickoffContext{FHIRBase: "https://x/fhir"}
	tests := []struct {
		name   string
		detail any
		want   string
	}{
		{"kickoff", k, `{"exportUrl":"https://x/fhir/Group/g/$export?_type=Patient","errorCode":null,"errorBody":null,"softwareName":"HAPI","softwareVersion":null,"softwareReleaseDate":null,"fhirVersion":null,"requestParameters":{"_type":"Patient"},"responseHeaders":{},"logVersion":"2"}`},
		{"synthesized kickoff", synth, `{"exportUrl":"https://x/fhir/$export","errorCode":null,"errorBody":null,"softwareName":null,"softwareVersion":null,"softwareReleaseDate":null,"fhirVersion":null,"requestParameters":{},"responseHeaders":{},"logVersion":"2","_synthesized":"bulk-fetch: from the export context and the manifest","_bulkpipe":{"fhirBase":"https://x/fhir"}}`},
		{"status_progress", StatusProgress{XProgressHeader: "50%", RetryAfterHeader: "2"}, `{"body":null,"retryAfterHeader":"2","xProgressHeader":"50%"}`},
		{"status_error", NewErrorDetail(se), `{"body":{"resourceType":"OperationOutcome"},"code":503,"message":"GET http://x/f: 503 Service Unavailable","responseHeaders":{"retry-after":"5","x-a":"1, 2"}}`},
		{"status_error, no answer", NewErrorDetail(errors.New("connection reset")), `{"body":null,"code":null,"message":"connection reset","responseHeaders":{}}`},
		{"status_complete", StatusComplete{TransactionTime: "2024-05-01T00:00:00Z"}, `{"transactionTime":"2024-05-01T00:00:00Z"}`},
		{"status_page_complete", StatusPageComplete{TransactionTime: "t", OutputFileCount: 3, DeletedFileCount: 1, ErrorFileCount: 2}, `{"deletedFileCount":1,"errorFileCount":2,"outputFileCount":3,"transactionTime":"t"}`},
		{"manifest_complete", ManifestComplete{TransactionTime: "t", TotalOutputFileCount: 3, TotalDeletedFileCount: 1, TotalErrorFileCount: 2, TotalManifests: 4}, `{"totalDeletedFileCount":1,"totalErrorFileCount":2,"totalManifests":4,"totalOutputFileCount":3,"transactionTime":"t"}`},
		{"download_request", DownloadRequest{FileURL: "u", ItemType: "output", ResourceType: "Patient"}, `{"fileUrl":"u","itemType":"output","resourceType":"Patient"}`},
		{"download_complete", DownloadComplete{FileURL: "u", FileSize: 10, ResourceCount: 2}, `{"fileSize":10,"fileUrl":"u","resourceCount":2}`},
		{"download_complete attachment", DownloadComplete{FileURL: "u", FileSize: 11, ItemType: "attachment", ResourceType: "DocumentReference"}, `{"fileSize":11,"fileUrl":"u","itemType":"attachment","resourceCount":null,"resourceType":"DocumentReference"}`},
		{"download_error", NewDownloadError("u", se), `{"body":{"resourceType":"OperationOutcome"},"code":503,"fileUrl":"u","message":"GET http://x/f: 503 Service Unavailable","responseHeaders":{"retry-after":"5","x-a":"1, 2"}}`},
		{"export_complete", ExportComplete{Files: 2, Resources: 7, Bytes: 99, Duration: 12}, `{"attachments":null,"bytes":99,"duration":12,"files":2,"resources":7}`},
	}
	for _, tt := range tests {
		ev, err := NewEvent("id", tt.name, tt.detail, time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC))
		if got := string(ev.EventDetail); err != nil || got != tt.want {
			t.Errorf("NewEvent(%s) detail = %s, %v, want %s", tt.name, got, err, tt.want)
		}
		if !json.Valid(ev.EventDetail) {
			t.Errorf("NewEvent(%s) detail is not JSON", tt.name)
		}
	}
}

func TestResponseHeaders(t *testing.T) {
	h := http.Header{"Content-Type": {"application/json"}, "Set-Cookie": {"session=secret"}, "Set-Cookie2": {"s=secret"},
		"Authorization": {"Bearer secret"}, "Proxy-Authorization": {"Basic secret"}, "X-Progress": {"a", "b"}}
	got, _ := json.Marshal(ResponseHeaders(h))
	if want := `{"content-type":"application/json","x-progress":"a, b"}`; string(got) != want {
		t.Errorf("ResponseHeaders(%v) = %s, want %s", h, got, want)
	}
}
