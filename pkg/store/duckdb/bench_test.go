package duckdb

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/store"
	duckdb "github.com/duckdb/duckdb-go/v2"
)

// The benchmarks compare etl-load's path (Go reads and validates each line, the Appender stages
// it, SQL dedupes and upserts) with DuckDB SQL doing the same work (read_ndjson_objects into a
// staging table, the same dedupe and upsert) on one generated Observation file. The size is
// BULKPIPE_BENCH_MB (default 8); the Observation file is regenerated per run in a temp folder.
//
//	BULKPIPE_BENCH_MB=150 go test ./pkg/store/duckdb -run '^$' -bench . -benchtime 1x
//
// For phase timings and peak RSS of each path on its own, from one test binary:
//
//	BULKPIPE_BENCH_MB=150 BULKPIPE_BENCH_OUT=/tmp/obs/Observation.000.ndjson go test ./pkg/store/duckdb -run TestWriteBenchFile
//	go test -c -o /tmp/duckdb.test ./pkg/store/duckdb
//	export BULKPIPE_BENCH_IN=/tmp/obs/Observation.000.ndjson
//	/usr/bin/time -v /tmp/duckdb.test -test.run '^TestLoadFile$' -test.v
//	/usr/bin/time -v /tmp/duckdb.test -test.run '^TestSQLBaselineFile$' -test.v

// benchFile writes a BULKPIPE_BENCH_MB file for a benchmark.
func benchFile(b *testing.B) (string, int64) {
	b.Helper()
	mb := 8
	if v := os.Getenv("BULKPIPE_BENCH_MB"); v != "" {
		mb, _ = strconv.Atoi(v)
	}
	path := filepath.Join(b.TempDir(), "Observation.000.ndjson")
	size, err := writeBenchFile(path, mb)
	if err != nil {
		b.Fatal(err)
	}
	return path, size
}

// writeBenchFile writes about mb MiB of Observations, one in 50 repeating an earlier id.
func writeBenchFile(path string, mb int) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("patient reports mild pain after meal no fever denies nausea follow up in two weeks lab values within normal limits except glucose")
	var size int64
	for i := 0; size < int64(mb)<<20; i++ {
		id := i
		if i%50 == 49 {
			id = r.IntN(i) // Cerner-style repeats: the last one must win
		}
		var note strings.Builder
		for note.Len() < 400+r.IntN(400) {
			note.WriteString(words[r.IntN(len(words))])
			note.WriteByte(' ')
		}
		n, _ := fmt.Fprintf(w, `{"resourceType":"Observation","id":"obs-%d","meta":{"lastUpdated":"2024-0%d-1%dT10:%02d:00Z"},"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"%d-%d","display":"Glucose [Mass/volume] in Serum or Plasma"}]},"subject":{"reference":"Patient/p%d"},"encounter":{"reference":"Encounter/e%d"},"effectiveDateTime":"2024-03-0%dT08:30:00Z","valueQuantity":{"value":%.1f,"unit":"mg/dL","system":"http://unitsofmeasure.org","code":"mg/dL"},"note":[{"text":%q}]}`+"\n",
			id, 1+i%9, i%10, i%60, 2000+i%700, i%10, i%5000, i%20000, 1+i%9, 50+r.Float64()*100, note.String())
		size += int64(n)
	}
	if err := w.Flush(); err != nil {
		return 0, err
	}
	return size, f.Close()
}

// TestWriteBenchFile writes the benchmark file to $BULKPIPE_BENCH_OUT, for timing the etl-load
// binary itself (peak RSS with /usr/bin/time -v).
func TestWriteBenchFile(t *testing.T) {
	out := os.Getenv("BULKPIPE_BENCH_OUT")
	if out == "" {
		t.Skip("BULKPIPE_BENCH_OUT not set")
	}
	mb, _ := strconv.Atoi(os.Getenv("BULKPIPE_BENCH_MB"))
	if _, err := writeBenchFile(out, max(mb, 1)); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkLoad(b *testing.B) {
	path, size := benchFile(b)
	b.SetBytes(size)
	for i := range b.N {
		d, err := Open(context.Background(), filepath.Join(b.TempDir(), fmt.Sprintf("b%d.duckdb", i)))
		if err != nil {
			b.Fatal(err)
		}
		src := store.Source{Dir: filepath.Dir(path), Export: store.Export{Group: "g", Time: time.Now()}, Files: []store.File{{
			Path: path, ResourceType: "Observation",
			Open: func() (io.ReadCloser, error) { return os.Open(path) },
		}}}
		if _, err := store.Load(context.Background(), d, src, store.Options{}); err != nil {
			b.Fatal(err)
		}
		d.Close()
	}
}

func BenchmarkSQLBaseline(b *testing.B) {
	path, size := benchFile(b)
	b.SetBytes(size)
	for i := range b.N {
		if err := baselineLoad(filepath.Join(b.TempDir(), fmt.Sprintf("b%d.duckdb", i)), path, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSQLBaselineFile times baselineLoad on $BULKPIPE_BENCH_IN, for comparing peak RSS with the
// etl-load binary's.
func TestSQLBaselineFile(t *testing.T) {
	in := os.Getenv("BULKPIPE_BENCH_IN")
	if in == "" {
		t.Skip("BULKPIPE_BENCH_IN not set")
	}
	start := time.Now()
	if err := baselineLoad(filepath.Join(t.TempDir(), "baseline.duckdb"), in, t.Logf); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(in)
	secs := time.Since(start).Seconds()
	t.Logf("SQL baseline: %.1f MB in %.2f s = %.1f MB/s", float64(fi.Size())/1e6, secs, float64(fi.Size())/1e6/secs)
}

// TestLoadFile times store.Load on $BULKPIPE_BENCH_IN, reporting the staging and merge phases;
// run beside TestSQLBaselineFile in the same binary for a like-for-like comparison.
func TestLoadFile(t *testing.T) {
	in := os.Getenv("BULKPIPE_BENCH_IN")
	if in == "" {
		t.Skip("BULKPIPE_BENCH_IN not set")
	}
	start := time.Now()
	d, err := Open(context.Background(), filepath.Join(t.TempDir(), "ours.duckdb"))
	if err != nil {
		t.Fatal(err)
	}
	var staged time.Time
	src := store.Source{Dir: filepath.Dir(in), Export: store.Export{Group: "g", Time: time.Now()}, Files: []store.File{{
		Path: in, ResourceType: "Observation",
		Open: func() (io.ReadCloser, error) { return os.Open(in) },
	}}}
	st, err := store.Load(context.Background(), d, src, store.Options{Progress: func(p store.Progress) {
		if p.Merging {
			staged = time.Now()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	merged := time.Now()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	secs := time.Since(start).Seconds()
	t.Logf("etl-load path: %.1f MB in %.2f s = %.1f MB/s (open+stage %.2f s, merge+commit %.2f s, close %.2f s)",
		float64(st.Bytes)/1e6, secs, float64(st.Bytes)/1e6/secs, staged.Sub(start).Seconds(),
		merged.Sub(staged).Seconds(), time.Since(merged).Seconds())
}

// baselineLoad is DuckDB SQL doing etl-load's work: read_ndjson_objects into a staging table, the
// same dedupe (last duplicate wins) and the same upsert, in one transaction.
func baselineLoad(dbPath, ndjsonPath string, logf func(string, ...any)) error {
	c, err := duckdb.NewConnector(dbPath, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	db := sql.OpenDB(c)
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range []string{
		createTable("observation"),
		schema[2], // etl__deleted, for the same anti-join as the real merge
		`BEGIN TRANSACTION`,
		`CREATE TEMP TABLE stage AS SELECT row_number() OVER () AS seq, json->>'id' AS id, json AS resource
		FROM read_ndjson_objects('` + ndjsonPath + `')`,
		`INSERT INTO observation (id, resource, export_group, export_time, source_file)
		SELECT s.id, s.resource, 'g', now(), '` + ndjsonPath + `'
		FROM (SELECT * FROM stage QUALIFY row_number() OVER (PARTITION BY id ORDER BY seq DESC) = 1) AS s
		WHERE NOT EXISTS (SELECT 1 FROM etl__deleted AS d WHERE d.table_name = 'observation' AND d.id = s.id)
		ON CONFLICT (id) DO UPDATE SET resource = excluded.resource, export_group = excluded.export_group,
			export_time = excluded.export_time, source_file = excluded.source_file
		WHERE excluded.export_time >= observation.export_time`,
		`DROP TABLE stage`,
		`COMMIT`,
	} {
		start := time.Now()
		if _, err := db.Exec(q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
		if logf != nil {
			logf("%.2f s: %.50s", time.Since(start).Seconds(), strings.Join(strings.Fields(q), " "))
		}
	}
	return nil
}
