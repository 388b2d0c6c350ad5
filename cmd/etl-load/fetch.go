package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"

	"github.com/bulkpipe/bulkpipe/pkg/attachment"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/store"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
	"github.com/urfave/cli/v2"
)

// maxMedication caps one downloaded Medication; real ones are a few KiB.
const maxMedication = 16 << 20

// server is what --fhir-url adds to a load (DESIGN.md §7, as Cumulus ETL's --fhir-url): the
// Medications that MedicationRequests reference but no file has, and clinical-note attachments
// not inlined yet, both downloaded while the folder loads.
type server struct {
	client  *fhirclient.Client
	inliner *attachment.Inliner
	cfg     *config

	mu          sync.Mutex
	attachments attachment.Stats
}

func newServer(c *cli.Context, cfg *config) (*server, error) {
	if c.String("fhir-url") == "" {
		return nil, nil
	}
	client, err := tool.NewClientWith(c, tool.ClientConfig{Types: []string{"Medication", "DocumentReference", "DiagnosticReport"},
		Linked: []string{"Binary"}, Status: cfg.status})
	if err != nil {
		return nil, err
	}
	s := &server{client: client, cfg: cfg}
	s.inliner, err = attachment.New(attachment.Options{Fetcher: client, MaxLine: cfg.maxLine, OnDownload: s.onDownload})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (s *server) onDownload(d attachment.Download) {
	if d.Result == attachment.Failed {
		s.cfg.status.Print("%s:%d: %s %s: %s: %v (left as a link)", d.Name, d.Line, d.Resource, d.Path, d.URL, d.Err)
	}
}

// Medication downloads one Medication (store.MedicationSource). The answer is compacted to one
// line, as the NDJSON snapshot needs.
func (s *server) Medication(ctx context.Context, ref string) ([]byte, string, error) {
	u, err := s.client.Resolve(ref)
	if err != nil {
		return nil, "", err
	}
	// Guard: the reference comes from the data and may be absolute; like an attachment URL it
	// must not reach a link-local address or a cloud metadata endpoint.
	resp, err := s.client.Do(ctx, &fhirclient.Request{URL: u.String(), Route: fhirclient.RouteOther, Guard: true,
		Header: http.Header{"Accept": {"application/fhir+json"}}})
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMedication+1))
	redacted := fhirclient.Redact(u.String())
	switch {
	case err != nil:
		return nil, "", fmt.Errorf("GET %s: %w", redacted, err)
	case len(body) > maxMedication:
		return nil, "", fmt.Errorf("GET %s: larger than %d bytes", redacted, maxMedication)
	}
	var out bytes.Buffer
	if err := json.Compact(&out, body); err != nil {
		return nil, "", fmt.Errorf("GET %s: the answer is not JSON", redacted)
	}
	return out.Bytes(), redacted, nil
}

// inline wraps a file's opener so that DocumentReference and DiagnosticReport files are read
// through the inliner (ndjson-inline's engine): attachments without data are downloaded and
// inlined on the way into the database; the file on disk is not changed.
func (s *server) inline(ctx context.Context, f store.File) store.File {
	if !slices.Contains(attachment.DefaultResources, f.ResourceType) || f.Deleted {
		return f
	}
	path := f.Path
	f.Open = func() (io.ReadCloser, error) {
		r, err := exportdir.OpenFile(path)
		if err != nil {
			return nil, err
		}
		pr, pw := io.Pipe()
		go func() {
			st, err := s.inliner.Stream(ctx, path, r, pw)
			r.Close()
			s.mu.Lock()
			s.attachments.Add(st)
			s.mu.Unlock()
			pw.CloseWithError(err)
		}()
		return pr, nil
	}
	return f
}

func (s *server) failedAttachments() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attachments.Failed
}
