package tool

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/urfave/cli/v2"
)

// TestRetriesCount: --retries N is N retries after the first attempt, so a server that always
// answers 503 sees N+1 requests; 0 means none, and a negative count is a usage error.
func TestRetriesCount(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	tests := []struct {
		args     []string
		requests int32
		giveUp   string
	}{
		{[]string{"--retries", "0"}, 1, "giving up after 1 attempt: 503"},
		{[]string{"--retries", "1"}, 2, "giving up after 2 attempts: 503"},
		{[]string{"--retries", "3"}, 4, "giving up after 4 attempts: 503"},
		{nil, DefaultRetries + 1, "giving up after 8 attempts: 503"},
	}
	for _, tt := range tests {
		requests.Store(0)
		client, code, stderr := noSleepClient(t, append([]string{"--fhir-url", srv.URL + "/fhir"}, tt.args...)...)
		if code != 0 {
			t.Fatalf("%q: exit %d: %s", tt.args, code, stderr)
		}
		_, err := client.Do(context.Background(), &fhirclient.Request{URL: srv.URL + "/fhir/metadata", Route: fhirclient.RouteMetadata})
		if got := requests.Load(); got != tt.requests {
			t.Errorf("%q: server saw %d requests, want %d", tt.args, got, tt.requests)
		}
		if err == nil || !strings.Contains(err.Error(), tt.giveUp) {
			t.Errorf("%q: error = %v, want it to contain %q", tt.args, err, tt.giveUp)
		}
	}
	for _, bad := range []string{"-1", "101"} {
		_, code, stderr := noSleepClient(t, "--fhir-url", srv.URL+"/fhir", "--retries="+bad)
		if want := "t: --retries " + bad + ": want 0 to 100 retries after the first attempt\n"; code != ExitUsage || stderr != want {
			t.Errorf("--retries=%s: exit %d, stderr %q, want %d %q", bad, code, stderr, ExitUsage, want)
		}
	}
}

// noSleepClient is clientFor with the retry waits skipped.
func noSleepClient(t *testing.T, args ...string) (*fhirclient.Client, int, string) {
	t.Helper()
	var client *fhirclient.Client
	app := &cli.App{Name: "t", Flags: ServerFlags(), Action: func(c *cli.Context) error {
		var err error
		client, err = NewClientWith(c, ClientConfig{Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }})
		return err
	}}
	var stderr bytes.Buffer
	code := Run(context.Background(), app, append([]string{"t"}, args...), strings.NewReader(""), &bytes.Buffer{}, &stderr)
	return client, code, stderr.String()
}

// TestUserURLsChecked: --fhir-url and --token-url without a scheme get the message a relative
// URL gets, before any request.
func TestUserURLsChecked(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "key.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--fhir-url", "127.0.0.1:8080/fhir"},
			`t: --fhir-url: FHIR base URL "127.0.0.1:8080/fhir": want an absolute http or https URL (did you mean https://127.0.0.1:8080/fhir?)` + "\n"},
		{[]string{"--fhir-url", "https://ehr.example/fhir", "--smart-client-id", "abc", "--smart-key", keyFile, "--token-url", "ehr.example/token"},
			`t: --token-url "ehr.example/token": want an absolute http or https URL (did you mean https://ehr.example/token?)` + "\n"},
	}
	for _, tt := range tests {
		_, code, stderr := noSleepClient(t, tt.args...)
		if code != ExitUsage || stderr != tt.want {
			t.Errorf("%q: exit %d, stderr %q, want %d %q", tt.args, code, stderr, ExitUsage, tt.want)
		}
	}
}

// TestOneHeaderVariable: BULK_HEADER takes several lines; BULK_HEADERS is refused, not ignored.
func TestOneHeaderVariable(t *testing.T) {
	t.Setenv("BULK_HEADER", "X-A: 1\nX-B: 2")
	c, code, stderr := noSleepClient(t, "--fhir-url", "https://x/fhir")
	if code != 0 || c == nil {
		t.Fatalf("BULK_HEADER of two lines: exit %d: %s", code, stderr)
	}
	t.Setenv("BULK_HEADERS", "X-C: 3")
	_, code, stderr = noSleepClient(t, "--fhir-url", "https://x/fhir")
	if want := "t: BULK_HEADERS is no longer read: put its lines in BULK_HEADER\n"; code != ExitUsage || stderr != want {
		t.Errorf("with BULK_HEADERS: exit %d, stderr %q, want %d %q", code, stderr, ExitUsage, want)
	}
}
