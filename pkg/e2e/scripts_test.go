package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
)

// countRoute counts the requests of one route the server has seen.
func countRoute(srv *fhirtest.Server, route string) int {
	n := 0
	for _, r := range srv.Requests() {
		if r.Route == route {
			n++
		}
	}
	return n
}

// TestExportAndLoadRerunE2E: scripts/export-and-load.sh rerun after success says the export is
// complete and touches nothing, server included (issue 12.7: it polled the deleted export, got a
// 404 and blamed bulk-fetch); --new-export starts a new one into the same folder; a failing poll
// is blamed on bulk-poll, and the rerun resumes.
func TestExportAndLoadRerunE2E(t *testing.T) {
	needBinaries(t, "etl-load", "ndjson-inline")
	srv := fetchServer(t, fhirtest.Options{Patients: 3, Seed: 31})
	work := t.TempDir()
	script := filepath.Join(moduleRoot(), "scripts", "export-and-load.sh")
	cmd := "sh '" + script + "' '" + srv.URL() + "/Group/all' --export-to out --db db.duckdb --type Patient,Condition"
	if r := sh(t, work, nil, cmd); r.Code != 0 {
		t.Fatalf("first run: exit %d\n%s", r.Code, r.Stderr)
	}
	polls := countRoute(srv, fhirtest.RouteStatus)
	r := sh(t, work, nil, cmd)
	if r.Code != 0 || !strings.Contains(r.Stderr, "the export in out is complete and was loaded into db.duckdb") ||
		!strings.Contains(r.Stderr, "--new-export") {
		t.Errorf("rerun after success: exit %d, want 0 saying the export is complete and naming --new-export\n%s", r.Code, r.Stderr)
	}
	if n := countRoute(srv, fhirtest.RouteStatus); n != polls {
		t.Errorf("rerun after success sent %d requests to the status URL, want none", n-polls)
	}

	// --new-export: a second export, fetched over the first.
	if r := sh(t, work, nil, cmd+" --new-export"); r.Code != 0 {
		t.Fatalf("--new-export: exit %d\n%s", r.Code, r.Stderr)
	}
	if n := countRoute(srv, fhirtest.RouteKickoff); n != 2 {
		t.Errorf("%d kickoffs after --new-export, want 2", n)
	}

	// A failing status URL: bulk-poll is the step named, and the rerun resumes that export.
	addFaults(t, srv, "500@status")
	r = sh(t, work, []string{"BULK_RETRIES=0"}, cmd+" --new-export")
	if r.Code != 1 || !strings.Contains(r.Stderr, "export-and-load.sh: bulk-poll failed (exit 1)") ||
		strings.Contains(r.Stderr, "bulk-fetch failed") || !strings.Contains(r.Stderr, "to resume:") {
		t.Errorf("failing poll: exit %d, want 1 naming bulk-poll, not bulk-fetch, and how to resume\n%s", r.Code, r.Stderr)
	}
	r = sh(t, work, nil, cmd)
	if r.Code != 0 || countRoute(srv, fhirtest.RouteKickoff) != 3 {
		t.Errorf("resume after the failed poll: exit %d, %d kickoffs (want 0 and 3)\n%s", r.Code, countRoute(srv, fhirtest.RouteKickoff), r.Stderr)
	}
}

// TestExportScriptRerunE2E: scripts/bulk-export.sh rerun after success says the export is
// complete instead of starting a new one that bulk-fetch then refuses (issue 12.7), and
// --new-export replaces it.
func TestExportScriptRerunE2E(t *testing.T) {
	srv := fetchServer(t, fhirtest.Options{Patients: 3, Seed: 32})
	work := t.TempDir()
	script := filepath.Join(moduleRoot(), "scripts", "bulk-export.sh")
	cmd := "sh '" + script + "' '" + srv.URL() + "/Group/all' out --type Patient,Condition"
	if r := sh(t, work, nil, cmd); r.Code != 0 {
		t.Fatalf("first run: exit %d\n%s", r.Code, r.Stderr)
	}
	r := sh(t, work, nil, cmd)
	if r.Code != 0 || !strings.Contains(r.Stderr, "the export in out is complete; nothing to do") || !strings.Contains(r.Stderr, "--new-export") {
		t.Errorf("rerun after success: exit %d, want 0 saying the export is complete and naming --new-export\n%s", r.Code, r.Stderr)
	}
	if n := countRoute(srv, fhirtest.RouteKickoff); n != 1 {
		t.Errorf("%d kickoffs after the rerun, want 1", n)
	}
	r = sh(t, work, nil, "sh '"+script+"' '"+srv.URL()+"/Group/all' out --new-export --type Patient")
	if r.Code != 0 || !strings.Contains(r.Stderr, "export complete in out") {
		t.Fatalf("--new-export: exit %d\n%s", r.Code, r.Stderr)
	}
	if n := countRoute(srv, fhirtest.RouteKickoff); n != 2 {
		t.Errorf("%d kickoffs after --new-export, want 2", n)
	}
	if _, err := os.Stat(filepath.Join(work, "out", "Condition.000.ndjson")); err == nil {
		t.Errorf("the first export's Condition file is still in out after --new-export --type Patient")
	}
}

// TestScriptsFindTools: the scripts take the tools from PATH, else from bin/ of their checkout,
// and when neither has them they say how to build them (issue 12.7: "bulk-kickoff: not found",
// then advice to resume).
func TestScriptsFindTools(t *testing.T) {
	srv := fetchServer(t, fhirtest.Options{Patients: 2, Seed: 33})
	checkout := t.TempDir()
	os.Mkdir(filepath.Join(checkout, "scripts"), 0o755)
	for _, s := range []string{"bulk-export.sh", "export-and-load.sh", "Makefile"} {
		b, err := os.ReadFile(filepath.Join(moduleRoot(), "scripts", s))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(checkout, "scripts", s), b, 0o755)
	}
	// A PATH with the shell's utilities and none of the tools.
	utils := t.TempDir()
	for _, u := range []string{"sh", "make", "mktemp", "dirname", "basename", "head", "sed", "date", "mkdir", "rm", "mkfifo", "cat", "grep", "test"} {
		if p, err := exec.LookPath(u); err == nil {
			os.Symlink(p, filepath.Join(utils, u))
		}
	}
	run := func(script string, args ...string) result {
		name, args := filepath.Join(utils, "sh"), append([]string{filepath.Join(checkout, "scripts", script)}, args...)
		if script == "Makefile" {
			name, args = filepath.Join(utils, "make"), append([]string{"-s", "-f"}, args...)
		}
		c := exec.Command(name, args...)
		c.Dir = t.TempDir()
		c.Env = []string{"PATH=" + utils, "HOME=" + c.Dir}
		var out, errb bytes.Buffer
		c.Stdout, c.Stderr = &out, &errb
		err := c.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return result{Code: code, Stdout: out.String(), Stderr: errb.String()}
	}
	for _, s := range []string{"bulk-export.sh", "export-and-load.sh", "Makefile"} {
		var r result
		want := s + ": bulk-kickoff not found on PATH or in " + checkout + "/bin; build the tools with 'make build' in " + checkout
		switch s {
		case "bulk-export.sh":
			r = run(s, srv.URL(), "out")
		case "export-and-load.sh":
			r = run(s, srv.URL(), "--export-to", "out")
		default:
			if _, err := os.Stat(filepath.Join(utils, "make")); err != nil {
				continue
			}
			r = run(s, "FHIR_URL="+srv.URL(), "DIR=out")
			want = want[len(s+": "):]
			if r.Code == 2 { // make's own status for a failed recipe
				r.Code = 1
			}
		}
		if r.Code != 1 || !strings.Contains(r.Stderr, want) || strings.Contains(r.Stderr, "resume") {
			t.Errorf("%s without the tools: exit %d, stderr\n%s\nwant exit 1 and %q", s, r.Code, r.Stderr, want)
		}
	}
	// With the tools in the checkout's bin/, the export runs.
	if err := os.Symlink(binDir, filepath.Join(checkout, "bin")); err != nil {
		t.Fatal(err)
	}
	if r := run("bulk-export.sh", srv.URL()+"/Group/all", "out", "--type", "Patient"); r.Code != 0 {
		t.Errorf("bulk-export.sh with the tools in bin/: exit %d\n%s", r.Code, r.Stderr)
	}
	if _, err := os.Stat(filepath.Join(utils, "make")); err == nil {
		if r := run("Makefile", "FHIR_URL="+srv.URL()+"/Group/all", "DIR=out", "KICKOFF_FLAGS=--type Patient"); r.Code != 0 {
			t.Errorf("make -f scripts/Makefile with the tools in bin/: exit %d\n%s", r.Code, r.Stderr)
		}
	}
}

// TestScriptsInterruptE2E: Ctrl-C (SIGINT to the process group, as a terminal sends it) while
// bulk-fetch is downloading ends each script with exit 130, saying it was interrupted and how to
// resume (issue 12.7); the rerun resumes the same export.
func TestScriptsInterruptE2E(t *testing.T) {
	needBinaries(t, "etl-load", "ndjson-inline")
	for _, tt := range []struct {
		script string
		args   []string
		want   string
	}{
		{"bulk-export.sh", []string{"out", "--type", "Patient,Condition"}, "bulk-export.sh: interrupted"},
		{"export-and-load.sh", []string{"--export-to", "out", "--db", "db.duckdb", "--type", "Patient,Condition"}, "export-and-load.sh: interrupted; to resume: sh "},
	} {
		srv := fetchServer(t, fhirtest.Options{Patients: 3, Seed: 34})
		addFaults(t, srv, "stall:10@file") // the first file hangs until the interrupt
		work := t.TempDir()
		script := filepath.Join(moduleRoot(), "scripts", tt.script)
		args := append([]string{script, srv.URL() + "/Group/all"}, tt.args...)
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		c := exec.CommandContext(ctx, "sh", args...)
		c.Dir = work
		c.Env = append(os.Environ(), "PATH="+binDir+":"+os.Getenv("PATH"))
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		var errb bytes.Buffer
		c.Stderr = &errb
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait for the first file request, the one the fault stalls: the script is then inside
		// bulk-fetch, and stays there until the interrupt.
		for countRoute(srv, fhirtest.RouteFile) == 0 && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		syscall.Kill(-c.Process.Pid, syscall.SIGINT)
		err := c.Wait()
		cancel()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != 130 || !strings.Contains(errb.String(), tt.want) || strings.Contains(errb.String(), "failed") {
			t.Errorf("%s after Ctrl-C: exit %d, want 130 and %q, no step blamed\n%s", tt.script, code, tt.want, errb.String())
		}
		r := sh(t, work, nil, "sh "+strings.Join(args, " "))
		if r.Code != 0 || countRoute(srv, fhirtest.RouteKickoff) != 1 {
			t.Errorf("%s rerun after Ctrl-C: exit %d, %d kickoffs (want 0, 1)\n%s", tt.script, r.Code, countRoute(srv, fhirtest.RouteKickoff), r.Stderr)
		}
	}
}

// TestMakeDemoLeavesNoFiles: make -f scripts/Makefile demo writes only under demo-out/ (issue
// 12.17: it left demo-export* files in the folder it ran in, the repository root).
func TestMakeDemoLeavesNoFiles(t *testing.T) {
	needBinaries(t, "bulk-testserver")
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	work := t.TempDir()
	mk := filepath.Join(moduleRoot(), "scripts", "Makefile")
	r := sh(t, work, nil, "make -s -f '"+mk+"' demo BIN='"+binDir+"'")
	if r.Code != 0 {
		t.Fatalf("make demo: exit %d\n%s", r.Code, r.Stderr)
	}
	entries, _ := os.ReadDir(work)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != "demo-out" {
		t.Errorf("after make demo the folder holds %q, want only demo-out", names)
	}
	if _, err := os.Stat(filepath.Join(work, "demo-out", "make-export", "log.ndjson")); err != nil {
		t.Errorf("the demo export is not in demo-out/make-export: %v", err)
	}
}

// TestExportSlicedDBE2E: scripts/export-sliced.sh --db FILE loads into FILE, as
// export-and-load.sh --db does (issue 12.17: it had no way to name the database).
func TestExportSlicedDBE2E(t *testing.T) {
	needBinaries(t, "ndjson-merge", "etl-load")
	srv := fetchServer(t, fhirtest.Options{Patients: 3, Seed: 35})
	work := t.TempDir()
	script := filepath.Join(moduleRoot(), "scripts", "export-sliced.sh")
	r := sh(t, work, []string{"CATEGORIES=laboratory vital-signs"}, "sh '"+script+"' --db notes.duckdb '"+srv.URL()+"/Group/all' sliced")
	if r.Code != 0 {
		t.Fatalf("export-sliced.sh --db notes.duckdb: exit %d\n%s", r.Code, r.Stderr)
	}
	if _, err := os.Stat(filepath.Join(work, "notes.duckdb")); err != nil {
		t.Errorf("no database at --db notes.duckdb: %v", err)
	}
	if _, err := os.Stat(filepath.Join(work, "bulkpipe.duckdb")); err == nil {
		t.Errorf("the load went to the default bulkpipe.duckdb, not --db")
	}
}
