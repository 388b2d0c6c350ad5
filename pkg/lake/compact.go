package lake

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/failpoint"
	"github.com/bulkpipe/bulkpipe/pkg/store/duckdb"
)

// FailCompactCommitted is the failpoint after a compaction's commit, before it removes the files
// it replaced: the lake then holds both, and reads the same.
const FailCompactCommitted = "lake.compact-committed"

// DefaultGrace is how old an uncommitted load must be before compaction removes its files: a
// younger one may belong to a writer still at work (an object store has no lock to ask).
const DefaultGrace = 24 * time.Hour

// Compact says how to compact.
type Compact struct {
	// DB is an empty database to compute the tables' state in; its memory limit bounds the
	// compaction's (the rules' window functions and sorts spill to its temporary folder).
	DB    *duckdb.DB
	Now   func() time.Time
	Grace time.Duration // default DefaultGrace
}

// Compaction is what a compaction did.
type Compaction struct {
	Commit    *Commit // the compacted load; nil when the lake was already compact
	Replaced  int     // committed loads whose files it removed
	Abandoned int     // uncommitted loads older than the grace whose files it removed
	Files     int     // files removed
	Uploads   int     // incomplete multipart uploads older than the grace aborted (S3)
}

// ConflictError is a compaction that found another load committed after the state it read: it
// commits nothing (that load's rows would lose to older ones of the same export time) and
// removes what it wrote.
type ConflictError struct{ Seq int64 }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("load %d was committed while compacting: nothing changed; compact again", e.Seq)
}

// Compact rewrites every table's current state — the rows its view returns, with their own
// export times, Groups and source files — into one new load, commits it, and only then removes
// the files of the loads it replaces, so that a reader sees the same rows before, during and
// after. It also removes the files of uncommitted loads older than the grace (killed loads).
//
// The compacted load must take the sequence number right after the last load it read: a load
// committed meanwhile ends the compaction with a *ConflictError, as its rows of an export time
// equal to older rows' win over them only while it is the later commit.
func (l *Lake) Compact(ctx context.Context, o Compact) (*Compaction, error) {
	now, grace := time.Now, o.Grace
	if o.Now != nil {
		now = o.Now
	}
	if grace <= 0 {
		grace = DefaultGrace
	}
	commits, err := l.Commits(ctx)
	if err != nil || len(commits) == 0 {
		return &Compaction{}, err
	}
	keys, err := l.objs.list(ctx, "")
	if err != nil {
		return nil, err
	}
	p := planCompaction(commits, keys, now().Add(-grace))
	res := &Compaction{Replaced: len(p.loads), Abandoned: len(p.abandonedLoads)}
	if len(p.loads) <= 1 && len(p.abandoned) == 0 {
		return &Compaction{}, nil // one load holds every row already: nothing to gain
	}
	if len(p.loads) > 1 {
		if res.Commit, err = l.writeCompacted(ctx, o.DB, commits, p, now); err != nil {
			return nil, err
		}
		failpoint.Hit(FailCompactCommitted)
	} else {
		p.replaced, res.Replaced = nil, 0
	}
	if a, ok := l.objs.(interface {
		abortUploads(context.Context, time.Time) (int, error)
	}); ok {
		if res.Uploads, err = a.abortUploads(ctx, now().Add(-grace)); err != nil {
			return res, err
		}
	}
	gone := append(p.replaced, p.abandoned...)
	if err := l.objs.remove(ctx, gone); err != nil {
		return res, fmt.Errorf("committed, but removing the replaced files: %w (the next compaction removes them)", err)
	}
	res.Files = len(gone)
	return res, nil
}

// compactionPlan sorts the lake's table files: those of committed loads, which the compaction
// reads and replaces, and those of loads never committed and older than the grace.
type compactionPlan struct {
	tables         map[string][]string // table → its committed files
	loads          map[string]bool     // committed loads holding files
	replaced       []string
	abandoned      []string
	abandonedLoads map[string]bool
}

func planCompaction(commits []Commit, keys []string, before time.Time) compactionPlan {
	committed := map[string]bool{}
	for _, c := range commits {
		committed[c.Load] = true
	}
	p := compactionPlan{tables: map[string][]string{}, loads: map[string]bool{}, abandonedLoads: map[string]bool{}}
	for _, k := range keys {
		table, load, ok := splitKey(k)
		if !ok || table == CommitsDir {
			continue
		}
		switch started, known := loadStart(load); {
		case committed[load]:
			p.tables[table] = append(p.tables[table], k)
			p.loads[load] = true
			p.replaced = append(p.replaced, k)
		case known && started.Before(before):
			p.abandoned = append(p.abandoned, k)
			p.abandonedLoads[load] = true
		}
	}
	return p
}

// loadStart reads the start time a load's name begins with; false for a name not of this form,
// which compaction never removes.
func loadStart(load string) (time.Time, bool) {
	stamp, _, ok := strings.Cut(load, "-")
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse("20060102T150405Z", stamp)
	return t, err == nil
}

// writeCompacted computes each table's state as of the last commit in db, writes it as a new
// load, and commits that load right after it.
func (l *Lake) writeCompacted(ctx context.Context, db *duckdb.DB, commits []Commit, p compactionPlan, now func() time.Time) (*Commit, error) {
	last := commits[len(commits)-1].Seq
	c := &Commit{Load: newLoadID(now()), Source: "compaction of loads 1-" + strconv.FormatInt(last, 10), Rows: map[string]int64{}}
	out, err := l.outbox(c.Load)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)
	glob, err := l.readableFiles(ctx, p, filepath.Join(out, "in"))
	if err != nil {
		return nil, err
	}
	tables := slices.Sorted(maps.Keys(p.tables))
	conn := db.Conn()
	// The views are named as the database's tables, so they go into a catalog of their own; an
	// attached in-memory one shares the instance's memory limit and spill folder.
	var home string
	if err := conn.QueryRowContext(ctx, `SELECT current_database()`).Scan(&home); err != nil {
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, `ATTACH IF NOT EXISTS ':memory:' AS lake_state; USE lake_state`); err != nil {
		return nil, err
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `USE `+ident(home))
	for _, st := range duckStatements(commitsValues(commits), tables, glob) {
		if _, err := conn.ExecContext(ctx, st); err != nil {
			return nil, fmt.Errorf("compact: %w", err)
		}
	}
	written := false
	for _, t := range tables {
		n, err := l.copyOut(ctx, conn, compactQuery(t, glob(t)), partitionKey(t, c.Load), filepath.Join(out, t))
		if err != nil {
			return nil, fmt.Errorf("compact %s: %w", t, err)
		}
		if n > 0 {
			c.Rows[t] = n
			written = true
		}
	}
	c.Seq = last + 1
	c.CommittedAt = now().UTC()
	err = l.createCommit(ctx, c)
	if errors.Is(err, fs.ErrExist) {
		err = &ConflictError{Seq: c.Seq}
	}
	if err != nil && written {
		l.removeLoad(ctx, c.Load) // its files would otherwise wait a day for the grace
	}
	return c, err
}

// compactQuery selects the rows of table's view, over the table's files (the glob files), with
// the resource text as stored (copied, never re-serialized). A resource table's rows keep the
// order its files hold them in, but for where the threads take turns: the view's window over
// whole rows would hand them over scattered by a hash of the id, and resources no longer beside
// their patient's others compress worse (a 10 GB export's lake compacted to 1.26 GB that way, to
// 0.91 GB this way). So the view's rules run over the key columns alone, naming each row kept by
// its file and row number, and the files are then read again, keeping the rows named. The window
// holds a few narrow columns rather than every resource, which also halved the compaction's time
// and memory.
func compactQuery(table, files string) string {
	cols, _ := lakeColumns(table)
	if _, bookkeeping := dedupe[table]; bookkeeping {
		var names []string
		for _, col := range schemaOf(table) {
			names = append(names, ident(col.name))
		}
		return `SELECT ` + cols + ` FROM (` + viewQuery(table, strings.Join(names, ", ")) + `) AS v`
	}
	read := `read_parquet(` + quote(files) + `, hive_partitioning = true, hive_types = {'load': VARCHAR}, filename = true, file_row_number = true)`
	keys := `(SELECT t.id, t.export_time, t.filename, t.file_row_number, c.seq AS load_seq FROM ` + read +
		` AS t JOIN etl__commits AS c ON c.load = t.load)`
	kept := viewQueryOver(table, "filename, file_row_number", keys)
	return `SELECT ` + cols + ` FROM ` + read + ` AS t SEMI JOIN (` + kept + `) AS k USING (filename, file_row_number)`
}

// readableFiles returns, per table, where DuckDB reads its committed files: in place for a
// folder; for an object store, from copies fetched into dir (DuckDB reads S3 only through an
// extension it would have to download).
func (l *Lake) readableFiles(ctx context.Context, p compactionPlan, dir string) (func(string) string, error) {
	if _, local := l.objs.(dirObjects); local {
		return func(t string) string { return l.objs.url(keyOf(t, "load=*", "*.parquet")) }, nil
	}
	for _, files := range p.tables {
		for _, k := range files {
			path := filepath.Join(dir, filepath.FromSlash(k))
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return nil, err
			}
			if err := l.objs.fetch(ctx, k, path); err != nil {
				return nil, err
			}
		}
	}
	return func(t string) string { return filepath.Join(dir, t, "load=*", "*.parquet") }, nil
}

// commitsValues is the commits view as of the commits read: a load committed later is not part
// of the state compacted, even if its files are listed.
func commitsValues(commits []Commit) string {
	rows := make([]string, len(commits))
	for i, c := range commits {
		rows[i] = "(" + strconv.FormatInt(c.Seq, 10) + "::BIGINT, " + quote(c.Load) + ")"
	}
	return `CREATE OR REPLACE VIEW etl__commits AS SELECT * FROM (VALUES ` + strings.Join(rows, ", ") + `) AS c(seq, load)`
}

// removeLoad removes every file of one load, best effort.
func (l *Lake) removeLoad(ctx context.Context, load string) {
	keys, err := l.objs.list(ctx, "")
	if err != nil {
		return
	}
	var mine []string
	for _, k := range keys {
		if _, ld, ok := splitKey(k); ok && ld == load {
			mine = append(mine, k)
		}
	}
	l.objs.remove(context.WithoutCancel(ctx), mine)
}
