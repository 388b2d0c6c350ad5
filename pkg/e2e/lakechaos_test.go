package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bulkpipe/bulkpipe/pkg/failpoint"
	"github.com/bulkpipe/bulkpipe/pkg/lake"
)

// lakeChaosCase is a case of the chaos matrix whose folders the lake must read as the tables.
type lakeChaosCase struct {
	name string // group/name in chaosCases
	// lakeCrash kills etl-load --lake at this failpoint while it appends main/ (the second
	// load), before the run again; "" for none.
	lakeCrash string
}

// lakeChaosCases are a few fault kinds whose folders come out of the pipeline shaped by them: a
// 429 with an epoch Retry-After, expired links (a manifest fetched again), repeated lines in
// every file; bulk-fetch and etl-load killed at a failpoint and run again; and etl-load --lake
// itself killed before and after its commit. Each case takes about as long as a chaos case.
var lakeChaosCases = []lakeChaosCase{
	{name: "fault/429-epoch-ms-file"},
	{name: "fault/expire-links"},
	{name: "fault/dup-lines", lakeCrash: lake.FailAfterCommit},
	{name: "crash/fetch.after-rename:3", lakeCrash: lake.FailBeforeCommit},
}

// TestLakeReadsChaosFolders: the folders the chaos pipeline leaves under faults, kills and
// reruns, and a sliced export of Encounters and laboratory Observations made under the same
// faults, loaded in sequence both into a database and into a lake, read the same through the
// lake's DuckDB views as the tables, table by table (lakeSnapshot), after the sliced export
// alone (its encounters incomplete) and after every folder. A kill of etl-load --lake leaves the
// views reading what the tables held before that load (killed before its commit) or after it
// (killed after), and the run again changes nothing more.
func TestLakeReadsChaosFolders(t *testing.T) {
	needBinaries(t, "bulk-testserver", "bulk-kickoff", "bulk-poll", "bulk-fetch", "ndjson-inline", "ndjson-merge", "etl-load")
	all := map[string]*chaosCase{}
	for _, c := range chaosCases(true, nil) {
		all[c.String()] = c
	}
	for _, lc := range lakeChaosCases {
		c := all[lc.name]
		if c == nil {
			t.Fatalf("%s is not a case of the chaos matrix", lc.name)
		}
		t.Run(lc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			p := &pipeline{t: t, c: c}
			defer func() {
				t.Logf("%s in %v: %s", lc.name, time.Since(start).Round(100*time.Millisecond), strings.Join(p.notes, "; "))
			}()
			p.start()
			p.run()
			// Cohort B's Encounters with their laboratory Observations only: encounters whose
			// other linked tables are not exported yet.
			p.exportGroup("sliced", "cohort-b", "--type", "Encounter,Observation",
				"--type-filter", "Observation?category=laboratory")
			p.checkEvidence()
			p.shapeEvidence()
			p.loadBothWays(lc.lakeCrash)
		})
	}
}

// loadBothWays loads the sliced export, main/ and merged/ (the Observation slices merged) into a
// database and into a lake, and compares the lake's views with the tables after the sliced
// export and at the end. With crash, etl-load --lake appending main/ is killed there first.
func (p *pipeline) loadBothWays(crash string) {
	t := p.t
	db, lk := p.path("tables.duckdb"), p.path("lake")
	for i, folder := range []string{"sliced", "main", "merged"} {
		dbArgs := []string{"-q", "--db", db, p.path(folder)}
		lakeArgs := []string{"-q", "--lake", lk, p.path(folder)}
		if folder == "main" && crash == lake.FailBeforeCommit {
			p.killLake(crash, lakeArgs)
			p.lakeMatches(db, lk, "killed before its commit of main/: the load must stay unread")
		}
		p.step("load-db:"+folder, "etl-load", toolEnv(), dbArgs...)
		if folder == "main" && crash == lake.FailAfterCommit {
			p.killLake(crash, lakeArgs)
			p.lakeMatches(db, lk, "killed after its commit of main/: the load must be read")
		}
		p.step("load-lake:"+folder, "etl-load", toolEnv(), lakeArgs...)
		if i == 0 {
			snap := p.lakeMatches(db, lk, "after the sliced export")
			if len(snap["incomplete_encounter"]) == 0 {
				t.Errorf("after the sliced export alone no encounter is incomplete: the comparison proves nothing of incompleteness")
			}
		}
	}
	snap := p.lakeMatches(db, lk, "after every folder")
	if len(snap["complete_encounter"]) == 0 || len(snap["table observation"]) < chaosFileLines {
		t.Errorf("at the end: %d complete encounters, %d observations; want the whole Group",
			len(snap["complete_encounter"]), len(snap["table observation"]))
	}
	if left, _ := os.ReadDir(filepath.Join(lk, ".staging")); len(left) > 0 {
		t.Errorf("the lake's staging folder holds %d entries after the last load, want none", len(left))
	}
	p.note("%d relations compared, %d resource rows", len(snap), resourceRows(snap))
}

// killLake runs etl-load --lake with args until the failpoint kills it.
func (p *pipeline) killLake(point string, args []string) {
	t := p.t
	t.Helper()
	o := runTool(t, toolEnv(failpoint.Env+"="+point), "etl-load", args...)
	p.record("etl-load", o)
	if o.Signal != syscall.SIGKILL {
		t.Fatalf("etl-load %s with %s=%s: exit %d, want a kill at the failpoint\nstderr:\n%s",
			strings.Join(args, " "), failpoint.Env, point, o.Code, o.Stderr)
	}
	p.note("etl-load --lake killed at %s and run again", point)
}

// lakeMatches compares the lake's DuckDB views with the database's tables, and returns the
// tables' snapshot.
func (p *pipeline) lakeMatches(db, lk, when string) map[string][]string {
	t := p.t
	t.Helper()
	ddl := p.step("ddl", "etl-load", toolEnv(), "--lake", lk, "--print-ddl", "duckdb").Stdout
	want := lakeSnapshot(t, db, "")
	got := lakeSnapshot(t, ":memory:", ddl)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s: the lake's views differ from the tables (-tables +lake):\n%s", when, diff)
	}
	return want
}

// resourceRows counts the rows of a snapshot's resource tables.
func resourceRows(snap map[string][]string) int {
	n := 0
	for k, rows := range snap {
		if strings.HasPrefix(k, "table ") && !slices.Contains([]string{"table deleted", "table completion", "table completion_encounters"}, k) {
			n += len(rows)
		}
	}
	return n
}
