//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/store/duckdb"
	"github.com/bulkpipe/bulkpipe/pkg/tool/tooltest"
)

// memSlack is what this test lets etl-load use above --memory-limit: the Go side (a few chunks
// of lines, the scanner), DuckDB's allocator caches and what DuckDB does not count. The tool
// promises 256 MiB (issue 14); at this size it needs about 110, and 160 still fails without the
// allocator and compression settings of duckdb.OpenWith (about 245 then).
const memSlack = 160 << 20

// TestMemBound runs etl-load as a process on a folder several times --memory-limit, twice (the
// second export replaces every row: the join of a whole table with a whole folder), and checks
// that its peak RSS (tooltest.PeakRSS) stays within the limit + memSlack. The folder holds more
// rows than one of DuckDB's row groups (122,880) of resource-sized strings: writing such a row
// group is where DuckDB's memory outside its limit grew (0.5 GiB above 256 MiB on a 1 GB folder).
func TestMemBound(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and loads 160 MiB twice")
	}
	const limit = 64 << 20
	dir := t.TempDir()
	rows := writeObservations(t, filepath.Join(dir, "export"), 160<<20)
	// Built here rather than run as the test binary: under make test's -race, the detector's
	// shadow memory would be most of the peak.
	tool := filepath.Join(dir, "etl-load")
	if b, err := exec.Command("go", "build", "-o", tool, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	db := filepath.Join(dir, "site.duckdb")
	for _, when := range []string{"2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z"} {
		cmd := exec.Command(tool, "--db", db, "--memory-limit", fmt.Sprint(limit), "--quiet",
			"--export-group", "g", "--export-timestamp", when, filepath.Join(dir, "export"))
		cmd.Env = append(os.Environ(), "BULK_MEMORY_LIMIT=")
		b, rss, err := tooltest.PeakRSS(cmd)
		if err != nil {
			t.Fatalf("etl-load (%s): %v\n%s", when, err, b)
		}
		t.Logf("export of %s, --memory-limit %d MiB: peak RSS %d MiB", when, limit>>20, rss>>20)
		if got, want := rss, int64(limit+memSlack); got > want {
			t.Errorf("etl-load --memory-limit %d MiB (export of %s): peak RSS %d MiB, want at most %d MiB",
				limit>>20, when, got>>20, want>>20)
		}
	}
	d, err := duckdb.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var n, later int
	if err := d.Conn().QueryRowContext(context.Background(), `SELECT count(*), count(*) FILTER (export_time = '2024-02-01T00:00:00Z') FROM observation`).Scan(&n, &later); err != nil {
		t.Fatal(err)
	}
	if n != rows || later != rows {
		t.Errorf("observation holds %d rows, %d of the later export; want %d, all of it", n, later, rows)
	}
}

// writeObservations writes about size bytes of distinct Observations, each with a note of
// varied words (resources compress as in real exports, neither all alike nor random), into
// dir/Observation.000.ndjson, and returns how many.
func writeObservations(t *testing.T, dir string, size int64) int {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "Observation.000.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("patient reports mild pain after meal no fever denies nausea follow up in two weeks lab values within normal limits except glucose")
	var written int64
	var note strings.Builder
	n := 0
	for ; written < size; n++ {
		note.Reset()
		for note.Len() < 600+r.IntN(400) {
			note.WriteString(words[r.IntN(len(words))])
			note.WriteByte(' ')
		}
		k, _ := fmt.Fprintf(w, `{"resourceType":"Observation","id":"obs-%d","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"%d-%d"}]},"subject":{"reference":"Patient/p%d"},"valueQuantity":{"value":%.1f,"unit":"mg/dL"},"note":[{"text":%q}]}`+"\n",
			n, 2000+n%700, n%10, n%5000, 50+r.Float64()*100, note.String())
		written += int64(k)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return n
}
