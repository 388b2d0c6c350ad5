// Package duckdb is the DuckDB backend of package store: one table per resource type, the
// Cumulus completion tables and the "Encounters first" views (DESIGN.md §7). It is the only
// package that links DuckDB (cgo, slow to link), so only the tools that need it pay for it.
package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/bulkpipe/bulkpipe/pkg/failpoint"
	"github.com/bulkpipe/bulkpipe/pkg/store"
	duckdb "github.com/duckdb/duckdb-go/v2"
)

// DB is an open DuckDB database file. It holds one connection: DuckDB's Appender and explicit
// transactions both belong to a connection, and a load is one transaction.
type DB struct {
	connector *duckdb.Connector
	db        *sql.DB
	conn      *sql.Conn
	drv       driver.Conn
	batch     *batch
	closed    bool
	spill     string // DuckDB's temp_directory, removed at Close
}

// schema creates the bookkeeping tables and the views. The encounter table exists from the start
// because the views read it.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS etl__completion (
		table_name VARCHAR NOT NULL,
		group_name VARCHAR NOT NULL,
		export_time TIMESTAMPTZ NOT NULL,
		export_url VARCHAR,
		etl_version VARCHAR,
		etl_time TIMESTAMPTZ,
		excluded_resources VARCHAR)`,
	// No PRIMARY KEY: its index (an ART, a row per encounter and group, kept forever) would grow
	// with every export outside memory_limit; completion keeps the pairs unique instead.
	`CREATE TABLE IF NOT EXISTS etl__completion_encounters (
		encounter_id VARCHAR NOT NULL,
		group_name VARCHAR NOT NULL,
		export_time TIMESTAMPTZ NOT NULL,
		excluded_resources VARCHAR)`,
	`CREATE TABLE IF NOT EXISTS etl__deleted (
		table_name VARCHAR NOT NULL,
		id VARCHAR NOT NULL,
		export_group VARCHAR NOT NULL,
		export_time TIMESTAMPTZ NOT NULL,
		source_file VARCHAR,
		PRIMARY KEY (table_name, id, export_group, export_time))`,
	createTable("encounter"),
	completionViews[0], completionViews[1], completionViews[2],
}

// completionViews are the completion rule's views in DuckDB's dialect.
var completionViews = store.CompletionViews(store.DuckDBSQL)

// createTable is the DDL of a resource table (DESIGN.md §7). The id has no PRIMARY KEY: DuckDB
// keeps such an index (an ART) in memory whole, so a table could not outgrow the memory limit;
// merge keeps ids unique instead, with joins that spill.
func createTable(table string) string {
	return `CREATE TABLE IF NOT EXISTS ` + ident(table) + ` (
		id VARCHAR,
		resource JSON,
		export_group VARCHAR,
		export_time TIMESTAMPTZ,
		source_file VARCHAR)`
}

// ident quotes a table name. Names come from store.ValidResourceType (letters and digits), so
// quoting is belt and braces.
func ident(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

// Open opens (or creates) the database file at path with the default Options.
func Open(ctx context.Context, path string) (*DB, error) {
	return OpenWith(ctx, path, Options{})
}

// OpenWith opens (or creates) the database file at path and brings its schema up to date. A
// file held by another process fails here, naming the lock. DuckDB then keeps within
// o.MemoryLimit, spilling to a folder of the database's own, which a process that died left
// behind is removed first.
func OpenWith(ctx context.Context, path string, o Options) (*DB, error) {
	spill, err := spillDir(path, o.TempDir)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	limit := o.MemoryLimit
	if limit == 0 {
		limit = DefaultMemoryLimit()
	}
	if limit < MinMemoryLimit {
		return nil, fmt.Errorf("open %s: memory limit %d bytes is below the minimum of %d", path, limit, MinMemoryLimit)
	}
	c, err := duckdb.NewConnector(path, nil)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	d := &DB{connector: c, db: sql.OpenDB(c)}
	d.db.SetMaxOpenConns(1)
	if d.conn, err = d.db.Conn(ctx); err != nil {
		d.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := d.conn.Raw(func(dc any) error {
		d.drv = dc.(driver.Conn)
		return nil
	}); err != nil {
		d.Close()
		return nil, err
	}
	// The connector holds the database's lock from here on, so a spill folder already there
	// belongs to a dead process.
	if err := removeSpill(spill); err != nil {
		d.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	d.spill = spill
	for _, q := range []string{
		`SET temp_directory = '` + strings.ReplaceAll(spill, "'", "''") + `'`,
		fmt.Sprintf(`SET memory_limit = '%dKiB'`, bufferShare(limit)>>10),
		// Memory DuckDB frees stays in its allocator's caches, outside memory_limit, until
		// these thresholds (128 MiB after a task, 512 MiB after a bulk free, by default).
		`SET allocator_flush_threshold = '32MiB'`,
		`SET allocator_bulk_deallocation_flush_threshold = '32MiB'`,
		// ...and without a thread of its own to return them, what one query frees stays there
		// until that thread runs another: on a 1 GB folder the process peaked 0.35 GiB above a
		// 2 GiB limit while one INSERT wrote a large table (0.13 GiB with this thread).
		`SET allocator_background_threads = true`,
		// Choosing a compression for a string column, DuckDB tries a dictionary on every row
		// group it writes: a hash set of up to 122,880 distinct strings (a resource each, about
		// 160 MB of Observations) held outside memory_limit, 0.3 GiB above a 256 MiB limit on a
		// 1 GB folder. Resources are unique, so FSST was chosen for them anyway; the columns
		// that repeat (export_group, source_file) take FSST or constants instead: the 1 GB
		// folder's database grew by 1 %.
		`SET disabled_compression_methods = 'dictionary,dict_fsst'`,
	} {
		if err := d.exec(ctx, q); err != nil {
			d.Close()
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
	}
	if err := d.exec(ctx, "BEGIN TRANSACTION"); err != nil {
		d.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	for _, q := range schema {
		if err := d.exec(ctx, q); err != nil {
			d.exec(context.WithoutCancel(ctx), "ROLLBACK")
			d.Close()
			return nil, fmt.Errorf("create schema in %s: %w", path, err)
		}
	}
	if err := d.exec(ctx, "COMMIT"); err != nil {
		d.Close()
		return nil, fmt.Errorf("create schema in %s: %w", path, err)
	}
	return d, nil
}

// Close closes the database; a batch still open is rolled back. Closing twice is a no-op.
func (d *DB) Close() error {
	if d.closed {
		return nil
	}
	d.closed = true
	if d.batch != nil {
		d.batch.Rollback()
	}
	var errs []error
	if d.conn != nil {
		errs = append(errs, d.conn.Close())
	}
	errs = append(errs, d.db.Close(), d.connector.Close())
	if d.spill != "" {
		// DuckDB removes its spill files as it closes; this removes the folder too.
		errs = append(errs, removeSpill(d.spill))
	}
	return errors.Join(errs...)
}

// Conn is the database's one connection, for queries (tests, exports). Do not use it while a
// batch is open.
func (d *DB) Conn() *sql.Conn { return d.conn }

func (d *DB) exec(ctx context.Context, q string, args ...any) error {
	_, err := d.conn.ExecContext(ctx, q, args...)
	return err
}

// Tables lists the base tables of the database (resource tables and etl__ tables), sorted.
func (d *DB) Tables(ctx context.Context) ([]string, error) {
	return d.column(ctx, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = 'main' AND table_type = 'BASE TABLE' AND table_catalog = current_database()
		ORDER BY table_name`)
}

// column runs a query of one text column and returns its values.
func (d *DB) column(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := d.conn.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Begin starts the transaction of one folder (store.Backend).
func (d *DB) Begin(ctx context.Context) (store.Batch, error) {
	if d.batch != nil {
		return nil, errors.New("a load is already in progress")
	}
	if err := d.exec(ctx, "BEGIN TRANSACTION"); err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	d.batch = &batch{d: d, stages: map[string]*duckdb.Appender{}}
	return d.batch, nil
}

// batch stages a folder in temporary tables, one per resource table plus one for deletes, through
// DuckDB's Appender (the fast path: no SQL per row), and merges them at Commit.
type batch struct {
	d       *DB
	stages  map[string]*duckdb.Appender // table → appender on temp.stage_<table>
	deletes *duckdb.Appender
	seq     int64
	done    bool
	// last is the appender rows went to last, holding pending bytes that it has not yet
	// flushed into its table.
	last    *duckdb.Appender
	pending int
}

// appendFlushBytes bounds what an Appender holds before it is flushed into its table. DuckDB's
// Appender buffers up to 204,800 rows (hundreds of MB of resources) in memory that its
// memory_limit does not count; flushed, the rows are in a table, which spills.
const appendFlushBytes = 8 << 20

// appendRow appends one row through a, flushing the appender rows went to before (so that at
// most one holds unflushed rows) and a itself every appendFlushBytes.
func (b *batch) appendRow(a *duckdb.Appender, size int, row ...driver.Value) error {
	if a != b.last {
		if err := b.flush(); err != nil {
			return err
		}
		b.last = a
	}
	if err := a.AppendRow(row...); err != nil {
		return err
	}
	if b.pending += size; b.pending >= appendFlushBytes {
		return b.flush()
	}
	return nil
}

func (b *batch) flush() error {
	if b.last == nil || b.pending == 0 {
		return nil
	}
	b.pending = 0
	return b.last.Flush()
}

func stageName(table string) string { return "stage_" + table }

func (b *batch) appender(ctx context.Context, name, cols string) (*duckdb.Appender, error) {
	if err := b.d.exec(ctx, `CREATE TEMP TABLE `+ident(name)+` (`+cols+`)`); err != nil {
		return nil, err
	}
	return duckdb.NewAppender(b.d.drv, "temp", "main", name)
}

// Add stages one resource; seq orders duplicates so the last one of the folder wins.
func (b *batch) Add(table, id string, resource []byte, sourceFile string) error {
	a := b.stages[table]
	if a == nil {
		var err error
		a, err = b.appender(context.Background(), stageName(table),
			`seq BIGINT, id VARCHAR, resource VARCHAR, source_file VARCHAR`)
		if err != nil {
			return fmt.Errorf("stage %s: %w", table, err)
		}
		b.stages[table] = a
	}
	b.seq++
	if err := b.appendRow(a, len(id)+len(resource)+len(sourceFile), b.seq, id, resource, sourceFile); err != nil {
		return fmt.Errorf("stage %s/%s: %w", table, id, err)
	}
	return nil
}

// Delete stages one delete entry.
func (b *batch) Delete(table, id, sourceFile string) error {
	if b.deletes == nil {
		var err error
		b.deletes, err = b.appender(context.Background(), "stage__deleted",
			`seq BIGINT, table_name VARCHAR, id VARCHAR, source_file VARCHAR`)
		if err != nil {
			return fmt.Errorf("stage deletes: %w", err)
		}
	}
	b.seq++
	return b.appendRow(b.deletes, len(table)+len(id)+len(sourceFile), b.seq, table, id, sourceFile)
}

// Existing returns those of ids that table holds (committed rows: the batch's own are staged).
func (b *batch) Existing(ctx context.Context, table string, ids []string) ([]string, error) {
	if len(ids) == 0 || !store.ValidResourceType(table) {
		return nil, nil
	}
	var n int
	if err := b.d.conn.QueryRowContext(ctx, `SELECT count(*) FROM information_schema.tables
		WHERE table_schema = 'main' AND table_name = $1 AND table_catalog = current_database()`, table).Scan(&n); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	rows, err := b.d.conn.QueryContext(ctx, `SELECT id FROM `+ident(table)+` WHERE list_contains($1::VARCHAR[], id) ORDER BY id`, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// Rollback discards the batch.
func (b *batch) Rollback() error {
	if b.done {
		return nil
	}
	b.done = true
	b.d.batch = nil
	var errs []error
	for _, a := range b.stages {
		errs = append(errs, a.Close())
	}
	if b.deletes != nil {
		errs = append(errs, b.deletes.Close())
	}
	errs = append(errs, b.d.exec(context.Background(), "ROLLBACK"))
	return errors.Join(errs...)
}

// Commit merges the folder into the database in its one transaction.
func (b *batch) Commit(ctx context.Context, p store.Plan) (err error) {
	if b.done {
		return errors.New("batch already finished")
	}
	defer func() {
		if err != nil {
			b.Rollback()
		}
	}()
	for t, a := range b.stages {
		if err := a.Close(); err != nil {
			return fmt.Errorf("stage %s: %w", t, err)
		}
	}
	if b.deletes != nil {
		if err := b.deletes.Close(); err != nil {
			return fmt.Errorf("stage deletes: %w", err)
		}
	}
	failpoint.Hit("load.after-stage")

	staged := make([]string, 0, len(b.stages))
	for t := range b.stages {
		staged = append(staged, t)
	}
	slices.Sort(staged)
	tables := slices.Concat(p.Tables, staged)
	slices.Sort(tables)
	for _, t := range slices.Compact(tables) {
		if err := b.d.exec(ctx, createTable(t)); err != nil {
			return fmt.Errorf("create table %s: %w", t, err)
		}
	}
	for _, t := range staged {
		if err := b.merge(ctx, t, p); err != nil {
			return fmt.Errorf("merge %s: %w", t, err)
		}
		failpoint.Hit("load.after-merge")
	}
	if b.deletes != nil {
		if err := b.applyDeletes(ctx, p); err != nil {
			return err
		}
	}
	if err := b.completion(ctx, p); err != nil {
		return err
	}
	for _, t := range staged {
		if err := b.d.exec(ctx, `DROP TABLE temp.main.`+ident(stageName(t))); err != nil {
			return err
		}
	}
	if b.deletes != nil {
		if err := b.d.exec(ctx, `DROP TABLE temp.main.stage__deleted`); err != nil {
			return err
		}
	}
	failpoint.Hit("load.before-commit")
	if err := b.d.exec(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	b.done = true
	b.d.batch = nil
	failpoint.Hit("load.after-commit")
	return nil
}

// merge upserts one staged table: the folder's last row per id, unless a delete at least as new
// is recorded (an older folder loaded later must not resurrect it); an existing row is replaced
// only by a row from a later export, or from the same export when it differs (so a reload
// rewrites nothing).
//
// It is set-based, in statements whose aggregates and hash joins DuckDB spills to disk, so memory
// stays bounded whatever the sizes of the folder and of the table (an ON CONFLICT upsert needs an
// index held in memory whole): the folder's rows are picked into a temporary table, the rows they
// replace are deleted, and the picked rows whose id is then absent are inserted, which keeps ids
// unique without an index. Joins are written as SEMI and ANTI joins: DuckDB plans a correlated
// NOT EXISTS with filters as a "delim join", which holds its whole left side in memory.
//
// Without an index, finding the table's rows of the folder's ids means reading the table's id
// column, the one part of a merge that grows with the database. It is read once: the rows found
// (at most the folder's size) are kept with their row ids, which the delete and the insert use
// instead of reading the column again. Each join hashes the folder's side.
func (b *batch) merge(ctx context.Context, table string, p store.Plan) error {
	t := ident(table)
	stage := `temp.main.` + ident(stageName(table))
	pick := `temp.main.` + ident("pick_"+table)
	hit := `temp.main.` + ident("hit_"+table)
	steps := []mergeStep{
		{"pick the folder's rows", `CREATE TEMP TABLE ` + ident("pick_"+table) + ` AS
		SELECT s.id, s.resource::JSON AS resource, s.source_file FROM ` + stage + ` AS s
		SEMI JOIN (SELECT max(seq) AS seq FROM ` + stage + ` GROUP BY id) AS l ON l.seq = s.seq
		ANTI JOIN (SELECT id FROM etl__deleted WHERE table_name = $1 AND export_time >= $2) AS d ON d.id = s.id`,
			[]any{table, p.ExportTime}},
		{"find the rows of the folder's ids", `CREATE TEMP TABLE ` + ident("hit_"+table) + ` AS
		SELECT t.rowid AS row_id, t.id, t.export_time FROM ` + t + ` AS t
		SEMI JOIN ` + pick + ` AS s ON s.id = t.id`, nil},
		// Only ids: the usual case, a later export, compares no resources.
		{"delete older rows", `DELETE FROM ` + t + `
		WHERE rowid IN (SELECT row_id FROM ` + hit + ` WHERE export_time < $1)`, []any{p.ExportTime}},
	}
	if err := b.run(ctx, steps); err != nil {
		return err
	}
	// Rows of the same export (a reload) are replaced only when they differ: the join of whole
	// resources, over the whole table, runs only when the folder's ids found some.
	var same bool
	if err := b.d.conn.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM `+hit+` WHERE export_time = $1)`, p.ExportTime).Scan(&same); err != nil {
		return fmt.Errorf("look for rows of the same export: %w", err)
	}
	// The rows left in the way of the folder's are the newer ones, which the hits hold...
	insert := mergeStep{"insert", `INSERT INTO ` + t + ` (id, resource, export_group, export_time, source_file)
		SELECT s.id, s.resource, $1, $2, s.source_file FROM ` + pick + ` AS s
		ANTI JOIN (SELECT id FROM ` + hit + ` WHERE export_time > $2) AS t ON t.id = s.id`, []any{p.Group, p.ExportTime}}
	if same {
		// ...and, on a reload, the unchanged rows of the same export.
		steps = []mergeStep{{"delete changed rows", `DELETE FROM ` + t + ` AS t USING ` + pick + ` AS s
		WHERE t.id = s.id AND t.export_time = $2
			AND (s.resource::VARCHAR <> t.resource::VARCHAR OR t.export_group <> $1)`, []any{p.Group, p.ExportTime}}}
		insert.q = `INSERT INTO ` + t + ` (id, resource, export_group, export_time, source_file)
		SELECT s.id, s.resource, $1, $2, s.source_file FROM ` + pick + ` AS s
		ANTI JOIN ` + t + ` AS t ON t.id = s.id`
	} else {
		steps = nil
	}
	return b.run(ctx, append(steps, insert, mergeStep{"drop", `DROP TABLE ` + pick, nil}, mergeStep{"drop", `DROP TABLE ` + hit, nil}))
}

// mergeStep is one statement of a merge, named for its error.
type mergeStep struct {
	name string
	q    string
	args []any
}

// run executes steps in order.
func (b *batch) run(ctx context.Context, steps []mergeStep) error {
	for _, st := range steps {
		if err := b.d.exec(ctx, st.q, st.args...); err != nil {
			return fmt.Errorf("%s: %w", st.name, err)
		}
	}
	return nil
}

// applyDeletes records the folder's deletes in etl__deleted and removes rows that are not newer
// than the delete. An id the same folder also exports is kept: the output is the resource as of
// the export, so it was re-created after the delete.
func (b *batch) applyDeletes(ctx context.Context, p store.Plan) error {
	rows, err := b.d.conn.QueryContext(ctx, `SELECT DISTINCT table_name FROM temp.main.stage__deleted ORDER BY 1`)
	if err != nil {
		return err
	}
	var tables []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, table := range tables {
		if !store.ValidResourceType(table) {
			continue
		}
		keep := `TRUE`
		if _, ok := b.stages[table]; ok {
			keep = `s.id NOT IN (SELECT id FROM temp.main.` + ident(stageName(table)) + `)`
		}
		if err := b.d.exec(ctx, createTable(table)); err != nil {
			return err
		}
		q := `INSERT INTO etl__deleted (table_name, id, export_group, export_time, source_file)
		SELECT s.table_name, s.id, $1, $2, s.source_file
		FROM (SELECT * FROM temp.main.stage__deleted WHERE table_name = $3
			QUALIFY row_number() OVER (PARTITION BY id ORDER BY seq DESC) = 1) AS s
		WHERE ` + keep + `
		ON CONFLICT DO NOTHING`
		if err := b.d.exec(ctx, q, p.Group, p.ExportTime, table); err != nil {
			return fmt.Errorf("record deletes of %s: %w", table, err)
		}
		q = `DELETE FROM ` + ident(table) + ` AS t
		WHERE t.export_time <= $1
			AND t.id IN (SELECT s.id FROM temp.main.stage__deleted AS s WHERE s.table_name = $2 AND ` + keep + `)`
		if err := b.d.exec(ctx, q, p.ExportTime, table); err != nil {
			return fmt.Errorf("delete from %s: %w", table, err)
		}
	}
	return nil
}

// completion writes the folder's etl__completion rows (one per table, skipped when the same
// export was already recorded, so a reload adds nothing) and the first export time of each of
// its encounters per group (never overwritten).
func (b *batch) completion(ctx context.Context, p store.Plan) error {
	for _, t := range p.Completion {
		q := `INSERT INTO etl__completion
		SELECT $1, $2, $3, NULLIF($4, ''), $5, $6, NULLIF($7, '')
		WHERE NOT EXISTS (SELECT 1 FROM etl__completion
			WHERE table_name = $1 AND group_name = $2 AND export_time = $3
			AND export_url IS NOT DISTINCT FROM NULLIF($4, '')
			AND excluded_resources IS NOT DISTINCT FROM NULLIF($7, ''))`
		if err := b.d.exec(ctx, q, t, p.Group, p.CompletionTime, p.ExportURL, p.ETLVersion, p.ETLTime, p.Excluded); err != nil {
			return fmt.Errorf("record completion of %s: %w", t, err)
		}
	}
	if _, ok := b.stages["encounter"]; ok {
		// An anti-join, which spills, rather than ON CONFLICT, which needs the index: a
		// database made before the key was dropped still has it, and nothing conflicts.
		q := `INSERT INTO etl__completion_encounters
		SELECT s.id, $1, $2, NULLIF($3, '') FROM (SELECT DISTINCT id FROM temp.main.stage_encounter) AS s
		ANTI JOIN (SELECT encounter_id FROM etl__completion_encounters WHERE group_name = $1) AS e
			ON e.encounter_id = s.id`
		if err := b.d.exec(ctx, q, p.Group, p.CompletionTime, p.Excluded); err != nil {
			return fmt.Errorf("record encounters: %w", err)
		}
	}
	return nil
}

// Count is the number of rows of one table or view.
type Count struct {
	Name string
	Rows int64
}

// Summary counts the rows of every table, then of the complete_encounter and
// incomplete_encounter views: what a user checks first after a load.
func (d *DB) Summary(ctx context.Context) ([]Count, error) {
	tables, err := d.Tables(ctx)
	if err != nil {
		return nil, err
	}
	var out []Count
	for _, t := range append(tables, "complete_encounter", "incomplete_encounter") {
		var n int64
		// Names come from information_schema or are our own view names; quoting keeps any
		// table name a resource type could produce a single identifier.
		if err := d.conn.QueryRowContext(ctx, `SELECT count(*) FROM "`+strings.ReplaceAll(t, `"`, `""`)+`"`).Scan(&n); err != nil {
			return nil, fmt.Errorf("count %s: %w", t, err)
		}
		out = append(out, Count{t, n})
	}
	return out, nil
}

// Gap is one reason why encounters of a group are incomplete: a linked table they wait for.
type Gap struct {
	Group string
	Table string
	// Encounters counts the group's incomplete encounters that wait for Table.
	Encounters int64
	// Exported is set when Table has a completion row in the group, only older than those
	// encounters (a newer export of it resolves the gap); unset, it was never exported for
	// the group, as when a server does not export the type at all.
	Exported bool
}

// Gaps explains the incomplete_encounter view, per group and linked table, sorted: what a user
// who sees "complete_encounter 0" needs to know next. With groups, only those groups' gaps are
// returned.
//
// The view weighs every tracked encounter against every linked table, which takes seconds per
// 100,000 encounters: after each load that would cost in proportion to the database, not to the
// folder. So the groups are first tested cheaply (mayBeIncomplete) and the view is read only when
// one of them may have an incomplete encounter.
func (d *DB) Gaps(ctx context.Context, groups ...string) ([]Gap, error) {
	suspect, err := d.mayBeIncomplete(ctx, groups)
	if err != nil {
		return nil, fmt.Errorf("explain incomplete encounters: %w", err)
	}
	if len(suspect) == 0 {
		return nil, nil
	}
	return d.viewGaps(ctx, suspect)
}

// viewGaps reads the gaps of groups from the completion views.
func (d *DB) viewGaps(ctx context.Context, groups []string) ([]Gap, error) {
	q := `WITH waiting AS (
		SELECT DISTINCT ece.group_name, m.table_name, c.encounter_id
		FROM etl__encounter_completion AS c,
			unnest(string_split(c.missing_tables, ',')) AS m(table_name),
			etl__completion_encounters AS ece
		WHERE NOT c.is_complete AND ece.encounter_id = c.encounter_id),
	exported AS (SELECT DISTINCT group_name, table_name FROM etl__completion)
	SELECT w.group_name, w.table_name, count(*), x.table_name IS NOT NULL
	FROM waiting AS w LEFT JOIN exported AS x USING (group_name, table_name)
	WHERE list_contains($1::VARCHAR[], w.group_name)
	GROUP BY ALL ORDER BY 1, 2`
	rows, err := d.conn.QueryContext(ctx, q, groups)
	if err != nil {
		return nil, fmt.Errorf("explain incomplete encounters: %w", err)
	}
	defer rows.Close()
	var out []Gap
	for rows.Next() {
		var g Gap
		if err := rows.Scan(&g.Group, &g.Table, &g.Encounters, &g.Exported); err != nil {
			return nil, fmt.Errorf("explain incomplete encounters: %w", err)
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// mayBeIncomplete returns those of groups (every group when none is given) that may hold an
// incomplete encounter, reading only etl__completion_encounters' group and time columns and
// etl__completion. A group whose every linked table has a completion row at or after the latest
// export time of the group's encounters holds none: each of its encounters has, in that group,
// a row at or before that time, hence an earliest time no later than each table's completion.
// Excluded tables are not considered, which can only make a group suspect, never clear one.
func (d *DB) mayBeIncomplete(ctx context.Context, groups []string) ([]string, error) {
	filter := `TRUE`
	var args []any
	if len(groups) > 0 {
		filter, args = `list_contains($1::VARCHAR[], group_name)`, []any{groups}
	}
	q := `WITH enc AS (
		SELECT group_name, max(export_time) AS latest FROM etl__completion_encounters
		WHERE ` + filter + ` GROUP BY group_name),
	done AS (
		SELECT e.group_name, count(DISTINCT c.table_name) AS tables
		FROM enc AS e JOIN etl__completion AS c
			ON c.group_name = e.group_name AND c.export_time >= e.latest
		WHERE c.table_name IN ('` + strings.Join(store.LinkedTables, "', '") + `')
		GROUP BY e.group_name)
	SELECT e.group_name FROM enc AS e LEFT JOIN done AS d USING (group_name)
	WHERE coalesce(d.tables, 0) < ` + fmt.Sprint(len(store.LinkedTables)) + `
	ORDER BY 1`
	return d.column(ctx, q, args...)
}
