package duckdb

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/failpoint"
	"github.com/bulkpipe/bulkpipe/pkg/store"
)

// rowsPerFile is how many rows go in one NDJSON file of the Cumulus layout: Cumulus ETL's default
// batch size, which is also what its output files hold.
const rowsPerFile = 200_000

// ExportParquet writes a snapshot of every table to out/<table>/<table>.parquet, for Athena,
// Trino or Spark (DESIGN.md §7). Each table is written to a temporary folder, then renamed into
// place, so a reader never sees half a table.
func (d *DB) ExportParquet(ctx context.Context, out string) error {
	return d.export(ctx, out, func(ctx context.Context, table, dir string) error {
		path := filepath.Join(dir, table+".parquet")
		// DuckDB's Parquet writer builds each row group outside memory_limit; 122,880 rows
		// (its default) of Observations are 160 MB, which failed under a 256 MiB limit.
		q := `COPY (SELECT * FROM ` + ident(table) + ` ORDER BY ` + orderBy(table) + `) TO '` + strings.ReplaceAll(path, "'", "''") + `' (FORMAT parquet, ROW_GROUP_SIZE 16384)`
		if _, err := d.conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		return nil
	})
}

// ExportNDJSON writes a snapshot of every table in Cumulus ETL's output layout, which Cumulus
// Library's DuckDB backend reads: out/<table>/<table>.NNN.ndjson. Resource tables hold the
// resources, one a line; etl__ tables hold objects of their columns, times as ISO 8601 strings
// (as Cumulus writes them).
func (d *DB) ExportNDJSON(ctx context.Context, out string) error {
	return d.export(ctx, out, func(ctx context.Context, table, dir string) error {
		if strings.HasPrefix(table, "etl__") {
			return d.writeRows(ctx, table, dir)
		}
		return d.writeResources(ctx, table, dir)
	})
}

// export runs write for every table into out/.<table>.tmp, then swaps it with out/<table>.
//
// It runs on one thread: sorting a table of resources by id, each of DuckDB's threads pins
// blocks of its own, and on two a 1 GB database's Observations failed to sort under a 256 MiB
// limit (on one it peaked at 351 MiB).
func (d *DB) export(ctx context.Context, out string, write func(ctx context.Context, table, dir string) error) (err error) {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if err := d.exec(ctx, `SET threads = 1`); err != nil {
		return err
	}
	defer func() {
		if rerr := d.exec(context.WithoutCancel(ctx), `RESET threads`); err == nil {
			err = rerr
		}
	}()
	tables, err := d.Tables(ctx)
	if err != nil {
		return err
	}
	for _, t := range tables {
		tmp := filepath.Join(out, "."+t+".tmp")
		if err := os.RemoveAll(tmp); err != nil {
			return err
		}
		if err := os.Mkdir(tmp, 0o755); err != nil {
			return err
		}
		if err := write(ctx, t, tmp); err != nil {
			os.RemoveAll(tmp)
			return err
		}
		if err := syncDir(tmp); err != nil {
			return err
		}
		failpoint.Hit("export.before-rename")
		final := filepath.Join(out, t)
		old := filepath.Join(out, "."+t+".old")
		if err := os.RemoveAll(old); err != nil {
			return err
		}
		if err := os.Rename(final, old); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := os.Rename(tmp, final); err != nil {
			return err
		}
		if err := os.RemoveAll(old); err != nil {
			return err
		}
	}
	return syncDir(out)
}

// ndjsonFiles writes numbered NDJSON files into dir, rowsPerFile lines each.
type ndjsonFiles struct {
	dir, table string
	n, rows    int
	f          *os.File
	w          *bufio.Writer
}

func (nf *ndjsonFiles) line(b []byte) error {
	if nf.f == nil || nf.rows == rowsPerFile {
		if err := nf.close(); err != nil {
			return err
		}
		f, err := os.Create(filepath.Join(nf.dir, fmt.Sprintf("%s.%03d.ndjson", nf.table, nf.n)))
		if err != nil {
			return err
		}
		nf.f, nf.w, nf.rows = f, bufio.NewWriterSize(f, 256<<10), 0
		nf.n++
	}
	nf.rows++
	nf.w.Write(b)
	return nf.w.WriteByte('\n')
}

// finish closes the last file; an empty table still gets an empty <table>.000.ndjson, so that a
// reader's glob finds the table.
func (nf *ndjsonFiles) finish() error {
	if nf.n == 0 {
		f, err := os.Create(filepath.Join(nf.dir, nf.table+".000.ndjson"))
		if err != nil {
			return err
		}
		return errors.Join(f.Sync(), f.Close())
	}
	return nf.close()
}

func (nf *ndjsonFiles) close() error {
	if nf.f == nil {
		return nil
	}
	f := nf.f
	nf.f = nil
	err := errors.Join(nf.w.Flush(), f.Sync())
	return errors.Join(err, f.Close())
}

// snapshotPage is how many resources one query of writeResources returns. The driver
// materializes a query's whole result outside memory_limit (a 1 GB database's Observations
// peaked at 857 MiB under a 256 MiB limit), so a table is read a page at a time.
const snapshotPage = 2048

// writeResources writes a table's resources in id order: sorted once into a temporary table
// (which spills), whose row ids are then that order, and read back a page at a time.
func (d *DB) writeResources(ctx context.Context, table, dir string) error {
	sorted := ident("snapshot_" + table)
	if err := d.exec(ctx, `CREATE OR REPLACE TEMP TABLE `+sorted+` AS
		SELECT resource::VARCHAR AS resource FROM `+ident(table)+` ORDER BY id`); err != nil {
		return err
	}
	defer d.exec(context.WithoutCancel(ctx), `DROP TABLE IF EXISTS temp.main.`+sorted)
	nf := &ndjsonFiles{dir: dir, table: table}
	defer nf.close()
	for start := int64(0); ; start += snapshotPage {
		n, err := d.writePage(ctx, nf, `temp.main.`+sorted, start)
		if err != nil {
			return err
		}
		if n < snapshotPage {
			return nf.finish()
		}
	}
}

// writePage writes the resources of sorted's rows start to start+snapshotPage-1, and says how
// many there were.
func (d *DB) writePage(ctx context.Context, nf *ndjsonFiles, sorted string, start int64) (int, error) {
	rows, err := d.conn.QueryContext(ctx, `SELECT resource FROM `+sorted+`
		WHERE rowid >= $1 AND rowid < $2 ORDER BY rowid`, start, start+snapshotPage)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var res string
		if err := rows.Scan(&res); err != nil {
			return n, err
		}
		if err := nf.line([]byte(res)); err != nil {
			return n, err
		}
		n++
	}
	return n, rows.Err()
}

// writeRows writes each row as a JSON object with the table's columns in order; times become
// ISO 8601 strings with an explicit offset.
func (d *DB) writeRows(ctx context.Context, table, dir string) error {
	rows, err := d.conn.QueryContext(ctx, `SELECT * FROM `+ident(table)+` ORDER BY `+orderBy(table))
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	nf := &ndjsonFiles{dir: dir, table: table}
	defer nf.close()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	// Cumulus ETL's completion tables hold strings only (cumulus_etl/completion/schema.py), ""
	// when there is nothing to say: Cumulus Library infers each table's schema from its first
	// row, so a null there types the column null and a later value breaks it.
	emptyForNull := table == "etl__completion" || table == "etl__completion_encounters"
	var b []byte
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		b = append(b[:0], '{')
		for i, c := range cols {
			if i > 0 {
				b = append(b, ',')
			}
			b, _ = appendJSON(b, c)
			b = append(b, ':')
			v := vals[i]
			switch t := v.(type) {
			case time.Time:
				v = store.FormatTime(t)
			case nil:
				if emptyForNull {
					v = ""
				}
			}
			if b, err = appendJSON(b, v); err != nil {
				return fmt.Errorf("%s.%s: %w", table, c, err)
			}
		}
		b = append(b, '}')
		if err := nf.line(b); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return nf.finish()
}

// orderBy makes snapshots deterministic: resource tables by id, etl__ tables by every column.
func orderBy(table string) string {
	if strings.HasPrefix(table, "etl__") {
		return "ALL"
	}
	return "id"
}

func appendJSON(b []byte, v any) ([]byte, error) {
	j, err := json.Marshal(v)
	return append(b, j...), err
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
