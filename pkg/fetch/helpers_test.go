package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
)

// noSleep replaces every wait, so retry schedules run without the wall clock.
func noSleep(ctx context.Context, _ time.Duration) error { return ctx.Err() }

func newServer(t *testing.T, opts fhirtest.Options) *fhirtest.Server {
	t.Helper()
	return fhirtest.Start(t, opts)
}

// newClient is what tool.NewClientWith builds, with sleeps injected.
func newClient(t *testing.T, base string, opts fhirclient.Options) *fhirclient.Client {
	t.Helper()
	opts.FHIRBase = base
	opts.Sleep = noSleep
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = 8
	}
	c, err := fhirclient.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// export kicks off an export and returns its manifest lines as bulk-poll prints them.
func export(t *testing.T, srv *fhirtest.Server, c *fhirclient.Client, req bulk.KickoffRequest) []byte {
	t.Helper()
	ctx := t.Context()
	if req.URL == "" {
		req.URL = srv.URL()
	}
	pk, err := req.Prepare()
	if err != nil {
		t.Fatal(err)
	}
	res, err := pk.Send(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = bulk.Poll(ctx, c, res.StatusURL, bulk.PollOptions{Sleep: noSleep}, func(p bulk.Page) error {
		line, err := bulk.WithContext(p.Raw, bulk.Context{StatusURL: res.StatusURL, FHIRBase: srv.URL(),
			ExportURL: res.ExportURL, Expires: p.Expires, Page: p.Number})
		out.Write(line)
		out.WriteByte('\n')
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// recorder collects the callbacks of a run.
type recorder struct {
	mu       sync.Mutex
	warnings []string
	written  []string
	limits   []int
	retries  int
}

func (r *recorder) callbacks() Callbacks {
	return Callbacks{
		Warn:    func(m string) { r.mu.Lock(); r.warnings = append(r.warnings, m); r.mu.Unlock() },
		Written: func(p string) { r.mu.Lock(); r.written = append(r.written, p); r.mu.Unlock() },
		Limit:   func(n int, _ string) { r.mu.Lock(); r.limits = append(r.limits, n); r.mu.Unlock() },
		Retry:   func(string, int, string, string) { r.mu.Lock(); r.retries++; r.mu.Unlock() },
	}
}

func (r *recorder) warned(sub string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.warnings {
		if strings.Contains(w, sub) {
			return true
		}
	}
	return false
}

// fetchInto runs the engine on manifest lines.
func fetchInto(t *testing.T, dir string, c *fhirclient.Client, manifest []byte, tweak func(*Options)) (*Result, *recorder, error) {
	t.Helper()
	rec := &recorder{}
	o := Options{Dir: dir, Client: c, Poll: bulk.PollOptions{Sleep: noSleep}, On: rec.callbacks(), Version: "test"}
	if tweak != nil {
		tweak(&o)
	}
	res, err := Run(t.Context(), o, NewPageReader(bytes.NewReader(manifest), "manifest", 0))
	return res, rec, err
}

// snapshot maps every file of an export folder to its SHA-256, leaving out what legitimately
// differs between two runs of the same export: the log (timestamps, retries) and the lock.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == "log.ndjson" || rel == ".bulkpipe/lock" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		s := sha256.Sum256(b)
		m[rel] = hex.EncodeToString(s[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// fileRequests returns the server's file requests from index from on.
func fileRequests(srv *fhirtest.Server, from int) []fhirtest.RequestRecord {
	var out []fhirtest.RequestRecord
	for _, r := range srv.Requests()[from:] {
		if r.Route == fhirtest.RouteFile {
			out = append(out, r)
		}
	}
	return out
}
