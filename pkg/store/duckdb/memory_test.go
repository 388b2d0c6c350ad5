package duckdb

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func openWith(t *testing.T, path string, o Options) *DB {
	t.Helper()
	d, err := OpenWith(t.Context(), path, o)
	if err != nil {
		t.Fatalf("OpenWith(%s, %+v): %v", path, o, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestMemoryLimitApplied(t *testing.T) {
	dir := t.TempDir()
	tmp := t.TempDir()
	for _, tc := range []struct {
		o         Options
		wantLimit string
		wantSpill string
	}{
		{Options{MemoryLimit: 64 << 20}, "64.0 MiB", filepath.Join(dir, "a.duckdb.tmp")},
		{Options{MemoryLimit: 3 << 30, TempDir: tmp}, "2.7 GiB", tmp + "/b.duckdb."},
	} {
		name := "a.duckdb"
		if tc.o.TempDir != "" {
			name = "b.duckdb"
		}
		d := openWith(t, filepath.Join(dir, name), tc.o)
		got := query(t, d, `SELECT current_setting('memory_limit'), current_setting('temp_directory')`)
		if len(got) != 1 {
			t.Fatalf("settings = %v, want one row", got)
		}
		limit, spill, _ := strings.Cut(got[0], "|")
		if limit != tc.wantLimit || !strings.HasPrefix(spill, tc.wantSpill) || !strings.HasSuffix(spill, ".tmp") {
			t.Errorf("OpenWith(%+v): memory_limit, temp_directory = %s, %s, want %s, %s…tmp", tc.o, limit, spill, tc.wantLimit, tc.wantSpill)
		}
		d.Close()
	}
	// Open's default is DefaultMemoryLimit: at most 2 GiB, whatever the machine (DuckDB's own
	// default is 80 % of RAM).
	n := DefaultMemoryLimit()
	if n < MinMemoryLimit || n > 2<<30 {
		t.Errorf("DefaultMemoryLimit() = %d, want between %d and 2 GiB", n, MinMemoryLimit)
	}
	d, err := Open(t.Context(), filepath.Join(dir, "c.duckdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	got := query(t, d, `SELECT current_setting('memory_limit')`)
	if want := humanBytes(bufferShare(n)); !slices.Equal(got, []string{want}) {
		t.Errorf("Open: memory_limit = %v, want %s", got, want)
	}
	if _, err := OpenWith(t.Context(), filepath.Join(dir, "d.duckdb"), Options{MemoryLimit: 1 << 20}); err == nil {
		t.Errorf("OpenWith(MemoryLimit 1 MiB) = nil error, want one below the minimum")
	}
}

// TestSpillFolderRemoved: a spill folder left by a process that died (kill -9 while DuckDB
// spilled) is removed by the next open, which holds the database's lock; the folder is also gone
// after a clean close. A folder that holds files that are not DuckDB's is left alone.
func TestSpillFolderRemoved(t *testing.T) {
	for _, tempDir := range []bool{false, true} {
		dir := t.TempDir()
		o := Options{MemoryLimit: 64 << 20}
		if tempDir {
			o.TempDir = t.TempDir()
		}
		path := filepath.Join(dir, "site.duckdb")
		spill, err := spillDir(path, o.TempDir)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(spill, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"duckdb_temp_storage_S32K-0.tmp", "duckdb_temp_block-4611686018427388032.block"} {
			if err := os.WriteFile(filepath.Join(spill, name), []byte("stale"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		d := openWith(t, path, o)
		if _, err := os.Stat(spill); !os.IsNotExist(err) {
			t.Errorf("TempDir %q: after OpenWith, Stat(stale %s) = %v, want it removed", o.TempDir, spill, err)
		}
		mustLoad(t, d, folder("g", "2024-01-01T00:00:00Z", nil, "Patient.000.ndjson", res("Patient", "p1")))
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(spill); !os.IsNotExist(err) {
			t.Errorf("TempDir %q: after Close, Stat(%s) = %v, want it removed", o.TempDir, spill, err)
		}
		if o.TempDir != "" {
			if _, err := os.Stat(o.TempDir); err != nil {
				t.Errorf("after Close, the --temp-dir folder itself: %v, want it kept", err)
			}
		}
	}

	// Not DuckDB's files: kept, with their folder.
	dir := t.TempDir()
	path := filepath.Join(dir, "x.duckdb")
	mine := filepath.Join(path+".tmp", "notes.txt")
	if err := os.MkdirAll(filepath.Dir(mine), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mine, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	openWith(t, path, Options{}).Close()
	if _, err := os.Stat(mine); err != nil {
		t.Errorf("a file not DuckDB's in the spill folder: %v, want it kept", err)
	}
}

// humanBytes formats n as DuckDB shows a memory limit.
func humanBytes(n int64) string {
	units := []string{"bytes", "KiB", "MiB", "GiB", "TiB"}
	f, i := float64(n), 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	// DuckDB cuts to one decimal where Printf would round (1.75 GiB shows as 1.7 GiB).
	return fmt.Sprintf("%.1f %s", math.Floor(f*10)/10, units[i])
}

// TestBufferShare: DuckDB gets a limit of 512 MiB or less whole, then all but a sixth of what is
// above 512 MiB, holding back at most 256 MiB; more limit never gives DuckDB less.
func TestBufferShare(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct{ limit, want int64 }{
		{MinMemoryLimit, MinMemoryLimit},
		{64 * mib, 64 * mib},
		{512 * mib, 512 * mib},
		{1024 * mib, 1024*mib - 512*mib/6},
		{2048 * mib, 1792 * mib},
		{8192 * mib, 7936 * mib},
	} {
		if got := bufferShare(tc.limit); got != tc.want {
			t.Errorf("bufferShare(%d MiB) = %d, want %d", tc.limit/mib, got, tc.want)
		}
	}
	for limit := int64(MinMemoryLimit); limit < 4<<30; limit += 7 * mib {
		if a, b := bufferShare(limit), bufferShare(limit+7*mib); b < a || a > limit {
			t.Fatalf("bufferShare(%d) = %d, bufferShare(%d) = %d: not increasing or above the limit", limit, a, limit+7*mib, b)
		}
	}
}

// TestOutOfMemory: DuckDB's own out of memory error is told by its type through any wrapping, and
// its text keeps the account (what did not fit in how much) without DuckDB's SQL advice.
func TestOutOfMemory(t *testing.T) {
	d := openWith(t, filepath.Join(t.TempDir(), "db.duckdb"), Options{MemoryLimit: MinMemoryLimit})
	// 700,000 distinct strings of about 600 bytes cannot be counted in 16 MiB once spilling is
	// refused.
	_, err := d.Conn().ExecContext(t.Context(), `SET temp_directory = ''`)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	err = d.Conn().QueryRowContext(t.Context(), `SELECT count(DISTINCT repeat(i::VARCHAR, 100)) FROM range(700000) AS r(i)`).Scan(&n)
	if err == nil {
		t.Fatalf("the query fit in %d MiB (%d rows): want out of memory", MinMemoryLimit>>20, n)
	}
	wrapped := fmt.Errorf("load big: merge patient: %w", err)
	text, ok := OutOfMemory(wrapped)
	if !ok {
		t.Fatalf("OutOfMemory(%v) = false", wrapped)
	}
	if !strings.HasPrefix(text, "load big: merge patient: Out of Memory Error: ") || strings.Contains(text, "Possible solutions") || strings.Contains(text, "\n") {
		t.Errorf("OutOfMemory's text = %q, want the wrapped account on one line without DuckDB's advice", text)
	}

	_, err = d.Conn().ExecContext(t.Context(), `SELECT * FROM no_such_table`)
	for _, e := range []error{nil, err, fmt.Errorf("out of memory, said as text")} {
		if _, ok := OutOfMemory(e); ok {
			t.Errorf("OutOfMemory(%v) = true, want false", e)
		}
	}
}
