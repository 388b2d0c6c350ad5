package fetch

import (
	"errors"
	"net/url"
	"os"
	"strings"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
)

// Server is the FHIR server an export's requests go to, as the user and the tools that recorded
// what the user gave tell it (DESIGN.md §2, token safety).
type Server struct {
	// Base is the client's base URL: where SMART discovery happens and relative URLs resolve.
	Base string
	// Trusted is Base when credentials may go there; "" when only the status URL's origin (or,
	// without credentials, any origin of the manifest) stands in for an unknown base.
	Trusted string
	// TokenURL is the SMART token endpoint bulk-kickoff recorded, when Base is that record's.
	TokenURL string
	// Types are the kickoff's _type values, for SMART scopes when --scope is not given.
	Types []string
}

// ServerError says that no server can be trusted with the run's credentials: a request that
// cannot work as given (a usage error to a tool).
type ServerError struct{ msg string }

func (e *ServerError) Error() string { return e.msg }

// FindServer picks the FHIR base for the export whose first manifest page is first, from what
// the user gave or a tool recorded from it: fhirURL (--fhir-url), else the page's _bulkpipe
// fhirBase, else bulk-kickoff's record for statusURL in recordDir ("" for none). Failing those,
// the status URL's origin stands in, untrusted. The manifest's request is never a base: the
// server wrote it; without secrets (credentials or extra headers) nothing can leak, so it may
// stand in as the untrusted base of an export that names no other URL. A record that cannot be
// used is reported to warn and passed over.
func FindServer(first *Page, fhirURL, statusURL, recordDir string, secrets bool, warn func(error)) (*Server, error) {
	rec := loadRecord(recordDir, statusURL, warn)
	srv := &Server{Types: exportTypes(first)}
	var err error
	srv.Base, srv.Trusted, err = pickBase(first, fhirURL, rec, statusURL, secrets)
	if err != nil {
		return nil, err
	}
	if rec != nil && strings.TrimRight(srv.Base, "/") == strings.TrimRight(rec.FHIRBase, "/") {
		srv.TokenURL = rec.TokenURL
	}
	return srv, nil
}

func pickBase(first *Page, fhirURL string, rec *bulk.Record, statusURL string, secrets bool) (base, trusted string, err error) {
	for _, b := range []string{fhirURL, first.Context.FHIRBase} {
		if b != "" {
			return b, b, nil
		}
	}
	if rec != nil {
		return rec.FHIRBase, rec.FHIRBase, nil
	}
	if u, err := url.Parse(statusURL); err == nil && u.Host != "" {
		return u.Scheme + "://" + u.Host, "", nil
	}
	if secrets {
		return "", "", &ServerError{"the manifest names no FHIR server and no status URL: give --fhir-url or --status-url, so credentials go only there"}
	}
	// No credentials and no headers: nothing secret can go anywhere, so any origin will do as the
	// (never trusted) base, the manifest's request too, which an export with no files names alone.
	for _, items := range [][]bulk.Item{first.Manifest.Output, first.Manifest.Deleted, first.Manifest.Error,
		{{URL: first.Manifest.Request}}} {
		for _, it := range items {
			if u, err := url.Parse(it.URL); err == nil && u.IsAbs() {
				return u.Scheme + "://" + u.Host, "", nil
			}
		}
	}
	return "", "", &ServerError{"the manifest names no FHIR server: give --fhir-url or --status-url"}
}

// loadRecord is bulk-kickoff's record for the status URL, or nil.
func loadRecord(dir, statusURL string, warn func(error)) *bulk.Record {
	if dir == "" || statusURL == "" {
		return nil
	}
	r, err := bulk.LoadRecord(dir, statusURL)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			warn(err)
		}
		return nil
	}
	return r
}

// exportTypes are the kickoff's _type values, from the context's export URL or the manifest's
// request: only scopes are derived from them, so the server's word will do.
func exportTypes(first *Page) []string {
	for _, req := range []string{first.Context.ExportURL, first.Manifest.Request} {
		if u, err := url.Parse(req); err == nil && req != "" {
			if t := u.Query()["_type"]; len(t) > 0 {
				return bulk.SplitList(t...)
			}
		}
	}
	return nil
}
