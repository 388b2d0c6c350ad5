package attachment

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
)

// bearer is static credentials for tests.
type bearer string

func (b bearer) Authorization(context.Context) (string, error) { return "Bearer " + string(b), nil }
func (b bearer) Reauthorize(context.Context) error             { return fhirclient.ErrCannotReauthorize }

func newServer(t *testing.T, opts fhirtest.Options) *fhirtest.Server {
	t.Helper()
	return fhirtest.Start(t, opts)
}

// newClient is a fhirclient.Client for srv that never waits between retries: tests do not sleep
// on the wall clock (CONTRACTS.md).
func newClient(t *testing.T, base string, mod func(*fhirclient.Options)) *fhirclient.Client {
	t.Helper()
	opts := fhirclient.Options{FHIRBase: base, MaxAttempts: 3,
		Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }}
	if mod != nil {
		mod(&opts)
	}
	c, err := fhirclient.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newInliner(t *testing.T, f Fetcher, mod func(*Options)) (*Inliner, *[]Download) {
	t.Helper()
	var mu sync.Mutex
	var ds []Download
	opts := Options{Fetcher: f, OnDownload: func(d Download) {
		mu.Lock()
		ds = append(ds, d)
		mu.Unlock()
	}}
	if mod != nil {
		mod(&opts)
	}
	in, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return in, &ds
}

// inline runs Stream over input and returns the output.
func inline(t *testing.T, in *Inliner, input string) (string, Stats) {
	t.Helper()
	var out bytes.Buffer
	st, err := in.Stream(t.Context(), "in.ndjson", strings.NewReader(input), &out)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	return out.String(), st
}

// rawResponse is a fhirtest override answering with a fixed status, headers and body.
func rawResponse(status string, header http.Header, body string) []byte {
	var b strings.Builder
	b.WriteString("HTTP/1.1 " + status + "\n")
	for k, vs := range header {
		for _, v := range vs {
			b.WriteString(k + ": " + v + "\n")
		}
	}
	b.WriteString("\n" + body)
	return []byte(b.String())
}
