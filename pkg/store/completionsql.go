package store

import "strings"

// SQLDialect holds the few functions the completion views spell differently per engine; the rule
// itself (CompletionViews) has one text.
type SQLDialect struct {
	// ExcludedList turns an encounter's excluded_resources rows (a GROUP BY's column) into one
	// list of distinct table names.
	ExcludedList string
	// ListContains tests that list holds an element: a format with the list, then the element.
	ListContains string
	// JoinedTables aggregates table_name into one comma-separated string in name order.
	JoinedTables string
}

// DuckDBSQL is DuckDB's dialect; TrinoSQL is Trino's and Athena's (engine version 3).
var (
	DuckDBSQL = SQLDialect{
		ExcludedList: `list_distinct(flatten(list(string_split(coalesce(excluded_resources, ''), ','))))`,
		ListContains: `list_contains(%s, %s)`,
		JoinedTables: `string_agg(table_name, ',' ORDER BY table_name)`,
	}
	TrinoSQL = SQLDialect{
		ExcludedList: `array_distinct(flatten(array_agg(split(coalesce(excluded_resources, ''), ','))))`,
		ListContains: `contains(%s, %s)`,
		JoinedTables: `array_join(array_agg(table_name ORDER BY table_name), ',')`,
	}
)

// CompletionViews are the views of the completion rule over etl__completion,
// etl__completion_encounters and encounter, in creation order, in dialect d.
//
// etl__encounter_completion is Cumulus Library's rule ("Encounters first"), one row per tracked
// encounter: its earliest export time over all its groups, and the linked tables that lack a
// completion row in one of its groups at or after that time (instants compared as instants). A
// table listed in excluded_resources of the encounter's rows is not waited for: the site said it
// never exports it. Untracked encounters have no row there and count as complete.
// etl__completion is a growing history, so it is first reduced to the latest time per group and
// table (a row at or after the encounter's time exists iff the latest one is), which keeps the
// join to a few rows per encounter.
func CompletionViews(d SQLDialect) []string {
	linked := make([]string, len(LinkedTables))
	for i, t := range LinkedTables {
		linked[i] = "('" + t + "')"
	}
	contains := strings.NewReplacer("%s, %s", "t.excluded, l.table_name").Replace(d.ListContains)
	return []string{`CREATE OR REPLACE VIEW etl__encounter_completion AS
WITH linked(table_name) AS (VALUES ` + strings.Join(linked, ", ") + `),
tracked AS (
	SELECT encounter_id, min(export_time) AS earliest,
		` + d.ExcludedList + ` AS excluded
	FROM etl__completion_encounters
	GROUP BY encounter_id),
latest AS (
	SELECT group_name, table_name, max(export_time) AS export_time
	FROM etl__completion WHERE table_name IN (SELECT table_name FROM linked)
	GROUP BY group_name, table_name),
satisfied AS (
	SELECT ece.encounter_id, c.table_name
	FROM etl__completion_encounters AS ece
	JOIN tracked AS t ON t.encounter_id = ece.encounter_id
	JOIN latest AS c ON c.group_name = ece.group_name AND c.export_time >= t.earliest
	UNION
	SELECT t.encounter_id, l.table_name
	FROM tracked AS t JOIN linked AS l ON ` + contains + `),
missing AS (
	SELECT t.encounter_id, l.table_name FROM tracked AS t CROSS JOIN linked AS l
	EXCEPT
	SELECT encounter_id, table_name FROM satisfied),
missing_list AS (
	SELECT encounter_id, ` + d.JoinedTables + ` AS missing_tables
	FROM missing GROUP BY encounter_id)
SELECT t.encounter_id, t.earliest AS export_time, m.missing_tables IS NULL AS is_complete, m.missing_tables
FROM tracked AS t LEFT JOIN missing_list AS m ON m.encounter_id = t.encounter_id`,
		`CREATE OR REPLACE VIEW complete_encounter AS
SELECT e.* FROM encounter AS e
WHERE NOT EXISTS (SELECT 1 FROM etl__encounter_completion AS c
	WHERE c.encounter_id = e.id AND NOT c.is_complete)`,
		`CREATE OR REPLACE VIEW incomplete_encounter AS
SELECT e.* FROM encounter AS e
JOIN etl__encounter_completion AS c ON c.encounter_id = e.id
WHERE NOT c.is_complete`,
	}
}
