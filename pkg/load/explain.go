package load

import (
	"fmt"
	"slices"
	"strings"

	"github.com/bulkpipe/bulkpipe/pkg/resourcetype"
	"github.com/bulkpipe/bulkpipe/pkg/store"
	"github.com/bulkpipe/bulkpipe/pkg/store/duckdb"
)

// explain says why encounters are incomplete, one line per group and kind of gap: the linked
// tables never exported for the group (after a full export from a server that does not export
// some of the ten types, every encounter is incomplete, and "complete_encounter 0" alone explains
// nothing), and those exported only before the encounters were. gaps are sorted by group, as
// duckdb.DB.Gaps returns them. Only the groups given are explained, unless all.
func explain(gaps []duckdb.Gap, all bool, groups []string) []string {
	var lines []string
	for len(gaps) > 0 {
		n := 1
		for n < len(gaps) && gaps[n].Group == gaps[0].Group {
			n++
		}
		if all || slices.Contains(groups, gaps[0].Group) {
			lines = append(lines, explainGroup(gaps[0].Group, gaps[:n])...)
		}
		gaps = gaps[n:]
	}
	return lines
}

// explainGroup explains the gaps of one group.
func explainGroup(group string, gaps []duckdb.Gap) []string {
	var never, stale []string
	var nNever, nStale int64
	for _, g := range gaps {
		if g.Exported {
			stale, nStale = append(stale, g.Table), max(nStale, g.Encounters)
		} else {
			never, nNever = append(never, g.Table), max(nNever, g.Encounters)
		}
	}
	var lines []string
	switch {
	case len(never) == len(store.LinkedTables):
		lines = append(lines, fmt.Sprintf("group %q: %s incomplete: none of the ten linked tables (%s) was exported for the group yet; export them and load that folder",
			group, encounters(nNever), strings.Join(never, ", ")))
	case len(never) > 0:
		lines = append(lines, fmt.Sprintf("group %q: %s incomplete: %s never exported for the group (an encounter is complete once all ten linked tables are); export %s and load that folder too, or, if the server holds none, load the export folder again with --assume-complete %s",
			group, encounters(nNever), andList(never, "was", "were"), verb(never, "it", "them"), strings.Join(typeNames(never), ",")))
	}
	if len(stale) > 0 {
		lines = append(lines, fmt.Sprintf("group %q: %s waiting for a newer export of %s: %s exported only before those encounters were",
			group, encounters(nStale), strings.Join(stale, ", "), verb(stale, "it was", "they were")))
	}
	return lines
}

// typeNames spells tables as the resource types --assume-complete names (Observation for
// observation), keeping a table whose type it cannot tell.
func typeNames(tables []string) []string {
	types := make([]string, len(tables))
	for i, t := range tables {
		types[i] = t
		if s := resourcetype.Suggest(t); strings.EqualFold(s, t) {
			types[i] = s
		}
	}
	return types
}

// andList joins tables for a sentence, with the verb that agrees: "specimen was", "a, b were".
func andList(tables []string, one, many string) string {
	return strings.Join(tables, ", ") + " " + verb(tables, one, many)
}

// verb is one when there is one table, else many.
func verb(tables []string, one, many string) string {
	if len(tables) == 1 {
		return one
	}
	return many
}

// encounters counts encounters with the verb that agrees: "1 encounter is", "2 encounters are".
func encounters(n int64) string {
	if n == 1 {
		return "1 encounter is"
	}
	return fmt.Sprintf("%d encounters are", n)
}
