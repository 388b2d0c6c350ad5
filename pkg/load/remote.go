package load

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
)

// maxMedication caps one downloaded Medication; real ones are a few KiB.
const maxMedication = 16 << 20

// remote is what a FHIR server adds to a load (DESIGN.md §7, as Cumulus ETL's --fhir-url): the
// Medications that MedicationRequests reference but no file has, and clinical-note attachments
// not inlined yet, both downloaded while the folder loads.
type remote struct {
	client  *fhirclient.Client
	inliner *attachment.Inliner
	warn    func(string)

	mu          sync.Mutex
	attachments attachment.Stats
}

func newRemote(o *Options) (*remote, error) {
	client, err := o.FHIR()
	if err != nil {
		return nil, err
	}
	r := &remote{client: client, warn: o.warn}
	r.inliner, err = attachment.New(attachment.Options{Fetcher: client, MaxLine: o.MaxLine, OnDownload: r.onDownload})
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (r *remote) onDownload(d attachment.Download) {
	if d.Result == attachment.Failed {
		r.warn(fmt.Sprintf("%s:%d: %s %s: %s: %v (left as a link)", d.Name, d.Line, d.Resource, d.Path, d.URL, d.Err))
	}
}

// Medication downloads one Medication (store.MedicationSource). The answer is compacted to one
// line, as the NDJSON snapshot needs.
func (r *remote) Medication(ctx context.Context, ref string) ([]byte, string, error) {
	u, err := r.client.Resolve(ref)
	if err != nil {
		return nil, "", err
	}
	// Guard: the reference comes from the data and may be absolute; like an attachment URL it
	// must not reach a link-local address or a cloud metadata endpoint.
	resp, err := r.client.Do(ctx, &fhirclient.Request{URL: u.String(), Route: fhirclient.RouteOther, Guard: true,
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
func (r *remote) inline(ctx context.Context, f store.File) store.File {
	if !slices.Contains(attachment.DefaultResources, f.ResourceType) || f.Deleted {
		return f
	}
	path := f.Path
	f.Open = func() (io.ReadCloser, error) {
		in, err := exportdir.OpenFile(path)
		if err != nil {
			return nil, err
		}
		pr, pw := io.Pipe()
		go func() {
			st, err := r.inliner.Stream(ctx, path, in, pw)
			in.Close()
			r.mu.Lock()
			r.attachments.Add(st)
			r.mu.Unlock()
			pw.CloseWithError(err)
		}()
		return pr, nil
	}
	return f
}

func (r *remote) failedAttachments() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attachments.Failed
}
