package tool

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/google/go-cmp/cmp"
	"github.com/urfave/cli/v2"
)

func TestParseHeaders(t *testing.T) {
	file := filepath.Join(t.TempDir(), "headers")
	os.WriteFile(file, []byte("# comment\nX-Api-Key: s3cret\n\nX-Tenant:  a b \n"), 0o600)
	tests := []struct {
		flags []string
		env   string
		want  http.Header
		err   string
	}{
		{nil, "", http.Header{}, ""},
		{[]string{"x-site: a,b"}, "", http.Header{"X-Site": {"a,b"}}, ""},
		{[]string{"@" + file}, "X-Env: 1\n", http.Header{"X-Api-Key": {"s3cret"}, "X-Tenant": {"a b"}, "X-Env": {"1"}}, ""},
		{[]string{"novalue-s3cret"}, "", nil, `--header: want 'Name: value', got a line starting "novalue-s3cret"`},
		{[]string{"Authorization: Bearer s3cret"}, "", nil, "--header: use --bearer-token"},
		{[]string{"@/nonexistent"}, "", nil, "--header: open /nonexistent"},
	}
	for _, tt := range tests {
		got, err := parseHeaders(tt.flags, tt.env)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || !IsUsageError(err) {
				t.Errorf("parseHeaders(%q) error = %v, want usage error containing %q", tt.flags, err, tt.err)
			}
			if err != nil && strings.Contains(err.Error(), "Bearer s3cret") {
				t.Errorf("parseHeaders(%q) error leaks the value: %v", tt.flags, err)
			}
			continue
		}
		if err != nil || !cmp.Equal(got, tt.want) {
			t.Errorf("parseHeaders(%q, %q) = %v, %v, want %v", tt.flags, tt.env, got, err, tt.want)
		}
	}
}

// clientFor runs a tiny app with the server flags and returns what NewClient made of them.
func clientFor(t *testing.T, env map[string]string, args ...string) (*fhirclient.Client, int, string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var client *fhirclient.Client
	app := &cli.App{Name: "t", Flags: ServerFlags(), Action: func(c *cli.Context) error {
		var err error
		client, err = NewClientWith(c, ClientConfig{Types: []string{"Patient"}})
		return err
	}}
	var stderr bytes.Buffer
	code := Run(context.Background(), app, append([]string{"t"}, args...), strings.NewReader(""), &bytes.Buffer{}, &stderr)
	return client, code, stderr.String()
}

func TestNewClientAuthChoice(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("tok123\n"), 0o600)
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte("pw\n"), 0o600)
	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stderr string
	}{
		{"no auth", nil, []string{"--fhir-url", "http://x/fhir"}, 0, ""},
		{"bearer file", nil, []string{"--fhir-url", "http://x/fhir", "--bearer-token", tokenFile}, 0, ""},
		{"bearer env", map[string]string{"BULK_BEARER_TOKEN": "tok"}, []string{"--fhir-url", "http://x/fhir"}, 0, ""},
		{"basic", nil, []string{"--fhir-url", "http://x/fhir", "--basic-user", "u", "--basic-password", pwFile}, 0, ""},
		{"basic without password", nil, []string{"--basic-user", "u"}, 2, "basic auth needs a password"},
		{"two methods", map[string]string{"BULK_BEARER_TOKEN": "tok"}, []string{"--basic-user", "u", "--basic-password", pwFile}, 2, "choose one way to authenticate"},
		{"smart half", nil, []string{"--smart-client-id", "abc"}, 2, "needs both --smart-client-id and --smart-key"},
		{"no base", nil, nil, 2, "no FHIR base URL: give --fhir-url"},
		{"smart without base", nil, []string{"--smart-client-id", "a", "--smart-key", "/dev/null"}, 2, "--smart-key"},
		{"bad url", nil, []string{"--fhir-url", "http://u:pw@x/fhir?q=1"}, 2, "--fhir-url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, code, stderr := clientFor(t, tt.env, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("exit %d, stderr %q; want exit %d, stderr containing %q", code, stderr, tt.code, tt.stderr)
			}
			if strings.Contains(stderr, "tok123") || strings.Contains(stderr, "pw\n") {
				t.Errorf("stderr leaks a secret: %q", stderr)
			}
		})
	}
}

// TestNewClientSendsBearer proves the wiring: the token from the file reaches a trusted server.
func TestNewClientSendsBearer(t *testing.T) {
	var got string
	srv := newRecorder(t, &got)
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("tok123\n"), 0o600)
	client, code, stderr := clientFor(t, nil, "--fhir-url", srv+"/fhir", "--bearer-token", tokenFile, "--header", "X-Site: 7")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	resp, err := client.Do(context.Background(), &fhirclient.Request{Method: "GET", URL: srv + "/fhir/metadata", Route: fhirclient.RouteMetadata})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got != "Bearer tok123|7" {
		t.Errorf("server saw %q, want %q", got, "Bearer tok123|7")
	}
}

// A retry is printed through the tool's Status: it clears the progress line first instead of
// being glued to its end.
func TestClientRetryThroughStatus(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls++; calls == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(`{"resourceType":"CapabilityStatement"}`))
	}))
	defer srv.Close()
	var errb bytes.Buffer
	st := NewStatusTo("t", &errb, true, false)
	app := &cli.App{Name: "t", Flags: ServerFlags(), Action: func(c *cli.Context) error {
		client, err := NewClientWith(c, ClientConfig{Base: srv.URL, Status: st,
			Sleep: func(context.Context, time.Duration) error { return nil }})
		if err != nil {
			return err
		}
		st.Progress(true, "working")
		_, err = client.Metadata(c.Context)
		return err
	}}
	if code := Run(t.Context(), app, []string{"t"}, strings.NewReader(""), &bytes.Buffer{}, &errb); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if want := "\rt: working\x1b[K\r\x1b[Kt: GET " + srv.URL + "/metadata: 503 Service Unavailable"; !strings.HasPrefix(errb.String(), want) {
		t.Errorf("stderr = %q, want it to start %q", errb.String(), want)
	}
}
