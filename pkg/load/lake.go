package load

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/bulkpipe/bulkpipe/pkg/lake"
	"github.com/bulkpipe/bulkpipe/pkg/store"
)

// runLake appends each folder to o.Lake as one load. A folder is first loaded alone into a
// staging database of its own, by the same code as a load into a database, so the rows it
// appends are exactly what it adds to one (its last copy per id, its deletes, its completion
// rows); the lake's views then apply, across loads, the rules the database's merge applies.
func (o *Options) runLake(ctx context.Context, srcs []store.Source, rem *remote) (*Result, error) {
	staging := o.Lake.StagingDir()
	if err := os.MkdirAll(staging, 0o755); err != nil {
		return nil, fmt.Errorf("create the lake's staging folder: %w", err)
	}
	removeDeadStaging(staging)
	res := &Result{Folders: len(srcs)}
	for _, src := range srcs {
		st, err := o.lakeFolder(ctx, staging, src, rem)
		if err != nil {
			return nil, err
		}
		res.MedicationsFailed += st.MedicationsFailed
		res.Rows += st.Rows
	}
	if rem != nil {
		res.AttachmentsFailed = rem.failedAttachments()
	}
	if o.Compact {
		if err := o.compactLake(ctx, staging); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// compactLake compacts the lake, computing the tables' state in a staging database of its own,
// within the same memory limit as a folder's load.
func (o *Options) compactLake(ctx context.Context, staging string) error {
	path := stagingPath(staging)
	defer removeDB(path)
	db, err := o.OpenStaging(ctx, path)
	if err != nil {
		return err
	}
	defer db.Close()
	c, err := o.Lake.Compact(ctx, lake.Compact{DB: db, Now: o.Now})
	if err != nil {
		return fmt.Errorf("compact the lake %s: %w", o.Lake.Location(), err)
	}
	if o.Compacted != nil {
		o.Compacted(c)
	}
	return db.Close()
}

// stagingPath names a new staging database, by process (so that the next run can tell a dead
// one's) and at random (so that one process's never meet).
func stagingPath(staging string) string {
	var b [6]byte
	rand.Read(b[:])
	return filepath.Join(staging, strconv.Itoa(os.Getpid())+"-"+hex.EncodeToString(b[:])+".duckdb")
}

// lakeFolder loads one folder into a new staging database, appends its tables to the lake,
// and removes the database.
func (o *Options) lakeFolder(ctx context.Context, staging string, src store.Source, rem *remote) (store.Stats, error) {
	path := stagingPath(staging)
	defer removeDB(path)
	db, err := o.OpenStaging(ctx, path)
	if err != nil {
		return store.Stats{}, err
	}
	defer db.Close()
	st, err := o.loadFolder(ctx, db, src, rem)
	if err != nil {
		return st, err
	}
	c, err := o.Lake.Append(ctx, lake.Folder{DB: db, Source: src.Dir, Group: src.Export.Group, Time: src.Export.Time, Now: o.Now})
	if err != nil {
		return st, fmt.Errorf("append %s to the lake %s: %w", src.Dir, o.Lake.Location(), err)
	}
	if o.Committed != nil {
		o.Committed(src.Dir, c)
	}
	return st, db.Close()
}

// removeDB removes a DuckDB file and its write-ahead log.
func removeDB(path string) {
	os.Remove(path)
	os.Remove(path + ".wal")
}

// removeDeadStaging removes the staging databases of processes that are gone (killed during a
// load): their loads never committed, so nothing reads them. A live process's are left alone.
func removeDeadStaging(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		pidText, _, ok := strings.Cut(e.Name(), "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}
