package lake

import "strings"

// column is one column of a lake table: its DuckDB type (as etl-load's tables have it) and its
// type in Hive DDL (Athena, Trino's Hive connector, Spark).
type column struct {
	name, duck, hive string
	key              bool // part of the order the files are written in
}

// resourceColumns are the columns of every resource table. The resource is written as text:
// Parquet has no JSON type that every engine reads, and the DuckDB views cast it back.
var resourceColumns = []column{
	{"id", "VARCHAR", "string", true},
	{"resource", "JSON", "string", false},
	{"export_group", "VARCHAR", "string", false},
	{"export_time", "TIMESTAMPTZ", "timestamp", false},
	{"source_file", "VARCHAR", "string", false},
}

// etlColumns are the columns of etl-load's bookkeeping tables, as its DuckDB schema defines
// them (a test checks the two agree).
var etlColumns = map[string][]column{
	"etl__completion": {
		{"table_name", "VARCHAR", "string", true},
		{"group_name", "VARCHAR", "string", true},
		{"export_time", "TIMESTAMPTZ", "timestamp", true},
		{"export_url", "VARCHAR", "string", false},
		{"etl_version", "VARCHAR", "string", false},
		{"etl_time", "TIMESTAMPTZ", "timestamp", false},
		{"excluded_resources", "VARCHAR", "string", false},
	},
	"etl__completion_encounters": {
		{"encounter_id", "VARCHAR", "string", true},
		{"group_name", "VARCHAR", "string", true},
		{"export_time", "TIMESTAMPTZ", "timestamp", false},
		{"excluded_resources", "VARCHAR", "string", false},
	},
	"etl__deleted": {
		{"table_name", "VARCHAR", "string", true},
		{"id", "VARCHAR", "string", true},
		{"export_group", "VARCHAR", "string", true},
		{"export_time", "TIMESTAMPTZ", "timestamp", true},
		{"source_file", "VARCHAR", "string", false},
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

// lakeColumns returns the select list and the order a table's rows are written in, or false for
// an etl__ table the lake does not know (a newer etl-load's).
func lakeColumns(table string) (cols, order string, ok bool) {
	if isETLTable(table) {
		if _, known := etlColumns[table]; !known {
			return "", "", false
		}
	}
	var sel, keys []string
	for _, c := range schemaOf(table) {
		if c.duck == "JSON" {
			sel = append(sel, ident(c.name)+"::VARCHAR AS "+ident(c.name))
		} else {
			sel = append(sel, ident(c.name))
		}
		if c.key {
			keys = append(keys, ident(c.name))
		}
	}
	return strings.Join(sel, ", "), strings.Join(keys, ", "), true
}
