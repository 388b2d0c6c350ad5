package duckdb

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// Options bound what a database may use while it loads and exports.
type Options struct {
	// MemoryLimit caps the memory of the process in bytes, less 256 MiB for what nothing counts;
	// DuckDB's memory_limit is most of it, and what does not fit spills to TempDir. Zero means
	// DefaultMemoryLimit().
	MemoryLimit int64
	// TempDir is the folder that holds the spill folder; "" means the database's own folder.
	// The spill folder is the database's alone and is removed when the database closes.
	TempDir string
}

// MinMemoryLimit is the smallest memory limit DuckDB loads with: below it a single row group of
// a staged table does not fit.
const MinMemoryLimit = 16 << 20

// bufferShare is the part of a memory limit DuckDB's memory_limit gets. memory_limit bounds its
// buffer manager only; the rest of the process (its allocator's caches, the row group being
// compressed, the Parquet writer's row groups, the Go side) grows with the data and the limit: on
// a 10 GB folder under a 2 GiB memory_limit the process peaked at 2.30 GiB loading into DuckDB
// and 2.41 GiB appending to a lake, over the limit + 256 MiB promised. A sixth of what the limit
// has above 512 MiB, at most 256 MiB (so 2 GiB gives DuckDB 1.75), is held back for it. A limit
// of 512 MiB or less is DuckDB's whole: there the 256 MiB slack covers the rest, and a load needs
// every MiB of it (merging a 1 GB folder's DocumentReferences takes about 70 MiB).
func bufferShare(limit int64) int64 {
	return limit - min(max(limit-512<<20, 0)/6, 256<<20)
}

// maxDefaultMemoryLimit is the default limit on a large machine: enough for the hash joins and
// sorts of a load to run mostly in memory, and no more, since spilling is cheap for them.
const maxDefaultMemoryLimit = 2 << 30

// DefaultMemoryLimit is the smaller of 2 GiB and a quarter of the memory this process may use
// (the machine's RAM, or its cgroup's limit when lower), so that a load leaves room for the
// page cache and the rest of the machine.
func DefaultMemoryLimit() int64 {
	ram := physicalMemory()
	if n := cgroupLimit(); n > 0 && (ram <= 0 || n < ram) {
		ram = n
	}
	if ram <= 0 {
		return maxDefaultMemoryLimit
	}
	return max(min(ram/4, maxDefaultMemoryLimit), MinMemoryLimit)
}

// cgroupLimit reads the cgroup v2 (memory.max) or v1 (memory.limit_in_bytes) limit of this
// process's container; 0 when there is none.
func cgroupLimit() int64 {
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		// "max" (v2) and a huge page-aligned number (v1) both mean no limit.
		if err == nil && n > 0 && n < 1<<60 {
			return n
		}
	}
	return 0
}

// spillDir is the folder DuckDB spills to for the database at path: beside it, DuckDB's own
// default name (path + ".tmp"), or in tempDir a name unique to the database's absolute path, so
// that databases sharing one --temp-dir never share a spill folder.
func spillDir(path, tempDir string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if tempDir == "" {
		return abs + ".tmp", nil
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(tempDir, filepath.Base(abs)+"."+hex.EncodeToString(sum[:6])+".tmp"), nil
}

// spillPrefix starts the name of every file DuckDB writes in its temp directory
// (duckdb_temp_storage_*.tmp, duckdb_temp_block-*.block).
const spillPrefix = "duckdb_temp_"

// removeSpill removes DuckDB's spill files from dir, then dir itself. Only called while this
// process holds the database's lock, which DuckDB takes for the life of the process that opened
// it: a spill folder found then was left by a process that died (kill -9, a crash, a full disk),
// since no live process can use the database. Other files (a user's folder given by mistake)
// are left alone, and so is the folder then.
func removeSpill(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove spill folder: %w", err)
	}
	var errs []error
	foreign := false
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), spillPrefix) || e.IsDir() {
			foreign = true
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if !foreign && len(errs) == 0 {
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove spill folder: %w", err)
	}
	return nil
}

// OutOfMemory reports whether err is, or wraps, DuckDB's out of memory error: what a statement
// needed did not fit in its memory_limit, even spilling. It returns err's text up to the end of
// DuckDB's account of what did not fit, its first line: the lines of advice after it name SQL
// settings (threads, memory_limit, temp_directory), not anything a user of the tools can set.
func OutOfMemory(err error) (string, bool) {
	e, ok := errors.AsType[*duckdb.Error](err)
	if !ok || e.Type != duckdb.ErrorTypeOutOfMemory {
		return "", false
	}
	text, _, _ := strings.Cut(err.Error(), "\n")
	if advice := strings.Index(text, "Possible solutions:"); advice > 0 {
		text = text[:advice]
	}
	return strings.TrimSpace(text), true
}
