package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAnnouncedTerabyteInPlace is issue 11.8 as the user met it: --max-size 0 and an attachment
// whose server announces a terabyte crashed with "out of memory" (exit 2) and left a temporary
// file beside the input. Now the attachment is skipped, the run ends normally, and the folder
// holds only what it held.
func TestAnnouncedTerabyteInPlace(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1099511627776\r\nConnection: close\r\n\r\nhello")
		buf.Flush()
	}))
	defer srv.Close()
	dir := t.TempDir()
	in := filepath.Join(dir, "DocumentReference.000.ndjson")
	line := `{"resourceType":"DocumentReference","id":"1","content":[{"attachment":{"contentType":"text/plain","url":"` + srv.URL + `/Binary/huge"}}]}` + "\n"
	if err := os.WriteFile(in, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	st, stderr := runInline(t, nil, "--fhir-url", srv.URL, "--max-size", "0", "-i", in)
	if st.ExitCode() != 0 {
		t.Errorf("ndjson-inline --max-size 0 -i (a terabyte announced) exits %d, want 0\n%s", st.ExitCode(), stderr)
	}
	if !strings.Contains(stderr, "larger than the maximum attachment size (1099511627776 bytes announced)") {
		t.Errorf("stderr = %q, want the attachment reported as too large", stderr)
	}
	if b, _ := os.ReadFile(in); string(b) != line {
		t.Errorf("the file became %q, want it unchanged", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("the folder holds %q, want only the input", names)
	}
}
