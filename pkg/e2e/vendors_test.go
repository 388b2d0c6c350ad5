package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// readmePipeline is README's first command and etl-load, as one shell line: kickoff | poll | fetch,
// then the load.
const readmePipeline = `bulk-kickoff "$GROUP" | bulk-poll | bulk-fetch --dir export >/dev/null && etl-load export --db vendor.duckdb --summary`

// complete fails the test unless dir is a finished export folder holding resources of typ, and
// returns their ids.
func complete(t *testing.T, dir, typ string) []string {
	t.Helper()
	log, err := os.ReadFile(filepath.Join(dir, "log.ndjson"))
	if err != nil || !strings.Contains(string(log), `"eventId":"export_complete"`) {
		t.Fatalf("%s: no export_complete in the log (%v)", dir, err)
	}
	f, err := os.Open(filepath.Join(dir, typ+".000.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		ids = append(ids, gjson.GetBytes(sc.Bytes(), "id").Str)
	}
	if len(ids) == 0 {
		t.Fatalf("%s: no %s", dir, typ)
	}
	return ids
}

// oneLine fails the test unless exactly one line of stderr matches every one of words, and
// returns it.
func oneLine(t *testing.T, stderr string, words ...string) string {
	t.Helper()
	var found []string
	for line := range strings.SplitSeq(stderr, "\n") {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(line, w)
		}
		if ok {
			found = append(found, line)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d lines hold %q, want one; stderr:\n%s", len(found), words, stderr)
	}
	return found[0]
}

// TestVendorPipelines runs README's readmePipeline, then the load, against each vendor profile: the
// folder is complete and loads.
func TestVendorPipelines(t *testing.T) {
	needBinaries(t, "bulk-kickoff", "bulk-poll", "bulk-fetch", "etl-load")
	for _, tc := range []struct {
		vendor string
		args   []string
	}{
		{"epic", nil},
		{"oracle", nil},
		{"smart", []string{"--rate-limit", "4", "--rate-limit-block", "1s", "--polls", "6"}},
		{"hapi", nil},
	} {
		t.Run(tc.vendor, func(t *testing.T) {
			args := append([]string{"--vendor", tc.vendor, "--patients", "3", "--polls", "1", "--retry-after", "0"}, tc.args...)
			srv := startServer(t, args...)
			work := t.TempDir()
			r := sh(t, work, []string{"GROUP=" + srv.URL + "/Group/all"}, readmePipeline)
			if r.Code != 0 {
				t.Fatalf("%s: exit %d\n%s", readmePipeline, r.Code, r.Stderr)
			}
			ids := complete(t, filepath.Join(work, "export"), "Patient")
			if tc.vendor == "epic" && len(ids[0]) <= 64 {
				t.Errorf("epic Patient id %q: %d characters, want Epic's long ids (> 64)", ids[0], len(ids[0]))
			}
			if !strings.Contains(r.Stdout+r.Stderr, "patient") {
				t.Errorf("etl-load --summary names no patient table:\n%s%s", r.Stdout, r.Stderr)
			}
			if tc.vendor == "smart" {
				// The reference server's 429s give epoch milliseconds: waited as the second it
				// means, never as decades.
				oneLine(t, r.Stderr, "429 Too Many Requests; retrying in")
			}
		})
	}
}

// TestEpicSmartPipeline: Epic under SMART auth (files need the token, tokens last a minute,
// Epic-Client-ID sent) exports and loads, long ids included.
func TestEpicSmartPipeline(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("needs openssl (.ci/run installs it)")
	}
	needBinaries(t, "bulk-kickoff", "bulk-poll", "bulk-fetch", "etl-load")
	keys := t.TempDir()
	if r := sh(t, keys, nil, "sh '"+filepath.Join(moduleRoot(), "scripts", "gen-keys.sh")+"' k >/dev/null"); r.Code != 0 {
		t.Fatalf("gen-keys.sh: %s", r.Stderr)
	}
	srv := startServer(t, "--vendor", "epic", "--patients", "3", "--polls", "1", "--retry-after", "0",
		"--auth", "smart", "--client-id", "epic-client", "--public-key", filepath.Join(keys, "k", "public.pem"))
	work := t.TempDir()
	env := []string{"GROUP=" + srv.URL + "/Group/all", "BULK_SMART_CLIENT_ID=epic-client",
		"BULK_SMART_KEY=" + filepath.Join(keys, "k", "private.pem")}
	if r := sh(t, work, env, readmePipeline); r.Code != 0 {
		t.Fatalf("%s: exit %d\n%s", readmePipeline, r.Code, r.Stderr)
	}
	complete(t, filepath.Join(work, "export"), "Patient")
	manifest, _ := os.ReadFile(filepath.Join(work, "export", "manifest.json"))
	if !gjson.GetBytes(manifest, "requiresAccessToken").Bool() {
		t.Errorf("epic under SMART: manifest %s, want requiresAccessToken: true", manifest)
	}
}

// TestVendorSliced runs scripts/export-sliced.sh against each vendor profile: a complete merged
// folder, or, where the server refuses, one clear line per refused step saying what it refused
// and what to do.
func TestVendorSliced(t *testing.T) {
	needBinaries(t, "bulk-kickoff", "bulk-poll", "bulk-fetch", "ndjson-merge", "etl-load")
	script := filepath.Join(moduleRoot(), "scripts", "export-sliced.sh")
	for _, tc := range []struct {
		name  string
		args  []string
		env   []string
		words []string // nil: the merged folder is complete; else one line of each failed slice holds them
	}{
		{"epic window", nil, nil, []string{"bulk-kickoff:", "requested this Group too recently", "DELETE the previous export", "not retrying"}},
		{"epic sequential", []string{"--request-window", "0"}, []string{"PARALLEL=0"}, nil},
		{"epic at once", []string{"--request-window", "0"}, nil, []string{"bulk-kickoff:", "in progress", "one export at a time", "not retrying"}},
		{"oracle", nil, nil, []string{"bulk-kickoff:", "400 Bad Request", "_typeFilter is not supported"}},
		{"smart", []string{"--rate-limit", "4", "--rate-limit-block", "1s"}, nil, nil},
		{"hapi", nil, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vendor, _, _ := strings.Cut(tc.name, " ")
			srv := startServer(t, append([]string{"--vendor", vendor, "--patients", "3", "--polls", "1", "--retry-after", "0"}, tc.args...)...)
			work := t.TempDir()
			env := append([]string{"CATEGORIES=laboratory vital-signs", "LOAD=0"}, tc.env...)
			r := sh(t, work, env, "sh '"+script+"' '"+srv.URL+"/Group/all' sliced")
			if tc.words == nil {
				if r.Code != 0 {
					t.Fatalf("export-sliced.sh: exit %d\n%s", r.Code, r.Stderr)
				}
				complete(t, filepath.Join(work, "sliced", "merged"), "Observation")
				return
			}
			if r.Code != 1 {
				t.Fatalf("export-sliced.sh: exit %d, want 1\n%s", r.Code, r.Stderr)
			}
			refused := 0
			for name := range strings.FieldsSeq("laboratory vital-signs missing") {
				errs, _ := os.ReadFile(filepath.Join(work, "sliced", "state", name+".err"))
				if strings.Contains(string(errs), tc.words[1]) {
					oneLine(t, string(errs), tc.words...)
					refused++
				}
			}
			if refused == 0 || !strings.Contains(r.Stderr, tc.words[1]) {
				t.Errorf("export-sliced.sh failed without the refusal:\n%s", r.Stderr)
			}
			if _, err := os.Stat(filepath.Join(work, "sliced", "merged")); err == nil {
				t.Error("a merged folder appeared although slices failed")
			}
		})
	}
}

// TestHAPIFailedJob: a job HAPI reports failed (500 and an OperationOutcome at the status URL)
// ends bulk-poll, after its retries, with one line giving the server's reason.
func TestHAPIFailedJob(t *testing.T) {
	needBinaries(t, "bulk-kickoff", "bulk-poll")
	srv := startServer(t, "--vendor", "hapi", "--patients", "2", "--polls", "0", "--retry-after", "0", "--fault", "fail-job")
	status := mustRun(t, nil, "", "bulk-kickoff", srv.URL+"/Patient").Stdout
	if !strings.Contains(status, "/$export-poll-status?_jobId=") {
		t.Fatalf("status URL %q, want HAPI's form", status)
	}
	r := run(t, nil, status, "bulk-poll", "--retries", "1")
	if r.Code != 1 || r.Stdout != "" {
		t.Fatalf("bulk-poll on a failed job: exit %d, stdout %q, want 1 and nothing", r.Code, r.Stdout)
	}
	oneLine(t, r.Stderr, "bulk-poll:", "500 Internal Server Error", "Bulk export job failed")
}
