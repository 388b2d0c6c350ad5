package lake

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/bulkpipe/bulkpipe/pkg/store"
)

// Engines --print-ddl writes for.
const (
	EngineDuckDB = "duckdb"
	EngineAthena = "athena"
	EngineTrino  = "trino"
)

// Engines lists the engines DDL knows, in the order help text names them.
var Engines = []string{EngineDuckDB, EngineAthena, EngineTrino}

// Distributed says where Athena or Trino read the lake and in which schema its tables go.
type Distributed struct {
	Location string // the lake's URL as the engine reads it, such as s3://bucket/prefix
	Schema   string // Trino's schema of the tables (sync_partition_metadata names it); "" = default
}

// Athena returns the statements that register the lake in Athena: an external table per table's
// files (partitioned by load), the commit records as a JSON table, the partitions, and the views
// named as etl-load's tables. Rerun MSCK REPAIR TABLE (or all of it) after each load.
func (l *Lake) Athena(ctx context.Context, d Distributed) ([]string, error) {
	return l.distributed(ctx, d, athenaTable, func(t string) string { return "MSCK REPAIR TABLE `" + filesTable(t) + "`" })
}

// Trino returns the same for Trino's Hive connector: tables with external_location, partitions
// synced by system.sync_partition_metadata.
func (l *Lake) Trino(ctx context.Context, d Distributed) ([]string, error) {
	schema := d.Schema
	if schema == "" {
		schema = "default"
	}
	return l.distributed(ctx, d, trinoTable, func(t string) string {
		return "CALL system.sync_partition_metadata(" + quote(schema) + ", " + quote(filesTable(t)) + ", 'FULL')"
	})
}

// filesTable is the external table over one table's Parquet files, every load's.
func filesTable(table string) string { return "files__" + table }

func (l *Lake) distributed(ctx context.Context, d Distributed, create func(table, location string) string, sync func(table string) string) ([]string, error) {
	if d.Location == "" {
		return nil, fmt.Errorf("the lake's location as the engine reads it (such as s3://bucket/prefix) is needed")
	}
	loc := strings.TrimSuffix(d.Location, "/")
	tables, err := l.Tables(ctx)
	if err != nil {
		return nil, err
	}
	all := slices.Clone(tables)
	for _, t := range []string{"encounter", "etl__completion", "etl__completion_encounters", "etl__deleted"} {
		if !slices.Contains(all, t) {
			all = append(all, t)
		}
	}
	slices.Sort(all)
	stmts := []string{create(CommitsDir, loc+"/"+CommitsDir+"/")}
	for _, t := range all {
		stmts = append(stmts, create(t, loc+"/"+t+"/"), sync(t))
	}
	for _, t := range all {
		stmts = append(stmts, `CREATE OR REPLACE VIEW `+dq(rawView(t))+` AS SELECT f.*, c.seq AS load_seq FROM `+dq(filesTable(t))+
			` AS f JOIN `+dq(CommitsDir)+` AS c ON c."load" = f."load"`)
	}
	stmts = append(stmts, distributedView("etl__deleted"))
	for _, t := range all {
		if t != "etl__deleted" {
			stmts = append(stmts, distributedView(t))
		}
	}
	return append(stmts, store.CompletionViews(store.TrinoSQL)...), nil
}

// distributedView is the view named as etl-load's table: the resource stays text (query it with
// json_extract), every rule is the DuckDB view's.
func distributedView(table string) string {
	var names []string
	for _, c := range schemaOf(table) {
		names = append(names, dq(c.name))
	}
	return `CREATE OR REPLACE VIEW ` + dq(table) + ` AS ` + viewQuery(table, strings.Join(names, ", "))
}

// athenaTable is Athena's (Hive DDL) external table over a table's files, or the commit records.
func athenaTable(table, location string) string {
	if table == CommitsDir {
		return "CREATE EXTERNAL TABLE IF NOT EXISTS `" + CommitsDir + "` (`seq` bigint, `load` string)\n" +
			"ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'\nLOCATION " + quote(location)
	}
	var cols []string
	for _, c := range schemaOf(table) {
		cols = append(cols, "`"+c.name+"` "+c.hive)
	}
	return "CREATE EXTERNAL TABLE IF NOT EXISTS `" + filesTable(table) + "` (" + strings.Join(cols, ", ") + ")\n" +
		"PARTITIONED BY (`load` string)\nSTORED AS PARQUET\nLOCATION " + quote(location)
}

// trinoTable is the Hive connector's table over a table's files, or the commit records.
func trinoTable(table, location string) string {
	if table == CommitsDir {
		return `CREATE TABLE IF NOT EXISTS ` + dq(CommitsDir) + ` ("seq" bigint, "load" varchar)` +
			"\nWITH (format = 'JSON', external_location = " + quote(location) + ")"
	}
	var cols []string
	for _, c := range schemaOf(table) {
		typ := "varchar"
		if c.hive == "timestamp" {
			typ = "timestamp(6)"
		}
		cols = append(cols, dq(c.name)+" "+typ)
	}
	return `CREATE TABLE IF NOT EXISTS ` + dq(filesTable(table)) + ` (` + strings.Join(cols, ", ") + `, "load" varchar)` +
		"\nWITH (format = 'PARQUET', external_location = " + quote(location) + ", partitioned_by = ARRAY['load'])"
}

// dq quotes an identifier the standard way (Trino, Athena's views, DuckDB).
func dq(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }
