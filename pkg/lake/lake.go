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
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// CommitsDir is the folder of commit records, one JSON line per committed load.
const CommitsDir = "etl__commits"

// Lake is a lake in a local folder or under an S3 prefix.
type Lake struct {
	objs     objects
	location string // the absolute folder, or the s3:// URL as given
	scratch  string // a local folder for staging databases and files on their way in
}

// UnsupportedError is a lake location this version cannot write, such as an unknown URL scheme.
type UnsupportedError struct{ Location string }

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("%s: a lake is a local folder or an s3://bucket/prefix URL", e.Location)
}

// Options tunes Open.
type Options struct {
	// Scratch is a local folder for an object-store lake's staging databases and the Parquet
	// files on their way up (default: the system's temporary folder). A local lake stages in
	// its own .staging folder, so that files move into place by rename.
	Scratch string
	// Attempts is the number of tries of each object-store request (default 6).
	Attempts int
}

// Open opens the lake at location: a local folder (created if missing) or s3://bucket/prefix,
// whose bucket must exist.
func Open(ctx context.Context, location string, o Options) (*Lake, error) {
	if strings.HasPrefix(location, "s3://") {
		objs, err := newS3Objects(ctx, location, o.Attempts)
		if err != nil {
			return nil, err
		}
		scratch := o.Scratch
		if scratch == "" {
			scratch = os.TempDir()
		}
		return &Lake{objs: objs, location: strings.TrimSuffix(location, "/"), scratch: filepath.Join(scratch, "bulkpipe-lake")}, nil
	}
	if i := strings.Index(location, "://"); i > 0 && !strings.ContainsAny(location[:i], "/.") {
		return nil, &UnsupportedError{Location: location}
	}
	abs, err := filepath.Abs(location)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(abs, CommitsDir), 0o755); err != nil {
		return nil, fmt.Errorf("create lake: %w", err)
	}
	return &Lake{objs: dirObjects{root: abs}, location: abs, scratch: filepath.Join(abs, ".staging")}, nil
}

// Location is where the lake is: an absolute folder or an s3:// URL.
func (l *Lake) Location() string { return l.location }

// StagingDir is the local folder a load stages a folder in (its database, its Parquet files
// before they move into the lake). A local lake's is inside the lake, on its disk, but outside
// every table's location, so no engine reads it.
func (l *Lake) StagingDir() string { return l.scratch }

// Tables lists the tables that hold files of at least one load, committed or not: a table whose
// loads are all uncommitted reads as empty through the views.
func (l *Lake) Tables(ctx context.Context) ([]string, error) {
	keys, err := l.objs.list(ctx, "")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, k := range keys {
		if table, _, ok := splitKey(k); ok && table != CommitsDir && !slices.Contains(out, table) {
			out = append(out, table)
		}
	}
	slices.Sort(out)
	return out, nil
}
