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

// StagingDir is the lake's folder for the database a load stages a folder in: inside the lake
// (on its disk) but outside every table's location, so no engine reads it.
func (l *Lake) StagingDir() string { return filepath.Join(l.root, ".staging") }

// Append writes every non-empty table of f.Conn as a new load, then commits it.
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
	for _, t := range tables {
		n, err := l.writeTable(ctx, f.DB.Conn(), t, c.Load)
		if err != nil {
			return nil, fmt.Errorf("write %s to the lake: %w", t, err)
		}
		if n > 0 {
			c.Rows[t] = n
		}
	}
	failpoint.Hit(FailBeforeCommit)
	c.CommittedAt = now().UTC()
	if err := l.commit(c); err != nil {
		return nil, err
	}
	failpoint.Hit(FailAfterCommit)
	return c, nil
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

// writeTable writes one table's rows into the load's partition, in key order, and returns how
// many. An empty table writes nothing.
func (l *Lake) writeTable(ctx context.Context, conn *sql.Conn, table, load string) (int64, error) {
	cols, order, ok := lakeColumns(table)
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
	dir := l.loadDir(table, load)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return 0, err
	}
	q := `COPY (SELECT ` + cols + ` FROM ` + ident(table) + ` ORDER BY ` + order + `) TO ` + quote(dir) +
		` (FORMAT parquet, COMPRESSION zstd, FILE_SIZE_BYTES '` + partFileSize + `', FILENAME_PATTERN 'part-{i}')`
	if _, err := conn.ExecContext(ctx, q); err != nil {
		return 0, err
	}
	return n, syncTree(dir)
}

// syncTree makes the files of dir and dir itself durable, so that a commit never names a load
// whose files a crash could still lose.
func syncTree(dir string) error {
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return syncPath(path)
	})
	if err != nil {
		return err
	}
	return syncPath(filepath.Dir(dir))
}

func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	return errors.Join(err, f.Close())
}

// commit writes c's record under the next free sequence number. The record is written whole
// to a temporary name, then linked to its final one: a link, unlike a rename, fails when the
// name is taken, so two writers that pick the same number never overwrite each other's commit
// (the loser takes the next number).
func (l *Lake) commit(c *Commit) error {
	dir := filepath.Join(l.root, CommitsDir)
	seq, err := l.lastSeq()
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ".tmp-"+c.Load)
	defer os.Remove(tmp)
	for {
		seq++
		c.Seq = seq
		b, err := json.Marshal(c)
		if err != nil {
			return err
		}
		if err := writeSynced(tmp, append(b, '\n')); err != nil {
			return fmt.Errorf("write commit record: %w", err)
		}
		err = os.Link(tmp, filepath.Join(dir, commitName(seq)))
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("commit load %s: %w", c.Load, err)
		}
		return syncPath(dir)
	}
}

// commitName is a commit record's file name: the sequence number, zero-padded so that names sort
// as numbers.
func commitName(seq int64) string { return fmt.Sprintf("%012d.json", seq) }

// lastSeq is the highest committed sequence number, 0 for none.
func (l *Lake) lastSeq() (int64, error) {
	names, err := l.commitNames()
	if err != nil || len(names) == 0 {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSuffix(names[len(names)-1], ".json"), 10, 64)
}

// commitNames lists the commit records, in sequence order.
func (l *Lake) commitNames() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(l.root, CommitsDir))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		name := e.Name()
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
func (l *Lake) Commits() ([]Commit, error) {
	names, err := l.commitNames()
	if err != nil {
		return nil, err
	}
	out := make([]Commit, 0, len(names))
	for _, name := range names {
		path := filepath.Join(l.root, CommitsDir, name)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var c Commit
		if err := json.Unmarshal(b, &c); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, c)
	}
	return out, nil
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

func ident(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

func quote(s string) string { return `'` + strings.ReplaceAll(s, `'`, `''`) + `'` }
