package fetch

import (
	"errors"
	"testing"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
)

func TestFindServer(t *testing.T) {
	dir := t.TempDir()
	const recorded = "https://rec.example/fhir"
	rec := bulk.Record{StatusURL: "https://rec.example/status/1", FHIRBase: recorded, TokenURL: "https://rec.example/token",
		ExportURL: recorded + "/$export?_type=Patient"}
	if err := bulk.SaveRecord(dir, rec, time.Now()); err != nil {
		t.Fatal(err)
	}
	page := func(ctxBase, request string, files ...string) *Page {
		m := &bulk.Manifest{Request: request}
		for _, f := range files {
			m.Output = append(m.Output, bulk.Item{Type: "Patient", URL: f})
		}
		return &Page{Manifest: m, Context: bulk.Context{FHIRBase: ctxBase}}
	}
	tests := []struct {
		name                 string
		first                *Page
		fhirURL, statusURL   string
		secrets              bool
		base, trusted, token string
		wantErr              bool
	}{
		{"flag first", page("https://ctx.example/fhir", ""), "https://flag.example/fhir", rec.StatusURL, true,
			"https://flag.example/fhir", "https://flag.example/fhir", "", false},
		{"context", page("https://ctx.example/fhir", ""), "", "https://ctx.example/status/9", true,
			"https://ctx.example/fhir", "https://ctx.example/fhir", "", false},
		{"record, with its token endpoint", page("", ""), "", rec.StatusURL, true,
			recorded, recorded, rec.TokenURL, false},
		{"flag equal to the record's base keeps its token endpoint", page("", ""), recorded, rec.StatusURL, true,
			recorded, recorded, rec.TokenURL, false},
		{"status URL origin, untrusted", page("", "https://req.example/fhir/$export"), "", "https://st.example/status/2", true,
			"https://st.example", "", "", false},
		{"no secrets: a file's origin", page("", "https://req.example/fhir/$export", "https://files.example/a.ndjson"), "", "", false,
			"https://files.example", "", "", false},
		{"no secrets: the request's origin", page("", "https://req.example/fhir/$export"), "", "", false,
			"https://req.example", "", "", false},
		{"secrets and nothing the user gave", page("", "https://req.example/fhir/$export"), "", "", true, "", "", "", true},
		{"nothing at all", page("", ""), "", "", false, "", "", "", true},
	}
	for _, tt := range tests {
		srv, err := FindServer(tt.first, tt.fhirURL, tt.statusURL, dir, tt.secrets, func(err error) { t.Errorf("%s: warning %v", tt.name, err) })
		if tt.wantErr {
			if _, ok := errors.AsType[*ServerError](err); !ok {
				t.Errorf("FindServer(%s) = %+v, %v, want a *ServerError", tt.name, srv, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("FindServer(%s) = %v", tt.name, err)
			continue
		}
		if srv.Base != tt.base || srv.Trusted != tt.trusted || srv.TokenURL != tt.token {
			t.Errorf("FindServer(%s) = base %q, trusted %q, token %q, want %q, %q, %q", tt.name, srv.Base, srv.Trusted, srv.TokenURL,
				tt.base, tt.trusted, tt.token)
		}
	}
}

func TestFindServerTypes(t *testing.T) {
	p := &Page{Manifest: &bulk.Manifest{Request: "https://x.example/fhir/$export?_type=Patient,Condition"}}
	srv, err := FindServer(p, "https://x.example/fhir", "", "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(srv.Types) != 2 || srv.Types[0] != "Patient" || srv.Types[1] != "Condition" {
		t.Errorf("FindServer(_type=Patient,Condition).Types = %q, want [Patient Condition]", srv.Types)
	}
}
