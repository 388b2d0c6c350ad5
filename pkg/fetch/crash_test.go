package fetch

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/failpoint"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
)

// crashChildEnv makes TestFetchKillResumes's child: this test binary, run again, fetching the
// manifest line in the variable into the folder in crashDirEnv until the failpoint kills it.
const (
	crashChildEnv = "FETCH_CRASH_CHILD_MANIFEST"
	crashDirEnv   = "FETCH_CRASH_CHILD_DIR"
)

// TestFetchKillChild is the child's body; it does nothing in a normal test run.
func TestFetchKillChild(t *testing.T) {
	line := os.Getenv(crashChildEnv)
	if line == "" {
		t.Skip("only run as the child of TestFetchKillResumes")
	}
	c := newClient(t, "http://127.0.0.1", fhirclient.Options{})
	_, _, err := fetchInto(t, os.Getenv(crashDirEnv), c, []byte(line), func(o *Options) { o.NoDelete = true })
	t.Fatalf("the failpoint did not kill the fetch: %v", err)
}

// TestFetchKillResumes: bulk-fetch killed with SIGKILL after 10 MiB of a 50 MB file keeps what
// it received in the .part, and the rerun continues with a Range from there, identity or gzip on
// the wire.
func TestFetchKillResumes(t *testing.T) {
	if !failpoint.Enabled {
		t.Skip("failpoints need go test -tags failpoint (make test)")
	}
	if testing.Short() {
		t.Skip("downloads 50 MB twice")
	}
	line := `{"resourceType":"Patient","id":"x","text":{"div":"` + strings.Repeat("p", 200) + `"}}` + "\n"
	body := strings.Repeat(line, 50_000_000/len(line))
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	zw.Write([]byte(body))
	zw.Close()
	modified := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, enc := range []string{"identity", "gzip"} {
		t.Run(enc, func(t *testing.T) {
			var mu sync.Mutex
			var ranges []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				ranges = append(ranges, r.Header.Get("Range"))
				mu.Unlock()
				if enc == "gzip" && r.Header.Get("Range") == "" && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
					w.Header().Set("Content-Encoding", "gzip")
					w.Header().Set("Last-Modified", modified.Format(http.TimeFormat))
					w.Header().Set("Content-Length", strconv.Itoa(gz.Len()))
					w.Write(gz.Bytes())
					return
				}
				if enc == "identity" {
					w.Header().Set("ETag", `"v1"`)
				}
				http.ServeContent(w, r, "", modified, strings.NewReader(body))
			}))
			t.Cleanup(srv.Close)
			dir := t.TempDir()
			manifest := manifestLine(t, srv.URL+"/status/1", map[string]any{"output": items(srv.URL, "Patient", "/f/p")})
			child := exec.Command(os.Args[0], "-test.run=^TestFetchKillChild$")
			child.Env = append(os.Environ(), crashChildEnv+"="+strings.TrimSpace(string(manifest)), crashDirEnv+"="+dir,
				failpoint.Env+"="+FailAfterPartWrite+":40")
			out, err := child.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child: %v, want killed by SIGKILL\n%s", err, out)
			}
			st, err := os.Stat(filepath.Join(dir, "Patient.000.ndjson.part"))
			if err != nil || st.Size() < 10<<20 {
				t.Fatalf("after the kill: .part %v, %v; want at least 10 MiB", st, err)
			}
			mu.Lock()
			ranges = nil
			mu.Unlock()
			c := newClient(t, srv.URL, fhirclient.Options{})
			if _, _, err := fetchInto(t, dir, c, manifest, func(o *Options) { o.NoDelete = true }); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(dir, "Patient.000.ndjson")); err != nil || string(b) != body {
				t.Errorf("file after the rerun: %d bytes, %v; want the body (%d bytes)", len(b), err, len(body))
			}
			var from int64 = -1
			if len(ranges) > 0 {
				fmt.Sscanf(ranges[0], "bytes=%d-", &from)
			}
			if len(ranges) != 1 || from < 8_000_000 {
				t.Errorf("the rerun's requests had Range %q; want one, from at least 8 MB (the .part had %d bytes)", ranges, st.Size())
			}
		})
	}
}
