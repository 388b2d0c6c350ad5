package fhirclient

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseOperationOutcome(t *testing.T) {
	tests := []struct {
		name          string
		in            string
		wantOK        bool
		want          []Issue
		text          string
		transient     bool
		fatal         bool
		wantErrString string
	}{
		{
			name:   "diagnostics",
			in:     `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found","diagnostics":"Job 7 not found","details":{"text":"unknown job"}}]}`,
			wantOK: true, want: []Issue{{Severity: "error", Code: "not-found", Diagnostics: "Job 7 not found", DetailsText: "unknown job"}},
			text: "Job 7 not found", fatal: true,
		},
		{
			name:   "details.text",
			in:     `{"resourceType":"OperationOutcome","issue":[{"severity":"warning","code":"processing","details":{"text":"slow down"}}]}`,
			wantOK: true, want: []Issue{{Severity: "warning", Code: "processing", DetailsText: "slow down"}},
			text: "slow down",
		},
		{
			name:   "code only, transient",
			in:     `{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"transient"}]}`,
			wantOK: true, want: []Issue{{Severity: "information", Code: "transient"}},
			text: "transient", transient: true,
		},
		{
			name: "several issues, fatal",
			in: "\xef\xbb\xbf" + `{"resourceType":"OperationOutcome","issue":[{"severity":"fatal","code":"exception","diagnostics":"disk full"},` +
				`{"severity":"warning","code":"informational","details":{"text":"retry later"}},{"severity":"information"}]}`,
			wantOK: true,
			want: []Issue{{Severity: "fatal", Code: "exception", Diagnostics: "disk full"},
				{Severity: "warning", Code: "informational", DetailsText: "retry later"}, {Severity: "information"}},
			text: "disk full; retry later", fatal: true,
		},
		{
			name:   "wrong types skipped",
			in:     `{"resourceType":"OperationOutcome","issue":[{"severity":3,"code":"invalid","diagnostics":["x"],"details":"oops"},7,{"code":"too-costly"}]}`,
			wantOK: true, want: []Issue{{Code: "invalid"}, {Code: "too-costly"}},
			text: "invalid; too-costly",
		},
		{
			name:   "no issues",
			in:     `{"resourceType":"OperationOutcome"}`,
			wantOK: true, want: nil, wantErrString: "OperationOutcome without issues",
		},
		{name: "other resource", in: `{"resourceType":"Bundle"}`},
		{name: "not json", in: `<html>Bad gateway</html>`},
		{name: "array", in: `[{"resourceType":"OperationOutcome"}]`},
		{name: "resourceType not a string", in: `{"resourceType":5}`},
		{name: "empty", in: ``},
	}
	for _, tt := range tests {
		o, ok := ParseOperationOutcome([]byte(tt.in))
		if ok != tt.wantOK {
			t.Errorf("%s: ParseOperationOutcome(%q) ok = %v, want %v", tt.name, tt.in, ok, tt.wantOK)
			continue
		}
		if !ok {
			if o != nil {
				t.Errorf("%s: ParseOperationOutcome(%q) = %+v, false; want nil", tt.name, tt.in, o)
			}
			continue
		}
		if diff := cmp.Diff(tt.want, o.Issues); diff != "" {
			t.Errorf("%s: issues (-want +got):\n%s", tt.name, diff)
		}
		wantErr := tt.text
		if tt.wantErrString != "" {
			wantErr = tt.wantErrString
		}
		if got := o.Error(); got != wantErr {
			t.Errorf("%s: Error() = %q, want %q", tt.name, got, wantErr)
		}
		if got := o.Transient(); got != tt.transient {
			t.Errorf("%s: Transient() = %v, want %v", tt.name, got, tt.transient)
		}
		if got := o.Fatal(); got != tt.fatal {
			t.Errorf("%s: Fatal() = %v, want %v", tt.name, got, tt.fatal)
		}
	}
}

func FuzzParseOperationOutcome(f *testing.F) {
	f.Add([]byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient","diagnostics":"busy"}]}`))
	f.Add([]byte(`{"resourceType":"OperationOutcome","issue":[{"details":{"text":"x"}},null,"s"]}`))
	f.Add([]byte(`{"resourceType":"OperationOutcome","issue":{}}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, ok := ParseOperationOutcome(b)
		if ok != (o != nil) {
			t.Fatalf("ParseOperationOutcome(%q) = %v, %v: want a value exactly when ok", b, o, ok)
		}
		if ok {
			if o.Error() == "" {
				t.Errorf("ParseOperationOutcome(%q).Error() = \"\", want text", b)
			}
			_, _ = o.Transient(), o.Fatal()
		}
	})
}

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://fhir.example.org/fhir/Patient/1", "https://fhir.example.org/fhir/Patient/1"},
		{"https://b.s3.amazonaws.com/f.ndjson?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20240101&X-Amz-Date=20240101T000000Z&X-Amz-Signature=abc123&X-Amz-Security-Token=tok",
			"https://b.s3.amazonaws.com/f.ndjson?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=REDACTED&X-Amz-Date=20240101T000000Z&X-Amz-Signature=REDACTED&X-Amz-Security-Token=REDACTED"},
		{"https://a.blob.core.windows.net/c/f?sv=2022-11-02&se=2024&sig=ZXhhbXBsZQ%3D%3D", "https://a.blob.core.windows.net/c/f?sv=2022-11-02&se=2024&sig=REDACTED"},
		{"https://d.cloudfront.net/f?Expires=1&Signature=s~x&Key-Pair-Id=K1&Policy=p", "https://d.cloudfront.net/f?Expires=1&Signature=REDACTED&Key-Pair-Id=REDACTED&Policy=REDACTED"},
		{"https://x/cb?code=abc&state=1&access_token=t&token=u&signature=v", "https://x/cb?code=REDACTED&state=1&access_token=REDACTED&token=REDACTED&signature=REDACTED"},
		{"https://x/f?SIG=a&%73ig=b", "https://x/f?SIG=REDACTED&%73ig=REDACTED"},
		{"https://x/f?sig&sig=", "https://x/f?sig&sig=REDACTED"},
		{"https://user:hunter2@x/f", "https://user:REDACTED@x/f"},
		{"https://x/f?_type=Patient,Observation&_since=2024", "https://x/f?_type=Patient,Observation&_since=2024"},
		{"https://x/f?sig=REDACTED", "https://x/f?sig=REDACTED"},
		{"http://x:bad/f?sig=secret", "http://x:bad/f?REDACTED"},
		{"http://u:pw@x:bad/f", "http://REDACTED@x:bad/f"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzRedact(f *testing.F) {
	for _, s := range []string{"https://x/f?sig=abc", "https://u:p@x/?X-Amz-Signature=1&a=2", "http://x:bad/f?sig=s#frag", "%zz?code=1", "://@?"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r := Redact(s)
		// The redaction is idempotent; the escaping Redact adds for printing is a presentation of
		// its result, not an input to redact again: an escaped byte (\x80) in a host makes the URL
		// unparseable, and an unparseable URL loses its query and fragment (found by this test).
		if core := redact(s); redact(core) != core || r != Printable(core) {
			t.Errorf("redact(%q) = %q, again %q; Redact = %q, want Printable of it", s, core, redact(core), r)
		}
		if strings.ContainsFunc(r, func(c rune) bool { return c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) }) {
			t.Errorf("Redact(%q) = %q, which holds a control character", s, r)
		}
		u, err := url.Parse(r)
		if err != nil {
			return
		}
		for k, vs := range u.Query() {
			for _, v := range vs {
				if secretParams[strings.ToLower(k)] && v != redacted && v != "" {
					t.Errorf("Redact(%q) = %q, which keeps %s=%q", s, r, k, v)
				}
			}
		}
		if p, ok := u.User.Password(); ok && p != redacted {
			t.Errorf("Redact(%q) = %q, which keeps a password", s, r)
		}
	})
}

func TestStatusErrorMessages(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		body        string
		want        string
	}{
		{"outcome", "application/fhir+json", `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found","diagnostics":"Job not found"}]}`,
			"GET %s/fhir/status/1: 404 Not Found: Job not found"},
		{"empty outcome", "application/fhir+json", `{"resourceType":"OperationOutcome"}`, "GET %s/fhir/status/1: 404 Not Found"},
		{"gateway json", "application/json", "{\"message\":\n  \"no route\"}", `GET %s/fhir/status/1: 404 Not Found: {"message": "no route"}`},
		{"text", "text/plain; charset=utf-8", strings.Repeat("long ", 100), "GET %s/fhir/status/1: 404 Not Found: " + strings.Repeat("long ", 39) + "long…"},
		{"html", "text/html", "<html><body>Not here</body></html>", "GET %s/fhir/status/1: 404 Not Found"},
		{"empty", "", "", "GET %s/fhir/status/1: 404 Not Found"},
	}
	for _, tt := range tests {
		srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
			if tt.contentType != "" {
				w.Header().Set("Content-Type", tt.contentType)
			}
			w.WriteHeader(404)
			io.WriteString(w, tt.body)
		})
		c, _ := newTestClient(t, srv.URL+"/fhir", Options{})
		_, err := c.Do(t.Context(), &Request{URL: "status/1", Route: RouteStatus})
		want := strings.Replace(tt.want, "%s", srv.URL, 1)
		if err == nil || err.Error() != want {
			t.Errorf("%s: Do = %v, want %q", tt.name, err, want)
		}
		if tt.name == "outcome" {
			if o, ok := errors.AsType[*OperationOutcome](err); !ok || o.Issues[0].Code != "not-found" {
				t.Errorf("%s: errors.AsType[*OperationOutcome](%v) = %v, %v", tt.name, err, o, ok)
			}
		}
	}
}

func TestStatusLine(t *testing.T) {
	tests := []struct {
		code   int
		status string
		want   string
	}{
		{503, "503 Service Unavailable", "503 Service Unavailable"},
		{503, "503 Slow Down", "503 Slow Down"},
		{503, "", "503 Service Unavailable"},
		{503, "503 ", "503 Service Unavailable"},
		{599, "599 ", "599"},
		{404, "nonsense", "404 Not Found"},
	}
	for _, tt := range tests {
		if got := statusLine(tt.code, tt.status); got != tt.want {
			t.Errorf("statusLine(%d, %q) = %q, want %q", tt.code, tt.status, got, tt.want)
		}
	}
}

// TestSecretsNeverInErrors drives every error path with a token and a --header value, against a
// server that echoes them back, and checks no error string holds either.
func TestSecretsNeverInErrors(t *testing.T) {
	const token, headerValue = "s3cr3t-token-value", "hdr-s3cr3t-value"
	echo := func(code int, contentType string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", contentType)
			w.WriteHeader(code)
			got := r.Header.Get("Authorization") + " " + r.Header.Get("X-Api-Key")
			if contentType == "application/fhir+json" {
				io.WriteString(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"security","diagnostics":"rejected `+got+`"}]}`)
				return
			}
			io.WriteString(w, `{"error":"rejected `+got+`"}`)
		}
	}
	cases := []struct {
		name  string
		steps []http.HandlerFunc
		route Route
	}{
		{"outcome 403", []http.HandlerFunc{echo(403, "application/fhir+json")}, RouteStatus},
		{"json 400", []http.HandlerFunc{echo(400, "application/json")}, RouteStatus},
		{"401 after reauth", []http.HandlerFunc{echo(401, "application/fhir+json")}, RouteStatus},
		{"give up", []http.HandlerFunc{echo(503, "application/json")}, RouteFile},
		{"kickoff reset", []http.HandlerFunc{reset}, RouteKickoff},
	}
	for _, tc := range cases {
		srv, _ := serve(t, tc.steps...)
		creds := &fakeCreds{prefix: token}
		c, _ := newTestClient(t, srv.URL+"/fhir", Options{Credentials: creds, MaxAttempts: 2,
			Header: http.Header{"X-Api-Key": {headerValue}}})
		_, err := c.Do(t.Context(), &Request{URL: "x?sig=presigned-secret", Route: tc.route})
		if err == nil {
			t.Fatalf("%s: Do = nil, want an error", tc.name)
		}
		for _, secret := range []string{token, headerValue, "presigned-secret"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: error %q contains %q", tc.name, err, secret)
			}
		}
		if se, ok := errors.AsType[*StatusError](err); ok {
			if strings.Contains(string(se.Body), token) || strings.Contains(string(se.Body), headerValue) {
				t.Errorf("%s: StatusError.Body %q holds a secret", tc.name, se.Body)
			}
		}
	}
	// Transport errors and New's validation.
	c, _ := newTestClient(t, closedURL(t), Options{Credentials: &fakeCreds{prefix: token}, MaxAttempts: 1})
	if _, err := c.Do(t.Context(), &Request{URL: "x?token=" + token, Route: RouteStatus}); err == nil || strings.Contains(err.Error(), token) {
		t.Errorf("transport error = %v, want an error without the token", err)
	}
	if _, err := New(Options{FHIRBase: "http://x", Header: http.Header{"X-Api-Key": {headerValue + "\n"}}}); err == nil || strings.Contains(err.Error(), headerValue) {
		t.Errorf("New with a bad header value = %v, want an error without the value", err)
	}
}
