package lake

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/failpoint"
	"github.com/bulkpipe/bulkpipe/pkg/store/duckdb"
)

// Failpoints of a load (tests kill the process there with BULKPIPE_CRASH).
const (
	FailBeforeCommit = "lake.before-commit" // every file written, no commit record yet
	FailAfterCommit  = "lake.after-commit"  // committed, the staging database not yet removed
	FailAfterUpload  = "lake.after-upload"  // one more file of the load in the lake (NAME:N: the Nth)
)

// Commit is the record that makes one load visible. Only Seq and Load are read back by the
// views; the rest says where the load came from, for people reading the folder.
type Commit struct {
	Seq         int64            `json:"seq"`
	Load        string           `json:"load"`
	Source      string           `json:"source"`
	ExportGroup string           `json:"export_group"`
	ExportTime  time.Time        `json:"export_time"`
	CommittedAt time.Time        `json:"committed_at"`
	Rows        map[string]int64 `json:"rows"`
}

// Folder is what a load appends: one export folder's rows, loaded alone into a database of its
// own (DB), so that its tables hold the folder's contribution and nothing else.
type Folder struct {
	DB     *duckdb.DB
	Source string
	Group  string
	Time   time.Time
	Now    func() time.Time
}

// Append writes every non-empty table of f.DB as a new load, then commits it. The Parquet files
// are written in the staging folder first, and moved (a local lake) or uploaded (S3) into the
// load's partitions; the commit record goes last.
func (l *Lake) Append(ctx context.Context, f Folder) (*Commit, error) {
	now := time.Now
	if f.Now != nil {
		now = f.Now
	}
	c := &Commit{Load: newLoadID(now()), Source: f.Source, ExportGroup: f.Group, ExportTime: f.Time.UTC(), Rows: map[string]int64{}}
	tables, err := f.DB.Tables(ctx)
	if err != nil {
		return nil, err
	}
	out, err := l.outbox(c.Load)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)
	for _, t := range tables {
		n, err := l.writeTable(ctx, f.DB.Conn(), t, c.Load, out)
		if err != nil {
			return nil, fmt.Errorf("write %s to the lake: %w", t, err)
		}
		if n > 0 {
			c.Rows[t] = n
		}
	}
	failpoint.Hit(FailBeforeCommit)
	c.CommittedAt = now().UTC()
	if err := l.commit(ctx, c); err != nil {
		return nil, err
	}
	failpoint.Hit(FailAfterCommit)
	return c, nil
}

// outbox creates the staging folder's folder for one load's files, named by the process (so
// that the next run removes it if this one is killed, as it does the staging database).
func (l *Lake) outbox(load string) (string, error) {
	dir := filepath.Join(l.scratch, strconv.Itoa(os.Getpid())+"-out-"+load)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create the lake's staging folder: %w", err)
	}
	return dir, nil
}

// newLoadID names a load: its start time, for people listing the folder, and 64 random bits, so
// that two writers never pick the same partition.
func newLoadID(at time.Time) string {
	var b [8]byte
	rand.Read(b[:])
	return at.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// partFileSize is the size DuckDB starts a new Parquet file at: large enough for engines'
// scans to be efficient, small enough to upload and to split work over.
const partFileSize = "256MB"

// rowGroupRows is the rows of a Parquet row group. DuckDB builds a row group's columns in
// single allocations: at its default 122,880 rows the resource column of DiagnosticReports with
// their reports inline (about 3 KB each) is one of 87 MiB, which failed a 1 GB load under a
// 256 MiB limit, and DocumentReferences failed a 10 GB load under 2 GiB. 16,384 rows are a few
// MB compressed, still large enough for engines' scans.
const rowGroupRows = "16384"

// writeTable writes one table's rows into Parquet files in out, moves them into the load's
// partition, and returns how many rows. An empty table writes nothing.
//
// The rows are not sorted: sorting a table of resources by id needs more memory than a small
// --memory-limit gives (the Observations of a 1 GB folder failed to sort under 256 MiB, on one
// thread too) and took a fifth of a load's time at 2 GiB; every view reads a table's files whole,
// picking each id's latest row with a window, so no engine relies on the order.
func (l *Lake) writeTable(ctx context.Context, conn *sql.Conn, table, load, out string) (int64, error) {
	cols, ok := lakeColumns(table)
	if !ok {
		return 0, fmt.Errorf("%s: not a table of etl-load's", table)
	}
	var n int64
	if err := conn.QueryRowContext(ctx, `SELECT count(*) FROM `+ident(table)).Scan(&n); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	_, err := l.copyOut(ctx, conn, `SELECT `+cols+` FROM `+ident(table), partitionKey(table, load), filepath.Join(out, table))
	return n, err
}

// copyOut writes query's rows as Parquet files in the local folder dir, puts each into the lake
// under the partition key prefix, and returns how many rows. No rows put no file.
func (l *Lake) copyOut(ctx context.Context, conn *sql.Conn, query, prefix, dir string) (int64, error) {
	q := `COPY (` + query + `) TO ` + quote(dir) +
		` (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE ` + rowGroupRows + `, FILE_SIZE_BYTES '` + partFileSize + `', FILENAME_PATTERN 'part-{i}')`
	res, err := conn.ExecContext(ctx, q)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil || n == 0 {
		return 0, errors.Join(err, os.RemoveAll(dir))
	}
	files, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	for _, e := range files {
		if err := l.objs.put(ctx, prefix+e.Name(), filepath.Join(dir, e.Name())); err != nil {
			return 0, err
		}
		failpoint.Hit(FailAfterUpload)
	}
	return n, nil
}

// commit writes c's record under the next free sequence number. The record is created only if
// no record has that number (a link in a folder, a conditional PUT in S3), so two writers that
// pick the same number never overwrite each other's commit: the loser takes the next number.
func (l *Lake) commit(ctx context.Context, c *Commit) error {
	seq, err := l.lastSeq(ctx)
	if err != nil {
		return err
	}
	for {
		seq++
		c.Seq = seq
		err := l.createCommit(ctx, c)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return err
	}
}

// createCommit writes c's record as number c.Seq, or fails with fs.ErrExist if that is taken.
func (l *Lake) createCommit(ctx context.Context, c *Commit) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	err = l.objs.create(ctx, keyOf(CommitsDir, commitName(c.Seq)), append(b, '\n'))
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("commit load %s: %w", c.Load, err)
	}
	return err
}

// commitName is a commit record's file name: the sequence number, zero-padded so that names sort
// as numbers.
func commitName(seq int64) string { return fmt.Sprintf("%012d.json", seq) }

// lastSeq is the highest committed sequence number, 0 for none.
func (l *Lake) lastSeq(ctx context.Context) (int64, error) {
	names, err := l.commitNames(ctx)
	if err != nil || len(names) == 0 {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSuffix(names[len(names)-1], ".json"), 10, 64)
}

// commitNames lists the commit records' names, in sequence order.
func (l *Lake) commitNames(ctx context.Context) ([]string, error) {
	keys, err := l.objs.list(ctx, CommitsDir+"/")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, k := range keys {
		name := strings.TrimPrefix(k, CommitsDir+"/")
		num, ok := strings.CutSuffix(name, ".json")
		if _, err := strconv.ParseInt(num, 10, 64); !ok || err != nil || len(num) != 12 {
			continue
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names, nil
}

// Commits reads the commit records, in sequence order.
func (l *Lake) Commits(ctx context.Context) ([]Commit, error) {
	names, err := l.commitNames(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Commit, 0, len(names))
	for _, name := range names {
		key := keyOf(CommitsDir, name)
		b, err := l.objs.get(ctx, key)
		if err != nil {
			return nil, err
		}
		var c Commit
		if err := json.Unmarshal(b, &c); err != nil {
			return nil, fmt.Errorf("%s: %w", l.objs.url(key), err)
		}
		out = append(out, c)
	}
	return out, nil
}

// syncPath makes a file's data, or a folder's entries, durable.
func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	return errors.Join(err, f.Close())
}

func ident(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

func quote(s string) string { return `'` + strings.ReplaceAll(s, `'`, `''`) + `'` }
