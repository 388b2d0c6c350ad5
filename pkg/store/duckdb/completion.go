package duckdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"

	"github.com/bulkpipe/bulkpipe/pkg/store"
	duckdb "github.com/duckdb/duckdb-go/v2"
)

// ErrNotStore means a DuckDB file has no etl__completion table: etl-load never loaded into it.
var ErrNotStore = errors.New("no etl__completion table (not a database etl-load wrote)")

// ReadCompletion returns the etl__completion rows of the database file at path, opened
// read-only: the reader changes nothing (no schema, no spill folder), and may run beside other
// readers. A database that etl-load is writing cannot be opened until it is done (DuckDB holds
// one writer's lock); the error says so as DuckDB does.
func ReadCompletion(ctx context.Context, path string) ([]store.CompletionRow, error) {
	// A read-only open of a missing file fails too, but with DuckDB's words; say it plainly.
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	c, err := duckdb.NewConnector(path+"?"+url.Values{"access_mode": {"read_only"}}.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("open %s read-only: %w", path, err)
	}
	db := sql.OpenDB(c)
	defer db.Close()
	defer c.Close()
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM information_schema.tables
		WHERE table_schema = 'main' AND table_name = 'etl__completion' AND table_catalog = current_database()`).Scan(&n); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if n == 0 {
		return nil, fmt.Errorf("%s: %w", path, ErrNotStore)
	}
	rows, err := db.QueryContext(ctx, `SELECT table_name, group_name, export_time, coalesce(export_url, '')
		FROM etl__completion ORDER BY export_time, table_name, group_name`)
	if err != nil {
		return nil, fmt.Errorf("read etl__completion of %s: %w", path, err)
	}
	defer rows.Close()
	var out []store.CompletionRow
	for rows.Next() {
		var r store.CompletionRow
		if err := rows.Scan(&r.Table, &r.Group, &r.ExportTime, &r.ExportURL); err != nil {
			return nil, fmt.Errorf("read etl__completion of %s: %w", path, err)
		}
		r.ExportTime = store.Micro(r.ExportTime)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read etl__completion of %s: %w", path, err)
	}
	return out, nil
}
