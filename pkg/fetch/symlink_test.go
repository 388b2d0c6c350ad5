package fetch

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
)

// TestFetchSymlinks: a symbolic link at any name bulk-fetch creates or appends to in DIR never
// leads a write outside it. Files opened in place (.part, lock, log) and folders refuse the link
// with an error naming it; names replaced by a rename (manifest.json, state.json, data files)
// replace the link itself, and so does state.json's journal, which is never read through a link; a link at a data file's name is read, as the user's. Either way the
// link's target is unchanged.
func TestFetchSymlinks(t *testing.T) {
	const bundle = `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/9"}}]}` + "\n"
	const oo = `{"resourceType":"OperationOutcome","issue":[{"severity":"warning","code":"informational","diagnostics":"fine"}]}` + "\n"
	// The Patient file is longer than a chunk, so that its resume record is written (under
	// .bulkpipe/parts): a file that arrives in one chunk needs none.
	big := strings.Repeat(patients, chunk/len(patients)+1)
	srv := newFileServer(t, map[string]string{"/f/p": big, "/f/d": bundle, "/f/e": oo})
	c := newClient(t, srv.URL, fhirclient.Options{})
	line := manifestLine(t, srv.URL+"/status/1", map[string]any{"output": items(srv.URL, "Patient", "/f/p"),
		"deleted": items(srv.URL, "Bundle", "/f/d"), "error": items(srv.URL, "OperationOutcome", "/f/e")})
	tests := []struct {
		name    string // the link, inside DIR
		dir     bool   // the link points at a folder
		refused bool   // the run fails naming the link
	}{
		{"Patient.000.ndjson.part", false, true},
		{"deleted/Bundle.000.ndjson.part", false, true},
		{"error/OperationOutcome.000.ndjson.part", false, true},
		{".bulkpipe/lock", false, true},
		{"log.ndjson", false, true},
		{"deleted", true, true},
		{"error", true, true},
		{".bulkpipe", true, true},
		{".bulkpipe/parts", true, true},
		// Replaced by a rename (the link itself is replaced, never followed).
		{"manifest.json", false, false},
		{".bulkpipe/state.json", false, false},
		{".bulkpipe/state.journal", false, false},
		// Read through (users link exports together), refused as not this export's file.
		{"Patient.000.ndjson", false, false},
		{"error/OperationOutcome.000.ndjson", false, false},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, "/", "_"), func(t *testing.T) {
			root := t.TempDir()
			canary := filepath.Join(root, "canary")
			if tt.dir {
				if err := os.Mkdir(canary, 0o755); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(canary, []byte("canary\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(root, "export")
			link := filepath.Join(dir, filepath.FromSlash(tt.name))
			if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(canary, link); err != nil {
				t.Fatal(err)
			}
			_, _, err := fetchInto(t, dir, c, line, func(o *Options) { o.NoDelete = true })
			switch {
			case tt.refused && (!errors.Is(err, exportdir.ErrSymlink) || !strings.Contains(err.Error(), link)):
				t.Errorf("fetch with a link at %s: err = %v, want a refusal naming %s", tt.name, err, link)
			}
			if tt.dir {
				if entries, _ := os.ReadDir(canary); len(entries) > 0 {
					t.Errorf("link at %s: %d entries written into its target", tt.name, len(entries))
				}
			} else if b, err := os.ReadFile(canary); err != nil || string(b) != "canary\n" {
				t.Errorf("link at %s: target = %q, %v; want it unchanged", tt.name, b, err)
			}
		})
	}
}
