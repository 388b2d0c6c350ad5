package e2e

import (
	"database/sql"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
)

// liveData is the --data folder of a test server that a test changes between exports, as a
// live EHR changes: resources added, updated (a later meta.lastUpdated) and deleted (their line
// gone, and a tombstone in deleted.ndjson).
type liveData struct {
	t     *testing.T
	dir   string
	res   map[string]map[string]string // type → id → line
	group []string                     // Group "cohort"'s members
	tombs []string
}

func newLiveData(t *testing.T) *liveData {
	return &liveData{t: t, dir: t.TempDir(), res: map[string]map[string]string{"Patient": {}, "Condition": {}, "Observation": {}}}
}

// put adds or updates a resource, changed at when.
func (d *liveData) put(typ, id, patient, note string, when time.Time) {
	subj := ""
	if patient != "" {
		subj = `,"subject":{"reference":"Patient/` + patient + `"}`
	}
	d.res[typ][id] = fmt.Sprintf(`{"resourceType":%q,"id":%q,"meta":{"lastUpdated":%q}%s,"note":[{"text":%q}]}`,
		typ, id, when.UTC().Format(time.RFC3339Nano), subj, note)
}

// del deletes a resource at when.
func (d *liveData) del(typ, id string, when time.Time) {
	delete(d.res[typ], id)
	d.tombs = append(d.tombs, fmt.Sprintf(`{"type":%q,"id":%q,"deleted":%q}`, typ, id, when.UTC().Format(time.RFC3339Nano)))
}

// patient adds a patient with a condition and two observations, and makes it a Group member.
func (d *liveData) patient(id string, when time.Time) {
	d.put("Patient", id, "", "born", when)
	d.put("Condition", id+"-c", id, "first", when)
	d.put("Observation", id+"-o1", id, "first", when)
	d.put("Observation", id+"-o2", id, "first", when)
	d.group = append(d.group, id)
}

// write writes the folder as a server would hold it at this moment.
func (d *liveData) write() {
	d.t.Helper()
	for typ, byID := range d.res {
		var lines []string
		for _, id := range slices.Sorted(maps.Keys(byID)) {
			lines = append(lines, byID[id])
		}
		d.file(typ+".ndjson", lines)
	}
	var members []string
	for _, id := range d.group {
		members = append(members, `{"entity":{"reference":"Patient/`+id+`"}}`)
	}
	d.file("Group.ndjson", []string{`{"resourceType":"Group","id":"cohort","type":"person","actual":true,"member":[` + strings.Join(members, ",") + `]}`})
	d.file(fhirtest.TombstoneFile, d.tombs)
}

func (d *liveData) file(name string, lines []string) {
	d.t.Helper()
	content := strings.Join(lines, "\n")
	if content != "" {
		content += "\n"
	}
	if err := os.WriteFile(filepath.Join(d.dir, name), []byte(content), 0o644); err != nil {
		d.t.Fatal(err)
	}
}

// dbTables reads each resource table of an etl-load database: id → the resource as stored.
func dbTables(t *testing.T, db string, tables ...string) map[string]map[string]string {
	t.Helper()
	conn, err := sql.Open("duckdb", db+"?access_mode=read_only")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	out := map[string]map[string]string{}
	for _, table := range tables {
		out[table] = map[string]string{}
		rows, err := conn.Query(`SELECT id, resource::VARCHAR FROM "` + table + `" ORDER BY id`)
		if err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		for rows.Next() {
			var id, res string
			if err := rows.Scan(&id, &res); err != nil {
				t.Fatal(err)
			}
			if _, dup := out[table][id]; dup {
				t.Errorf("%s: table %s holds id %s twice", db, table, id)
			}
			out[table][id] = res
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestNightlyE2E: scripts/nightly.sh run three times against a live server whose data change
// between runs (new, updated and deleted resources, a new Group member) — a full export, then
// two incremental ones (--since auto from the database) — ends with the same tables, resource
// JSON byte for byte, as one full export of the final data loaded into a new database.
func TestNightlyE2E(t *testing.T) {
	needBinaries(t, "etl-load")
	data := newLiveData(t)
	t0 := time.Now().Add(-time.Hour)
	for i := range 6 {
		data.patient(fmt.Sprintf("p%d", i), t0)
	}
	data.write()
	srv := fetchServer(t, fhirtest.Options{DataDir: data.dir})
	work := t.TempDir()
	script := filepath.Join(moduleRoot(), "scripts", "nightly.sh")
	types := "Patient,Condition,Observation"
	nightly := func(db, dir string) result {
		t.Helper()
		r := sh(t, work, nil, "sh '"+script+"' '"+srv.URL()+"/Group/cohort' "+db+" "+dir+" --type "+types)
		if r.Code != 0 {
			t.Fatalf("nightly.sh %s: exit %d\n%s", db, r.Code, r.Stderr)
		}
		return r
	}
	if r := nightly("site.duckdb", "exports"); !strings.Contains(r.Stderr, "nightly.sh: full export (no database site.duckdb yet)") {
		t.Errorf("first run does not say it is a full export:\n%s", r.Stderr)
	}

	// Night 1: updates, new resources, a new patient, deletions (one of a resource updated
	// since the first export, one of a whole patient's observation).
	t1 := time.Now()
	data.put("Condition", "p0-c", "p0", "revised", t1)
	data.put("Observation", "p1-o1", "p1", "revised", t1)
	data.put("Observation", "p2-o3", "p2", "new", t1)
	data.patient("p6", t1)
	data.del("Observation", "p3-o2", t1)
	data.del("Condition", "p4-c", t1)
	data.write()
	r := nightly("site.duckdb", "exports")
	if !strings.Contains(r.Stderr, "bulk-kickoff: --since auto: ") || !strings.Contains(r.Stderr, `(same Group "cohort", types Patient,Condition,Observation, `) {
		t.Errorf("second run does not say which _since it chose and why:\n%s", r.Stderr)
	}
	kick := lastKickoffURL(srv)
	if !strings.Contains(kick, "_since=") {
		t.Errorf("second kickoff %s has no _since", kick)
	}

	// Night 2: more of the same, and a resource deleted then written again.
	t2 := time.Now()
	data.put("Patient", "p5", "", "moved", t2)
	data.del("Observation", "p1-o1", t2)
	data.del("Observation", "p0-o1", t2)
	data.put("Observation", "p0-o1", "p0", "back", t2.Add(time.Millisecond))
	data.write()
	nightly("site.duckdb", "exports")
	if entries, _ := filepath.Glob(filepath.Join(work, "exports", "export-*")); len(entries) < 3 {
		t.Errorf("export folders %v, want one per run", entries)
	}
	if got := countRoute(srv, fhirtest.RouteKickoff); got != 3 {
		t.Errorf("kickoffs = %d, want 3", got)
	}

	// A type the database never had complete: refused, saying what to do, and nothing is left
	// to resume.
	r = sh(t, work, nil, "sh '"+script+"' '"+srv.URL()+"/Group/cohort' site.duckdb exports --type "+types+",Encounter")
	if r.Code != 1 || !strings.Contains(r.Stderr, `bulk-kickoff: --since auto: site.duckdb holds no export to follow: no complete export of Encounter for Group "cohort"; export them in full first`) {
		t.Errorf("nightly.sh with a new type: exit %d, want 1 naming the type and a full export\n%s", r.Code, r.Stderr)
	}
	if _, err := os.Stat(filepath.Join(work, "exports", "current")); err == nil {
		t.Errorf("a refused kickoff left exports/current behind: the next run would resume nothing")
	}

	// One full export of the final data into a new database.
	nightly("full.duckdb", "full")
	tables := []string{"patient", "condition", "observation"}
	got, want := dbTables(t, filepath.Join(work, "site.duckdb"), tables...), dbTables(t, filepath.Join(work, "full.duckdb"), tables...)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("tables after incremental loads differ from one full export's (-full +incremental):\n%s", d)
	}
	if n := len(want["observation"]); n != 2*7+1-3+1 {
		t.Errorf("observations in the full export = %d, want 13 (is the data set what the test thinks?)", n)
	}
}

// lastKickoffURL is the URL of the last kickoff the server saw.
func lastKickoffURL(srv *fhirtest.Server) string {
	u := ""
	for _, r := range srv.Requests() {
		if r.Route == fhirtest.RouteKickoff {
			u = r.URL
		}
	}
	return u
}
