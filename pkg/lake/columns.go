package lake

import "strings"

// column is one column of a lake table: its DuckDB type (as etl-load's tables have it) and its
// type in Hive DDL (Athena, Trino's Hive connector, Spark).
type column struct {
	name, duck, hive string
}

// resourceColumns are the columns of every resource table. The resource is written as text:
// Parquet has no JSON type that every engine reads, and the DuckDB views cast it back.
var resourceColumns = []column{
	{"id", "VARCHAR", "string"},
	{"resource", "JSON", "string"},
	{"export_group", "VARCHAR", "string"},
	{"export_time", "TIMESTAMPTZ", "timestamp"},
	{"source_file", "VARCHAR", "string"},
}

// etlColumns are the columns of etl-load's bookkeeping tables, as its DuckDB schema defines
// them (a test checks the two agree).
var etlColumns = map[string][]column{
	"etl__completion": {
		{"table_name", "VARCHAR", "string"},
		{"group_name", "VARCHAR", "string"},
		{"export_time", "TIMESTAMPTZ", "timestamp"},
		{"export_url", "VARCHAR", "string"},
		{"etl_version", "VARCHAR", "string"},
		{"etl_time", "TIMESTAMPTZ", "timestamp"},
		{"excluded_resources", "VARCHAR", "string"},
	},
	"etl__completion_encounters": {
		{"encounter_id", "VARCHAR", "string"},
		{"group_name", "VARCHAR", "string"},
		{"export_time", "TIMESTAMPTZ", "timestamp"},
		{"excluded_resources", "VARCHAR", "string"},
	},
	"etl__deleted": {
		{"table_name", "VARCHAR", "string"},
		{"id", "VARCHAR", "string"},
		{"export_group", "VARCHAR", "string"},
		{"export_time", "TIMESTAMPTZ", "timestamp"},
		{"source_file", "VARCHAR", "string"},
	},
}

// schemaOf returns a table's columns: a bookkeeping table's own, or a resource table's.
func schemaOf(table string) []column {
	if cols, ok := etlColumns[table]; ok {
		return cols
	}
	return resourceColumns
}

// isETLTable reports one of etl-load's bookkeeping tables.
func isETLTable(table string) bool { return strings.HasPrefix(table, "etl__") }

// lakeColumns returns the select list a table's rows are written with, or false for a table
// that is not etl-load's.
func lakeColumns(table string) (cols string, ok bool) {
	if isETLTable(table) {
		if _, known := etlColumns[table]; !known {
			return "", false
		}
	}
	var sel []string
	for _, c := range schemaOf(table) {
		if c.duck == "JSON" {
			sel = append(sel, ident(c.name)+"::VARCHAR AS "+ident(c.name))
		} else {
			sel = append(sel, ident(c.name))
		}
	}
	return strings.Join(sel, ", "), true
}
