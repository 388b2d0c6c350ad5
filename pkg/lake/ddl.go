package lake

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/bulkpipe/bulkpipe/pkg/store"
)

// The rules each view applies are etl-load's (its DuckDB merge and deletes):
//   - a resource table holds, per id, the row of the latest export; of loads of the same
//     export, the last committed one;
//   - an id deleted by an export at or after that row's export is absent (an older folder
//     loaded later does not bring it back);
//   - etl__deleted and etl__completion_encounters keep the first load's row per key, and
//     etl__completion one row per distinct completion (the first load's etl_version/etl_time).
//
// The views differ from the tables in one column only: source_file names the file of the last
// load holding the winning row, where the table keeps the first file that held an identical one.

// rawView is the view of every committed row of a table, with its load's sequence number.
func rawView(table string) string { return "lake__" + table }

// dedupe says how a bookkeeping table's rows of several loads collapse: the key its DuckDB
// table keeps unique, of which the first load's row counts.
var dedupe = map[string][]string{
	"etl__deleted":               {"table_name", "id", "export_group", "export_time"},
	"etl__completion":            {"table_name", "group_name", "export_time", "export_url", "excluded_resources"},
	"etl__completion_encounters": {"encounter_id", "group_name"},
}

// DuckDB returns the statements that define, in a DuckDB database, a view per table of the lake
// named as etl-load's tables (patient, observation, …, etl__completion, etl__deleted) and the
// completion views (complete_encounter, incomplete_encounter), reading the lake's Parquet files
// where they are (an s3:// lake through DuckDB's httpfs extension). Run them again after a load that adds a table.
func (l *Lake) DuckDB(ctx context.Context) ([]string, error) {
	tables, err := l.Tables(ctx)
	if err != nil {
		return nil, err
	}
	commits, err := l.commitNames(ctx)
	if err != nil {
		return nil, err
	}
	view := `CREATE OR REPLACE VIEW etl__commits AS SELECT NULL::BIGINT AS seq, NULL::VARCHAR AS load WHERE false`
	if len(commits) > 0 {
		view = `CREATE OR REPLACE VIEW etl__commits AS SELECT seq, load FROM read_json(` +
			quote(l.objs.url(keyOf(CommitsDir, "*.json"))) + `, format = 'newline_delimited', columns = {seq: 'BIGINT', load: 'VARCHAR'})`
	} else {
		tables = nil // no load is visible
	}
	return duckStatements(view, tables, func(table string) string { return l.objs.url(keyOf(table, "load=*", "*.parquet")) }), nil
}

// duckStatements are DuckDB's views given the view of the commits, the tables that have files,
// and where each table's files are (a glob).
func duckStatements(commitsView string, tables []string, glob func(table string) string) []string {
	stmts := []string{commitsView}
	// The completion views read these whether or not a load wrote them.
	all := slices.Clone(tables)
	for _, t := range []string{"encounter", "etl__completion", "etl__completion_encounters", "etl__deleted"} {
		if !slices.Contains(all, t) {
			all = append(all, t)
		}
	}
	slices.Sort(all)
	for _, t := range all {
		files := ""
		if slices.Contains(tables, t) {
			files = glob(t)
		}
		stmts = append(stmts, duckRaw(t, files))
	}
	// etl__deleted first: the resource views read it.
	stmts = append(stmts, duckView("etl__deleted"))
	for _, t := range all {
		if t != "etl__deleted" {
			stmts = append(stmts, duckView(t))
		}
	}
	return append(stmts, store.CompletionViews(store.DuckDBSQL)...)
}

// duckRaw defines rawView(table) over the table's Parquet files (the glob files) joined to the
// commits, or as an empty relation of the table's columns when it has no files ("").
func duckRaw(table, files string) string {
	cols := schemaOf(table)
	var sel []string
	for _, c := range cols {
		if files != "" {
			sel = append(sel, "t."+ident(c.name))
		} else {
			sel = append(sel, "NULL::"+c.duck+" AS "+ident(c.name))
		}
	}
	head := `CREATE OR REPLACE VIEW ` + ident(rawView(table)) + ` AS SELECT ` + strings.Join(sel, ", ")
	if files == "" {
		return head + `, NULL::BIGINT AS load_seq WHERE false`
	}
	return head + `, c.seq AS load_seq FROM read_parquet(` + quote(files) +
		`, hive_partitioning = true, hive_types = {'load': VARCHAR}) AS t JOIN etl__commits AS c ON c.load = t.load`
}

// duckView defines the view named as etl-load's table, applying its rules to rawView(table).
func duckView(table string) string {
	var names []string
	for _, c := range schemaOf(table) {
		if c.duck == "JSON" {
			names = append(names, ident(c.name)+"::JSON AS "+ident(c.name))
		} else {
			names = append(names, ident(c.name))
		}
	}
	return `CREATE OR REPLACE VIEW ` + ident(table) + ` AS ` + viewQuery(table, strings.Join(names, ", "))
}

// viewQuery is the SELECT of a table's view with the select list sel: standard SQL that DuckDB,
// Trino and Athena all run (row_number in a subquery; Trino has no QUALIFY).
func viewQuery(table, sel string) string { return viewQueryOver(table, sel, ident(rawView(table))) }

// viewQueryOver is viewQuery over the relation raw, which has the columns of rawView(table) that
// sel and the rules name (id, export_time, load_seq, or the bookkeeping table's key).
func viewQueryOver(table, sel, raw string) string {
	if key, ok := dedupe[table]; ok {
		return fmt.Sprintf(`SELECT %s FROM (SELECT r.*, row_number() OVER (PARTITION BY %s ORDER BY load_seq) AS rn FROM %s AS r) AS r WHERE rn = 1`,
			sel, identList(key), raw)
	}
	return fmt.Sprintf(`SELECT %s FROM (SELECT r.*, row_number() OVER (PARTITION BY id ORDER BY export_time DESC, load_seq DESC) AS rn FROM %s AS r) AS r
WHERE rn = 1 AND NOT EXISTS (SELECT 1 FROM etl__deleted AS d WHERE d.table_name = %s AND d.id = r.id AND d.export_time >= r.export_time)`,
		sel, raw, quote(table))
}

func identList(names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = ident(n)
	}
	return strings.Join(out, ", ")
}
