package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
	"github.com/bulkpipe/bulkpipe/pkg/lake/s3test"
)

// TestLakeOnS3: etl-load --lake s3://… against a real S3-compatible server (Versity's gateway
// over a folder), with credentials from the environment only. A load killed with kill -9 halfway
// through its uploads leaves files that no view reads; the rerun appends the folder again; and
// the bucket, read the way an engine reads it, holds exactly the rows of the database the same
// folders were loaded into.
func TestLakeOnS3(t *testing.T) {
	needBinaries(t, "bulk-kickoff", "bulk-poll", "bulk-fetch", "etl-load")
	gw := s3test.Start(t)
	env := gw.Env(t)
	bucket := gw.Bucket(t, "site-data")
	url := "s3://" + bucket + "/cumulus/lake"

	srv := biServer(t, fhirtest.Options{Patients: 5, Seed: 43})
	work := t.TempDir()
	fetch := func(name string, args ...string) string {
		dir := filepath.Join(work, name)
		mustRun(t, nil, biManifest(t, srv.URL()+"/Group/all", nil, args...), "bulk-fetch", "-q", "--dir", dir)
		return dir
	}
	full := fetch("full")
	since := fetch("since", "--since", "2023-06-01")

	db := filepath.Join(work, "tables.duckdb")
	scratch := t.TempDir()
	lakeRun := func(extra []string, args ...string) result {
		return run(t, append(env, extra...), "", "etl-load", append([]string{"-q", "--lake", url, "--temp-dir", scratch}, args...)...)
	}
	for _, dir := range []string{full, since} {
		mustRun(t, nil, "", "etl-load", "-q", "--db", db, dir)
	}
	if r := lakeRun(nil, full); r.Code != 0 {
		t.Fatalf("etl-load --lake %s: exit %d: %s", url, r.Code, r.Stderr)
	}
	// Killed after its second file reached the bucket: uploaded files, no commit.
	if r := lakeRun([]string{"BULKPIPE_CRASH=lake.after-upload:2"}, since); r.Code != -1 { // killed by a signal
		t.Fatalf("the crashed load: exit %d, want killed: %s", r.Code, r.Stderr)
	}
	keys := gw.Keys(t, bucket, "cumulus/lake/")
	if got := countPrefix(keys, "cumulus/lake/etl__commits/"); got != 1 {
		t.Fatalf("%d commit records after the crash, want the first load's only: %q", got, keys)
	}
	if r := lakeRun(nil, since); r.Code != 0 {
		t.Fatalf("the rerun: exit %d: %s", r.Code, r.Stderr)
	}
	if got := countPrefix(gw.Keys(t, bucket, "cumulus/lake/"), "cumulus/lake/etl__commits/"); got != 2 {
		t.Errorf("%d commit records after the rerun, want 2", got)
	}

	// An engine's view of the bucket: a copy of it, read through the views printed for a folder.
	mirror := filepath.Join(work, "mirror")
	gw.Mirror(t, bucket, "cumulus/lake/", mirror)
	ddl := mustRun(t, nil, "", "etl-load", "--lake", mirror, "--print-ddl", "duckdb").Stdout
	want := lakeSnapshot(t, db, "")
	if len(want["table deleted"]) == 0 {
		t.Fatalf("the sequence has no deletes to test with")
	}
	if diff := cmp.Diff(want, lakeSnapshot(t, ":memory:", ddl)); diff != "" {
		t.Errorf("the S3 lake's views differ from the tables (-tables +lake):\n%s", diff)
	}

	// Compacted in the bucket: one load's files per table, the same rows.
	if r := run(t, env, "", "etl-load", "--lake", url, "--temp-dir", scratch, "--compact"); r.Code != 0 || !strings.Contains(r.Stderr, "compacted 2 loads into load 3") {
		t.Fatalf("--compact: exit %d: %s", r.Code, r.Stderr)
	}
	compacted := filepath.Join(work, "compacted")
	gw.Mirror(t, bucket, "cumulus/lake/", compacted)
	ddl = mustRun(t, nil, "", "etl-load", "--lake", compacted, "--print-ddl", "duckdb").Stdout
	if diff := cmp.Diff(want, lakeSnapshot(t, ":memory:", ddl)); diff != "" {
		t.Errorf("the compacted S3 lake's views differ from the tables (-tables +lake):\n%s", diff)
	}
	loads := map[string]bool{}
	for _, k := range gw.Keys(t, bucket, "cumulus/lake/") {
		if _, part, ok := strings.Cut(k, "/load="); ok {
			loads[strings.Split(part, "/")[0]] = true
		}
	}
	if len(loads) != 2 {
		t.Errorf("files of %d loads after compaction: want the compaction's and the killed load's (a day's grace)", len(loads))
	}

	// The DDL printed for the bucket itself names its objects, and Athena's defaults to it.
	r := lakeRun(nil, "--print-ddl", "duckdb")
	if r.Code != 0 || !strings.Contains(r.Stdout, "read_parquet('"+url+"/patient/load=*/*.parquet'") {
		t.Errorf("--print-ddl duckdb of %s: exit %d, no read_parquet of its objects:\n%s%s", url, r.Code, r.Stdout, r.Stderr)
	}
	r = lakeRun(nil, "--print-ddl", "athena")
	if r.Code != 0 || !strings.Contains(r.Stdout, "LOCATION '"+url+"/patient/'") {
		t.Errorf("--print-ddl athena of %s: exit %d, no LOCATION at the lake:\n%s%s", url, r.Code, r.Stdout, r.Stderr)
	}
}

// TestLakeOnS3Refusals: what users get wrong about a bucket gets one line naming the URL and
// exit 1, before any folder is read.
func TestLakeOnS3Refusals(t *testing.T) {
	needBinaries(t, "etl-load")
	gw := s3test.Start(t)
	env := gw.Env(t)
	gw.Bucket(t, "real")
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		env  []string
		url  string
		want string
	}{
		{"no such bucket", env, "s3://missing/lake", `--lake s3://missing/lake: no such bucket "missing" (HTTP 404)`},
		{"wrong secret", append(env, "AWS_SECRET_ACCESS_KEY=wrong"), "s3://real/lake", `--lake s3://real/lake: access to bucket "real" denied (HTTP 403)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, append(tc.env, "BULK_RETRIES=0"), "", "etl-load", "--lake", tc.url, dir)
			lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
			if r.Code != 1 || len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Errorf("exit %d, stderr %q: want exit 1 and one line holding %q", r.Code, r.Stderr, tc.want)
			}
		})
	}
}

func countPrefix(keys []string, prefix string) int {
	n := 0
	for _, k := range keys {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}
