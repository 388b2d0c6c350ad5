package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
	"github.com/bulkpipe/bulkpipe/pkg/smartauth"
)

// TestFetchClean checks the folder of DESIGN.md §3 after a fault-free run: names per type in
// manifest order, state, manifest, log, stdout, and the export deleted on the server.
func TestFetchClean(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Patients: 10, Seed: 1, FileLines: 100})
	c := newClient(t, srv.URL(), fhirclient.Options{})
	manifest := export(t, srv, c, bulk.KickoffRequest{})
	dir := filepath.Join(t.TempDir(), "export")
	res, rec, err := fetchInto(t, dir, c, manifest, nil)
	if err != nil {
		t.Fatal(err)
	}
	page, err := ParsePage(bytes.TrimSpace(manifest))
	if err != nil {
		t.Fatal(err)
	}
	m := page.Manifest
	nfiles := len(m.Output) + len(m.Deleted) + len(m.Error)
	if res.Files != nfiles || res.Downloaded != nfiles || !res.Deleted {
		t.Errorf("Result = %+v, want %d files, all downloaded, export deleted", res, nfiles)
	}
	if len(rec.written) != nfiles {
		t.Errorf("Written called %d times, want %d", len(rec.written), nfiles)
	}
	// Ordinals per type, in manifest order; file contents as served.
	seen := map[string]int{}
	for _, it := range m.Output {
		name := exportdir.FileName(it.Type, seen[it.Type])
		seen[it.Type]++
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if n := int64(bytes.Count(b, []byte("\n"))); it.HasCount && n != it.Count {
			t.Errorf("%s has %d lines, manifest count %d", name, n, it.Count)
		}
		if !slices.Contains(rec.written, filepath.Join(dir, name)) {
			t.Errorf("stdout lacks %s", name)
		}
	}
	if seen["Observation"] < 2 {
		t.Errorf("want several Observation files to check numbering, got %d", seen["Observation"])
	}
	st, err := exportdir.ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Files) != nfiles || st.TransactionTime != m.TransactionTime || st.ExportID != page.Context.StatusURL {
		t.Errorf("state = %d files, time %q, id %q; want %d, %q, %q", len(st.Files), st.TransactionTime, st.ExportID,
			nfiles, m.TransactionTime, page.Context.StatusURL)
	}
	for _, f := range st.Files {
		sum, size, err := hashFile(filepath.Join(dir, f.Name))
		if err != nil || sum != f.SHA256 || size != f.Size {
			t.Errorf("state entry %s: sha %s size %d, file has %s %d (%v)", f.Name, f.SHA256, f.Size, sum, size, err)
		}
	}
	got, _ := os.ReadFile(filepath.Join(dir, "manifest.json"))
	want, _ := bulk.MergePages([][]byte{page.Raw})
	if !bytes.Equal(bytes.TrimSpace(got), want) {
		t.Errorf("manifest.json = %s\nwant %s", got, want)
	}
	if bytes.Contains(got, []byte("_bulkpipe")) {
		t.Errorf("manifest.json keeps the _bulkpipe member")
	}
	for _, leftover := range []string{".bulkpipe/parts"} {
		if _, err := os.Stat(filepath.Join(dir, leftover)); err == nil {
			t.Errorf("%s left behind", leftover)
		}
	}
	ex, err := exportdir.ReadLog(filepath.Join(dir, "log.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	if ex.ExportID != page.Context.StatusURL || !ex.HasTime || ex.TransactionTime.Format("2006-01-02T15:04:05.000Z07:00") != m.TransactionTime || ex.Group != "" {
		t.Errorf("ReadLog = %+v, want export %s at %s, no group", ex, page.Context.StatusURL, m.TransactionTime)
	}
	ids := map[string]int{}
	for _, e := range ex.Events {
		ids[e.EventID]++
	}
	if ids["download_request"] != nfiles || ids["download_complete"] != nfiles || ids["export_complete"] != 1 || ids["kickoff"] != 1 {
		t.Errorf("log events = %v, want %d download_request and download_complete, one kickoff and export_complete", ids, nfiles)
	}
	deletes := 0
	for _, r := range srv.Requests() {
		if r.Method == "DELETE" {
			deletes++
		}
	}
	if deletes != 1 {
		t.Errorf("%d DELETEs of the status URL, want 1", deletes)
	}
	if warnings := rec.warnings; len(warnings) > 0 {
		t.Errorf("warnings on a clean run: %q", warnings)
	}
	// The error file every fhirtest export has is a warning: reported, not fatal.
	if len(res.Issues) == 0 || res.Fatal() {
		t.Errorf("Issues = %+v, want the server's warning and nothing fatal", res.Issues)
	}
}

// TestFetchRerun: a second run over a finished folder downloads nothing and lists every file;
// --verify catches a changed file and fetches it again; an inlined file keeps its rewrite.
func TestFetchRerun(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Patients: 5, Seed: 2})
	c := newClient(t, srv.URL(), fhirclient.Options{})
	manifest := export(t, srv, c, bulk.KickoffRequest{})
	dir := t.TempDir()
	noDelete := func(o *Options) { o.NoDelete = true }
	if _, _, err := fetchInto(t, dir, c, manifest, noDelete); err != nil {
		t.Fatal(err)
	}
	want := snapshot(t, dir)
	n := len(srv.Requests())
	res, rec, err := fetchInto(t, dir, c, manifest, noDelete)
	if err != nil {
		t.Fatal(err)
	}
	if got := fileRequests(srv, n); len(got) != 0 || res.Downloaded != 0 {
		t.Errorf("rerun made %d file requests, downloaded %d; want none", len(got), res.Downloaded)
	}
	if len(rec.written) != res.Files {
		t.Errorf("rerun listed %d files, want all %d", len(rec.written), res.Files)
	}
	if diff := cmp.Diff(want, snapshot(t, dir)); diff != "" {
		t.Errorf("rerun changed the folder (-want +got):\n%s", diff)
	}

	// A damaged file: trusted without --verify (with a warning when its size changed),
	// downloaded again with it.
	patient := filepath.Join(dir, "Patient.000.ndjson")
	b, _ := os.ReadFile(patient)
	os.WriteFile(patient, bytes.Replace(b, []byte(`"Patient"`), []byte(`"Patienz"`), 1), 0o644)
	n = len(srv.Requests())
	if _, _, err := fetchInto(t, dir, c, manifest, noDelete); err != nil {
		t.Fatal(err)
	}
	if got := fileRequests(srv, n); len(got) != 0 {
		t.Errorf("run without --verify made %d file requests, want 0", len(got))
	}
	_, rec, err = fetchInto(t, dir, c, manifest, func(o *Options) { o.NoDelete, o.Verify = true, true })
	if err != nil {
		t.Fatal(err)
	}
	if got := fileRequests(srv, n); len(got) != 1 {
		t.Errorf("--verify made %d file requests, want 1 (the damaged file)", len(got))
	}
	if !rec.warned("does not match its SHA-256") {
		t.Errorf("--verify did not warn about the damaged file: %q", rec.warnings)
	}
	if diff := cmp.Diff(want, snapshot(t, dir)); diff != "" {
		t.Errorf("--verify did not restore the folder (-want +got):\n%s", diff)
	}

	// ndjson-inline rewrote a file and recorded it: the rewrite stays, even with --verify.
	st, _ := exportdir.ReadState(dir)
	i := slices.IndexFunc(st.Files, func(f exportdir.FileState) bool { return f.Name == "Patient.000.ndjson" })
	rewritten := append(bytes.Clone(b), []byte(`{"resourceType":"Patient","id":"inlined"}`+"\n")...)
	os.WriteFile(patient, rewritten, 0o644)
	sum, size, _ := hashFile(patient)
	st.Files[i].SHA256, st.Files[i].Size, st.Files[i].Inlined = sum, size, true
	exportdir.WriteState(dir, st)
	n = len(srv.Requests())
	if _, _, err := fetchInto(t, dir, c, manifest, func(o *Options) { o.NoDelete, o.Verify = true, true }); err != nil {
		t.Fatal(err)
	}
	if got := fileRequests(srv, n); len(got) != 0 {
		t.Errorf("run over an inlined file made %d file requests, want 0", len(got))
	}
	if got, _ := os.ReadFile(patient); !bytes.Equal(got, rewritten) {
		t.Errorf("the inlined file was replaced")
	}
}

// TestFetchFaults runs the same export under each transport fault the test server has
// (DESIGN.md §8), then under a seeded mix of them: the folder must be byte-identical to the
// fault-free run, logs aside.
func TestFetchFaults(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Patients: 8, Seed: 3, FileLines: 150})
	c := newClient(t, srv.URL(), fhirclient.Options{})
	manifest := export(t, srv, c, bulk.KickoffRequest{})
	base := t.TempDir()
	noDelete := func(o *Options) { o.NoDelete = true }
	if _, _, err := fetchInto(t, base, c, manifest, noDelete); err != nil {
		t.Fatal(err)
	}
	want := snapshot(t, base)
	tests := []struct {
		faults []string
		check  func(t *testing.T, rec *recorder, reqs []fhirtest.RequestRecord)
	}{
		{[]string{"500@file*3"}, nil},
		{[]string{"503:1@file*2"}, nil},
		{[]string{"429:1@file*3"}, func(t *testing.T, rec *recorder, _ []fhirtest.RequestRecord) {
			if len(rec.limits) == 0 || rec.limits[0] >= DefaultParallel {
				t.Errorf("parallelism after 429s: %v, want it lowered from %d", rec.limits, DefaultParallel)
			}
		}},
		{[]string{"429:date@file*2"}, nil},
		{[]string{"429:epoch-ms@file*2"}, nil},
		{[]string{"reset@file*3"}, checkResumed},
		{[]string{"truncate@file*3"}, checkResumed},
		{[]string{"stall:100@file"}, checkResumed}, // less than the smallest file
		{[]string{"slow:20@file*3"}, nil},
		// Last: after it the manifest's links are dead, and every later run refreshes them.
		{[]string{"500@status*2", "expire-links"}, func(t *testing.T, rec *recorder, _ []fhirtest.RequestRecord) {
			if !rec.warned("fetching the manifest again") {
				t.Errorf("no refresh of expired links: warnings %q", rec.warnings)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.faults, ","), func(t *testing.T) {
			for _, spec := range tt.faults {
				f, err := fhirtest.ParseFault(spec)
				if err != nil {
					t.Fatal(err)
				}
				srv.AddFault(f)
			}
			n := len(srv.Requests())
			dir := t.TempDir()
			_, rec, err := fetchInto(t, dir, c, manifest, func(o *Options) {
				o.NoDelete = true
				o.StallTimeout = 300 * time.Millisecond
			})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, snapshot(t, dir)); diff != "" {
				t.Errorf("folder differs from the fault-free run (-want +got):\n%s", diff)
			}
			if tt.check != nil {
				tt.check(t, rec, fileRequests(srv, n))
			}
		})
	}
	t.Run("mix", func(t *testing.T) {
		for _, spec := range []string{"500@file%0.05", "503@file%0.05", "429:0@file%0.05", "reset@file%0.05", "truncate@file%0.05", "slow:5@file%0.05"} {
			f, err := fhirtest.ParseFault(spec)
			if err != nil {
				t.Fatal(err)
			}
			srv.AddFault(f)
		}
		for i := range 2 {
			dir := t.TempDir()
			if _, _, err := fetchInto(t, dir, c, manifest, noDelete); err != nil {
				t.Fatalf("run %d: %v", i, err)
			}
			if diff := cmp.Diff(want, snapshot(t, dir)); diff != "" {
				t.Errorf("run %d: folder differs from the fault-free run (-want +got):\n%s", i, diff)
			}
		}
	})
}

// checkResumed asserts that some request continued a cut body with Range, If-Range and identity.
func checkResumed(t *testing.T, _ *recorder, reqs []fhirtest.RequestRecord) {
	t.Helper()
	for _, r := range reqs {
		if rg := r.Header.Get("Range"); strings.HasPrefix(rg, "bytes=") && rg != "bytes=0-" {
			if r.Header.Get("If-Range") == "" || r.Header.Get("Accept-Encoding") != "identity" {
				t.Errorf("resume request headers %v: want If-Range and Accept-Encoding: identity", r.Header)
			}
			return
		}
	}
	t.Errorf("no request resumed with Range")
}

// TestFetchDataFaults: servers' habits that change the files (a duplicated line, no final
// newline) are kept byte for byte and still verify.
func TestFetchDataFaults(t *testing.T) {
	var faults []fhirtest.Fault
	for _, s := range []string{"dup-lines:7", "no-final-newline", "no-lastupdated"} {
		f, _ := fhirtest.ParseFault(s)
		faults = append(faults, f)
	}
	srv := newServer(t, fhirtest.Options{Patients: 4, Seed: 4, Faults: faults})
	c := newClient(t, srv.URL(), fhirclient.Options{})
	dir := t.TempDir()
	if _, _, err := fetchInto(t, dir, c, export(t, srv, c, bulk.KickoffRequest{}), nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "Patient.000.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.HasSuffix(b, []byte("\n")) {
		t.Errorf("the last line gained a newline: files must hold the bytes as served")
	}
}

// TestFetchGzip: gzip on the wire is decoded (same bytes as without), --gzip keeps .ndjson.gz
// files whose content is those bytes, and a rerun trusts them.
func TestFetchGzip(t *testing.T) {
	plain := newServer(t, fhirtest.Options{Patients: 6, Seed: 5})
	zipped := newServer(t, fhirtest.Options{Patients: 6, Seed: 5, Gzip: true})
	data := func(srv *fhirtest.Server, gz bool) (string, map[string]string) {
		c := newClient(t, srv.URL(), fhirclient.Options{})
		dir := t.TempDir()
		n := len(srv.Requests())
		if _, _, err := fetchInto(t, dir, c, export(t, srv, c, bulk.KickoffRequest{}), func(o *Options) { o.Gzip = gz }); err != nil {
			t.Fatal(err)
		}
		for _, r := range fileRequests(srv, n) {
			if r.Header.Get("Accept-Encoding") != "gzip" {
				t.Errorf("fresh file request with Accept-Encoding %q, want gzip", r.Header.Get("Accept-Encoding"))
			}
		}
		files, err := exportdir.Discover(dir)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, f := range files {
			if f.Gzip != gz {
				t.Errorf("%s: gzip %v, want %v", f.Rel, f.Gzip, gz)
			}
			r, err := exportdir.OpenFile(f.Path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(r)
			r.Close()
			// Attachment URLs name the server: the one thing two servers' data differ in.
			sum := sha256.Sum256(bytes.ReplaceAll(b, []byte(srv.URL()), []byte("BASE")))
			out[strings.TrimSuffix(f.Rel, ".gz")] = hex.EncodeToString(sum[:])
		}
		return dir, out
	}
	_, want := data(plain, false)
	_, got := data(zipped, false)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("gzip on the wire changed the files (-plain +gzip):\n%s", diff)
	}
	dir, got := data(zipped, true)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("--gzip files decode to other bytes (-plain +gzip):\n%s", diff)
	}
	st, _ := exportdir.ReadState(dir)
	for _, f := range st.Files {
		sum, size, _ := hashFile(filepath.Join(dir, f.Name))
		if !strings.HasSuffix(f.Name, ".ndjson.gz") || sum != f.SHA256 || size != f.Size {
			t.Errorf("state entry %+v does not describe the .gz on disk", f)
		}
	}
	// A rerun with the same export trusts the .gz files.
	c := newClient(t, zipped.URL(), fhirclient.Options{})
	manifest := export(t, zipped, c, bulk.KickoffRequest{})
	dir = t.TempDir()
	if _, _, err := fetchInto(t, dir, c, manifest, func(o *Options) { o.Gzip, o.NoDelete = true, true }); err != nil {
		t.Fatal(err)
	}
	n := len(zipped.Requests())
	if _, _, err := fetchInto(t, dir, c, manifest, func(o *Options) { o.Gzip, o.NoDelete, o.Verify = true, true, true }); err != nil {
		t.Fatal(err)
	}
	if reqs := fileRequests(zipped, n); len(reqs) != 0 {
		t.Errorf("rerun over .gz files made %d file requests", len(reqs))
	}
}

// TestFetchGzipResume: a gzip body cut mid-stream resumes with identity bytes from the decoded
// offset (Last-Modified vouches for them), and the result equals a clean download.
func TestFetchGzipResume(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Patients: 6, Seed: 6, Gzip: true})
	c := newClient(t, srv.URL(), fhirclient.Options{})
	manifest := export(t, srv, c, bulk.KickoffRequest{})
	base := t.TempDir()
	if _, _, err := fetchInto(t, base, c, manifest, func(o *Options) { o.NoDelete = true }); err != nil {
		t.Fatal(err)
	}
	f, _ := fhirtest.ParseFault("reset:3000@file*4")
	srv.AddFault(f)
	n := len(srv.Requests())
	dir := t.TempDir()
	_, rec, err := fetchInto(t, dir, c, manifest, func(o *Options) { o.NoDelete = true })
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(snapshot(t, base), snapshot(t, dir)); diff != "" {
		t.Errorf("folder differs (-clean +resumed):\n%s", diff)
	}
	checkResumed(t, rec, fileRequests(srv, n))
}

// TestFetchTokenSafety: with requiresAccessToken, the token goes to the FHIR server's origin
// but never to a files origin (presigned storage, which rejects it); --token-origin opts that
// origin in; without requiresAccessToken no file request carries it (DESIGN.md §2).
func TestFetchTokenSafety(t *testing.T) {
	creds := smartauth.Bearer("s3cret-token")
	tests := []struct {
		name     string
		opts     fhirtest.Options
		trust    bool
		wantAuth map[string]bool // origin → file requests carry the token
		wantErr  string
	}{
		{"requires token, same origin", fhirtest.Options{RequiresToken: true}, false, map[string]bool{"main": true}, ""},
		{"requires token, files origin rejecting auth", fhirtest.Options{RequiresToken: true, FilesOrigin: true, FilesRejectAuth: true}, false, map[string]bool{"files": false}, ""},
		{"files origin opted in", fhirtest.Options{RequiresToken: true, FilesOrigin: true}, true, map[string]bool{"files": true}, ""},
		{"opted in, but it rejects auth", fhirtest.Options{RequiresToken: true, FilesOrigin: true, FilesRejectAuth: true}, true, nil, "400 Bad Request"},
		{"no token required", fhirtest.Options{}, false, map[string]bool{"main": false}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Patients, tt.opts.Seed = 3, 7
			srv := newServer(t, tt.opts)
			co := fhirclient.Options{Credentials: creds}
			if tt.trust {
				co.TrustedOrigins = []string{srv.FilesURL()}
			}
			c := newClient(t, srv.URL(), co)
			manifest := export(t, srv, c, bulk.KickoffRequest{})
			n := len(srv.Requests())
			_, _, err := fetchInto(t, t.TempDir(), c, manifest, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			reqs := fileRequests(srv, n)
			if len(reqs) == 0 {
				t.Fatal("no file requests")
			}
			for _, r := range reqs {
				want, ok := tt.wantAuth[r.Origin]
				if !ok {
					t.Errorf("file request to origin %q, want only %v", r.Origin, tt.wantAuth)
				}
				if got := r.Authorization != ""; got != want {
					t.Errorf("%s origin file request carried a token: %v, want %v", r.Origin, got, want)
				}
			}
		})
	}
}

// TestFetch401: a 401 on a file (the token revoked) re-authorizes once through fhirclient;
// still failing, the manifest is fetched again once; still failing, the run fails.
func TestFetch401(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Patients: 3, Seed: 8, RequiresToken: true})
	c := newClient(t, srv.URL(), fhirclient.Options{Credentials: smartauth.Bearer("tok-123456")})
	manifest := export(t, srv, c, bulk.KickoffRequest{})
	base := t.TempDir()
	if _, _, err := fetchInto(t, base, c, manifest, func(o *Options) { o.NoDelete = true }); err != nil {
		t.Fatal(err)
	}
	f, _ := fhirtest.ParseFault("401@file")
	srv.AddFault(f)
	dir := t.TempDir()
	_, rec, err := fetchInto(t, dir, c, manifest, func(o *Options) { o.NoDelete = true })
	if err != nil {
		t.Fatal(err)
	}
	if !rec.warned("401") {
		t.Errorf("no refresh after the 401: %q", rec.warnings)
	}
	if diff := cmp.Diff(snapshot(t, base), snapshot(t, dir)); diff != "" {
		t.Errorf("folder differs (-clean +401):\n%s", diff)
	}
	f, _ = fhirtest.ParseFault("401@file*100")
	srv.AddFault(f)
	_, _, err = fetchInto(t, t.TempDir(), c, manifest, func(o *Options) { o.NoDelete, o.Parallel = true, 1 })
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "fetched again") {
		t.Errorf("err = %v, want a 401 after fetching the manifest again", err)
	}
}

// TestFetchPartialManifest: pages are downloaded as they arrive: the first page's files are on
// disk before the second page is written to the input.
func TestFetchPartialManifest(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Patients: 6, Seed: 9, PageSize: 4, FileLines: 200})
	c := newClient(t, srv.URL(), fhirclient.Options{})
	manifest := export(t, srv, c, bulk.KickoffRequest{AllowPartialManifests: true})
	lines := bytes.SplitAfter(bytes.TrimSpace(manifest), []byte("\n"))
	if len(lines) < 3 {
		t.Fatalf("want at least 3 manifest pages, got %d", len(lines))
	}
	first, _ := ParsePage(bytes.TrimSpace(lines[0]))
	pr, pw := io.Pipe()
	written := make(chan string, 1000)
	dir := t.TempDir()
	done := make(chan error)
	rec := &recorder{}
	on := rec.callbacks()
	on.Written = func(p string) { written <- p }
	go func() {
		_, err := Run(t.Context(), Options{Dir: dir, Client: c, Poll: bulk.PollOptions{Sleep: noSleep}, On: on},
			NewPageReader(pr, "pipe", 0))
		done <- err
	}()
	total := 0
	for i, l := range lines {
		if _, err := pw.Write(l); err != nil {
			t.Fatal(err)
		}
		p, _ := ParsePage(bytes.TrimSpace(l))
		n := len(p.Manifest.Output) + len(p.Manifest.Deleted) + len(p.Manifest.Error)
		if i < len(lines)-1 {
			for range n {
				<-written // this page's files are done while the next page is not yet written
			}
		}
		total += n
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st, _ := exportdir.ReadState(dir)
	if len(st.Files) != total || len(first.Manifest.Output) != 4 {
		t.Errorf("state has %d files, want %d (first page %d output items)", len(st.Files), total, len(first.Manifest.Output))
	}
	got, _ := os.ReadFile(filepath.Join(dir, "manifest.json"))
	var raws [][]byte
	for _, l := range lines {
		p, _ := ParsePage(bytes.TrimSpace(l))
		raws = append(raws, p.Raw)
	}
	want, _ := bulk.MergePages(raws)
	if !bytes.Equal(bytes.TrimSpace(got), want) {
		t.Errorf("manifest.json is not the merged pages")
	}
}

// TestFetchIncomplete: an input that ends on a page linking to a next one keeps the files but
// fails, and does not delete the export.
func TestFetchIncomplete(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Patients: 6, Seed: 9, PageSize: 4})
	c := newClient(t, srv.URL(), fhirclient.Options{})
	manifest := export(t, srv, c, bulk.KickoffRequest{AllowPartialManifests: true})
	firstLine, _, _ := bytes.Cut(manifest, []byte("\n"))
	_, _, err := fetchInto(t, t.TempDir(), c, append(firstLine, '\n'), nil)
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("err = %v, want ErrIncomplete", err)
	}
	for _, r := range srv.Requests() {
		if r.Method == "DELETE" {
			t.Errorf("an incomplete export was deleted")
		}
	}
}

// TestFetchExpires: a manifest past its Expires is fetched again before any file request.
func TestFetchExpires(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Patients: 3, Seed: 10})
	c := newClient(t, srv.URL(), fhirclient.Options{})
	manifest := export(t, srv, c, bulk.KickoffRequest{})
	page, _ := ParsePage(bytes.TrimSpace(manifest))
	ctx := page.Context
	ctx.Expires = "Mon, 01 Jan 2001 00:00:00 GMT"
	line, _ := bulk.WithContext(page.Raw, ctx)
	n := len(srv.Requests())
	_, rec, err := fetchInto(t, t.TempDir(), c, append(line, '\n'), nil)
	if err != nil {
		t.Fatal(err)
	}
	reqs := srv.Requests()[n:]
	if len(reqs) == 0 || reqs[0].Route != fhirtest.RouteStatus || reqs[0].Method != "GET" {
		t.Errorf("first request %+v, want a GET of the status URL", reqs[0])
	}
	if !rec.warned("expired at") {
		t.Errorf("warnings %q, want one about expired links", rec.warnings)
	}
}

// TestFetchOtherExport: a second export into the same folder is refused, then replaced with
// NewExport; a second run on a locked folder names the holder.
func TestFetchOtherExport(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Patients: 3, Seed: 11})
	c := newClient(t, srv.URL(), fhirclient.Options{})
	dir := t.TempDir()
	if _, _, err := fetchInto(t, dir, c, export(t, srv, c, bulk.KickoffRequest{}), nil); err != nil {
		t.Fatal(err)
	}
	second := export(t, srv, c, bulk.KickoffRequest{Types: []string{"Patient"}})
	if _, _, err := fetchInto(t, dir, c, second, nil); !errors.Is(err, ErrOtherExport) || !strings.Contains(err.Error(), "--new-export") {
		t.Fatalf("err = %v, want ErrOtherExport naming --new-export", err)
	}
	if _, _, err := fetchInto(t, dir, c, second, func(o *Options) { o.NewExport = true }); err != nil {
		t.Fatal(err)
	}
	files, _ := exportdir.Discover(dir)
	var rels []string
	for _, f := range files {
		rels = append(rels, f.Rel)
	}
	if want := []string{"Patient.000.ndjson", "error/OperationOutcome.000.ndjson"}; !slices.Equal(rels, want) {
		t.Errorf("after --new-export the folder holds %q, want %q", rels, want)
	}
	ex, err := exportdir.ReadLog(filepath.Join(dir, "log.ndjson"))
	if err != nil || ex.RequestParameters["_type"] != "Patient" {
		t.Errorf("ReadLog after --new-export = %+v, %v; want the second export", ex, err)
	}

	unlock, err := exportdir.Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	_, _, err = fetchInto(t, dir, c, second, nil)
	if !errors.Is(err, exportdir.ErrLocked) || !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) {
		t.Errorf("err = %v, want ErrLocked naming PID %d", err, os.Getpid())
	}
}

// TestFetchLog: the Group and time a reader finds, for a Group export whose v4 manifest has no
// request (the Group then comes from the context's exportUrl), and events copied from --log.
func TestFetchLog(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Patients: 4, Seed: 12, Profile: fhirtest.ProfileV4})
	c := newClient(t, srv.URL(), fhirclient.Options{})
	manifest := export(t, srv, c, bulk.KickoffRequest{URL: srv.URL() + "/Group/cohort-a", Types: []string{"Patient", "Condition"}})
	page, _ := ParsePage(bytes.TrimSpace(manifest))
	if page.Manifest.Request != "" {
		t.Fatalf("v4 manifest has request %q", page.Manifest.Request)
	}
	dir := t.TempDir()
	if _, _, err := fetchInto(t, dir, c, manifest, func(o *Options) { o.NoDelete = true }); err != nil {
		t.Fatal(err)
	}
	ex, err := exportdir.ReadLog(filepath.Join(dir, "log.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	tt, _ := exportdir.ParseInstant(page.Manifest.TransactionTime)
	if ex.Group != "cohort-a" || !ex.TransactionTime.Equal(tt) || ex.RequestParameters["_type"] != "Patient,Condition" {
		t.Errorf("ReadLog = group %q time %v params %v; want cohort-a, %v, _type Patient,Condition", ex.Group, ex.TransactionTime, ex.RequestParameters, tt)
	}

	// With --log: the export's own events are copied in, once, and nothing is synthesized.
	logFile := filepath.Join(t.TempDir(), "log.ndjson")
	lw, _ := exportdir.OpenLog(logFile)
	for _, ev := range []struct{ id, detail string }{
		{"kickoff", `{"exportUrl":"` + srv.URL() + `/Group/cohort-b/$export","requestParameters":{}}`},
		{"status_complete", `{"transactionTime":"` + page.Manifest.TransactionTime + `"}`},
	} {
		e, _ := exportdir.NewEvent(page.Context.StatusURL, ev.id, []byte(ev.detail), mustTime(t, "2024-01-01T00:00:00Z"))
		e.EventDetail = []byte(ev.detail)
		lw.Write(e, false)
	}
	other, _ := exportdir.NewEvent("http://elsewhere/status/9", "kickoff", nil, mustTime(t, "2024-01-01T00:00:00Z"))
	lw.Write(other, false)
	lw.Close()
	dir = t.TempDir()
	for range 2 {
		if _, _, err := fetchInto(t, dir, c, manifest, func(o *Options) { o.LogFrom, o.NoDelete, o.NewExport = logFile, true, true }); err != nil {
			t.Fatal(err)
		}
	}
	events, _ := exportdir.LogEvents(filepath.Join(dir, "log.ndjson"))
	count := map[string]int{}
	for _, e := range events {
		if e.ExportID != page.Context.StatusURL {
			t.Errorf("copied an event of another export: %+v", e)
		}
		count[e.EventID]++
	}
	if count["kickoff"] != 1 || count["status_complete"] != 1 || count["export_complete"] != 2 {
		t.Errorf("events %v: want the copied kickoff and status_complete once, and an export_complete per run", count)
	}
	if ex, _ := exportdir.ReadLog(filepath.Join(dir, "log.ndjson")); ex == nil || ex.Group != "cohort-b" {
		t.Errorf("ReadLog = %+v, want the copied kickoff's Group cohort-b", ex)
	}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := exportdir.ParseInstant(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestFetchPostVerify: the --inline seam rewrites verified files on their way to their name,
// and state.json records the rewrite.
func TestFetchPostVerify(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Patients: 3, Seed: 13})
	c := newClient(t, srv.URL(), fhirclient.Options{})
	dir := t.TempDir()
	_, _, err := fetchInto(t, dir, c, export(t, srv, c, bulk.KickoffRequest{}), func(o *Options) {
		o.Gzip = true
		o.PostVerify = func(_ context.Context, f FileInfo, r io.Reader, w io.Writer) (bool, error) {
			b, _ := io.ReadAll(r)
			_, err := w.Write(bytes.ToUpper(b))
			return f.ResourceType == "Patient", err
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := exportdir.ReadState(dir)
	for _, f := range st.Files {
		if f.Inlined != (f.ResourceType == "Patient") {
			t.Errorf("%s: inlined %v", f.Name, f.Inlined)
		}
		r, err := exportdir.OpenFile(filepath.Join(dir, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r)
		r.Close()
		if !bytes.Equal(b, bytes.ToUpper(b)) {
			t.Errorf("%s was not rewritten", f.Name)
		}
	}
	if parts, _ := filepath.Glob(filepath.Join(dir, "*.part")); len(parts) > 0 {
		t.Errorf(".part files left: %q", parts)
	}
}
