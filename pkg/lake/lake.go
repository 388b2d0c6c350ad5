// Package lake keeps etl-load's tables as an append-only Parquet lake that distributed engines
// (Athena, Trino, Spark) and DuckDB query with the rules etl-load's DuckDB tables follow.
//
// Each loaded folder appends one load: per table, Parquet files under TABLE/load=ID/, and then,
// last, one commit record etl__commits/SEQ.json naming the load. Nothing written is rewritten
// by a later load. A load is visible only once its commit record exists: every reader joins the
// tables' files to etl__commits on the load partition, so files of a load that was killed
// before its commit are never read, and no rename is needed, which object stores lack. The
// commit's sequence number orders loads, as the order of etl-load runs orders a database's.
package lake

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CommitsDir is the folder of commit records, one JSON line per committed load.
const CommitsDir = "etl__commits"

// Lake is a lake in a local folder.
type Lake struct {
	root string // absolute
}

// UnsupportedError is a lake location this version cannot write, such as an object store URL.
type UnsupportedError struct{ Location string }

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("%s: only a local folder can hold a lake in this version", e.Location)
}

// Open opens the lake at root, a local folder created if missing.
func Open(root string) (*Lake, error) {
	if i := strings.Index(root, "://"); i > 0 && !strings.ContainsAny(root[:i], "/.") {
		return nil, &UnsupportedError{Location: root}
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(abs, CommitsDir), 0o755); err != nil {
		return nil, fmt.Errorf("create lake: %w", err)
	}
	return &Lake{root: abs}, nil
}

// Root is the lake's folder, absolute.
func (l *Lake) Root() string { return l.root }

// Tables lists the tables that hold files of at least one load, committed or not: a table whose
// loads are all uncommitted reads as empty through the views.
func (l *Lake) Tables() ([]string, error) {
	entries, err := os.ReadDir(l.root)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || name == CommitsDir || strings.HasPrefix(name, ".") {
			continue
		}
		loads, err := filepath.Glob(filepath.Join(l.root, name, "load=*", "*.parquet"))
		if err != nil {
			return nil, err
		}
		if len(loads) > 0 {
			out = append(out, name)
		}
	}
	return out, nil
}

// tableDir is the folder of one table's loads.
func (l *Lake) tableDir(table string) string { return filepath.Join(l.root, table) }

// loadDir is the folder of one load's files of one table (a Hive-style partition).
func (l *Lake) loadDir(table, load string) string {
	return filepath.Join(l.tableDir(table), "load="+load)
}
