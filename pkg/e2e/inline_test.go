package e2e

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"mime"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tidwall/gjson"

	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirjson"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/synth"
)

// inlineMediaTypes are ndjson-inline's defaults.
var inlineMediaTypes = map[string]bool{"text/plain": true, "text/html": true, "application/xhtml+xml": true}

// noteAttachments counts the attachments of an export folder's notes that ndjson-inline selects,
// with and without data.
func noteAttachments(t *testing.T, dir string) (withURL, inlined int) {
	t.Helper()
	files, err := exportdir.Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.ResourceType != "DocumentReference" && f.ResourceType != "DiagnosticReport" {
			continue
		}
		b, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		for l := range bytes.Lines(b) {
			for _, a := range fhirjson.Attachments(l) {
				mt, _, _ := mime.ParseMediaType(a.ContentType)
				switch {
				case !inlineMediaTypes[mt]:
				case a.HasData:
					inlined++
				case a.URL != "":
					withURL++
				}
			}
		}
	}
	return withURL, inlined
}

// selected lists the attachments of an export folder's notes that ndjson-inline must fill in
// (selected media type, a url, no data), by file, resource and path.
func selected(t *testing.T, dir string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	eachAttachment(t, dir, func(rel string, line []byte, a fhirjson.Attachment) {
		if mt, _, _ := mime.ParseMediaType(a.ContentType); inlineMediaTypes[mt] && !a.HasData && a.URL != "" {
			out[rel+" "+fhirjson.Key(line)+" "+a.Path] = true
		}
	})
	return out
}

func eachAttachment(t *testing.T, dir string, f func(rel string, line []byte, a fhirjson.Attachment)) {
	t.Helper()
	files, err := exportdir.Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		if file.ResourceType != "DocumentReference" && file.ResourceType != "DiagnosticReport" {
			continue
		}
		b, err := os.ReadFile(file.Path)
		if err != nil {
			t.Fatal(err)
		}
		for l := range bytes.Lines(b) {
			for _, a := range fhirjson.Attachments(l) {
				f(file.Rel, l, a)
			}
		}
	}
}

// checkInlined checks the attachments that were to be filled in against the data set: data is
// the Binary's content, size and hash agree with it, url is kept.
func checkInlined(t *testing.T, dir string, ds *synth.Dataset, want map[string]bool) {
	t.Helper()
	seen := 0
	eachAttachment(t, dir, func(rel string, l []byte, a fhirjson.Attachment) {
		name := rel + " " + fhirjson.Key(l) + " " + a.Path
		if !want[name] {
			return
		}
		seen++
		obj := gjson.ParseBytes(l[a.Start:a.End])
		data, err := base64.StdEncoding.DecodeString(obj.Get("data").Str)
		sum := sha1.Sum(data)
		if err != nil || !obj.Get("data").Exists() || obj.Get("size").Int() != int64(len(data)) ||
			obj.Get("hash").Str != base64.StdEncoding.EncodeToString(sum[:]) {
			t.Errorf("%s: not inlined, or size and hash disagree with data: %.200s", name, obj.Raw)
			return
		}
		_, id, _ := strings.Cut(a.URL, "Binary/")
		if !bytes.Equal(ds.Binaries[id].Data, data) {
			t.Errorf("%s: data is not Binary/%s", name, id)
		}
	})
	if seen != len(want) {
		t.Errorf("%d attachments to check found after inlining, want %d", seen, len(want))
	}
}

// folderDigest maps every file of a folder to its SHA-256, the log and the lock aside.
func folderDigest(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "log.ndjson" || rel == filepath.Join(exportdir.MetaDir, "lock") {
			return nil
		}
		b, err := os.ReadFile(p)
		sum := sha256.Sum256(b)
		out[filepath.ToSlash(rel)] = hex.EncodeToString(sum[:])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestInlineE2E is issue 5's "done when": bulk-kickoff | bulk-poll | bulk-fetch, then
// `ndjson-inline --in-place export/` against the test server with faults inlines every text
// attachment once, with the right content; the presigned-storage origin never sees the token; a
// rerun changes nothing and downloads nothing; a rerun of bulk-fetch leaves the inlined files alone.
func TestInlineE2E(t *testing.T) {
	needBinaries(t, "bulk-kickoff", "bulk-poll", "bulk-fetch", "ndjson-inline")
	ds := synth.Generate(synth.Options{Patients: 12, Seed: 5})
	b64, _ := fhirtest.ParseFault("b64-size") // sizes wrong on purpose: never trusted
	srv, err := fhirtest.NewServer(fhirtest.Options{Data: ds, FilesOrigin: true, FilesRejectAuth: true, Faults: []fhirtest.Fault{b64}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	work := t.TempDir()
	dir := filepath.Join(work, "export")
	env := []string{"BULK_BEARER_TOKEN=e2e-s3cret-token", "BULK_FHIR_URL="}

	status := mustRun(t, env, "", "bulk-kickoff", srv.URL(), "--type", "DocumentReference,DiagnosticReport,Patient").Stdout
	manifest := mustRun(t, env, status, "bulk-poll").Stdout
	if err := os.WriteFile(filepath.Join(work, "manifest.ndjson"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, env, "", "bulk-fetch", "--dir", dir, "--no-delete", filepath.Join(work, "manifest.ndjson"))
	toInline, already := noteAttachments(t, dir)
	want := selected(t, dir)
	if toInline < 50 {
		t.Fatalf("the export has %d attachments to inline, want a real test (50 or more)", toInline)
	}

	for _, spec := range []string{"500@binary%0.15", "429:0@binary%0.1", "reset@binary*3", "truncate@binary*2", "slow:20@binary%0.2"} {
		f, err := fhirtest.ParseFault(spec)
		if err != nil {
			t.Fatal(err)
		}
		srv.AddFault(f)
	}
	before := len(srv.Requests())
	r := mustRun(t, env, "", "ndjson-inline", "--in-place", "--log", filepath.Join(dir, "log.ndjson"), dir)
	counts := fmt.Sprintf("ndjson-inline: %d attachments inlined, %d already inlined, 0 skipped, 0 failed, in %s\n", toInline, already, dir)
	if !strings.HasSuffix(r.Stderr, counts) {
		t.Fatalf("ndjson-inline stderr ends:\n%s\nwant %q", r.Stderr, counts)
	}
	checkInlined(t, dir, ds, want)
	var files, main int
	for _, req := range srv.Requests()[before:] {
		switch {
		case req.Origin == "files":
			files++
			if req.Authorization != "" {
				t.Errorf("%s %s: the other origin got Authorization %q", req.Method, req.URL, req.Authorization)
			}
		case req.Route == fhirtest.RouteBinary:
			main++
			if req.Authorization != "Bearer e2e-s3cret-token" {
				t.Errorf("%s %s: Authorization %q, want the token", req.Method, req.URL, req.Authorization)
			}
		}
	}
	if files == 0 || main == 0 {
		t.Errorf("%d requests to the files origin, %d to the FHIR origin; want both", files, main)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "log.ndjson"))
	if n := len(regexp.MustCompile(`"eventId":"download_complete","eventDetail":\{[^}]*"itemType":"attachment"`).FindAll(log, -1)); n != toInline {
		t.Errorf("the log has %d download_complete events, want %d", n, toInline)
	}
	if ex, err := exportdir.ReadLog(filepath.Join(dir, "log.ndjson")); err != nil || !strings.HasPrefix(ex.ExportID, srv.URL()) {
		t.Errorf("the log no longer reads as the export: %+v, %v", ex, err)
	}
	st, _ := exportdir.ReadState(dir)
	for _, f := range st.Files {
		if f.Inlined != (f.ResourceType == "DocumentReference" || f.ResourceType == "DiagnosticReport") {
			t.Errorf("state.json: %s inlined = %v", f.Name, f.Inlined)
		}
	}

	// A rerun downloads nothing and changes nothing.
	inlined := folderDigest(t, dir)
	before = len(srv.Requests())
	r = mustRun(t, env, "", "ndjson-inline", "--in-place", dir)
	if want := fmt.Sprintf("ndjson-inline: 0 attachments inlined, %d already inlined, 0 skipped, 0 failed, in %s\n", toInline+already, dir); !strings.HasSuffix(r.Stderr, want) {
		t.Errorf("rerun stderr ends:\n%s\nwant %q", r.Stderr, want)
	}
	if n := len(srv.Requests()) - before; n != 0 {
		t.Errorf("the rerun made %d requests, want none", n)
	}
	if diff := cmp.Diff(inlined, folderDigest(t, dir)); diff != "" {
		t.Errorf("the rerun changed the folder (-before +after):\n%s", diff)
	}

	// bulk-fetch again over the same manifest trusts the rewritten files.
	mustRun(t, env, "", "bulk-fetch", "--dir", dir, "--no-delete", filepath.Join(work, "manifest.ndjson"))
	if diff := cmp.Diff(inlined, folderDigest(t, dir)); diff != "" {
		t.Errorf("bulk-fetch rerun changed the inlined folder (-before +after):\n%s", diff)
	}
}
