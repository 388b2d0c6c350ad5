package incremental

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/resourcetype"
	"github.com/bulkpipe/bulkpipe/pkg/store"
)

// FromRows picks the _since of want from the etl__completion rows of the database db: for each
// type asked for, the latest completion of the same level and Group; the _since is the earliest
// of those, so that no type misses a change. A row's time is already its export's
// transactionTime (or _until when earlier), and only complete exports have rows (docs/completion.md).
// A database records tables, not which types a server has, so want must name its types.
func FromRows(db string, rows []store.CompletionRow, want Want) (Choice, error) {
	latest := map[string]store.CompletionRow{} // table → its latest row in want's scope
	others := map[string]bool{}                // scopes that do have rows, for the message
	for _, r := range rows {
		if !sameScope(r, want) {
			others[scopeOfRow(r)] = true
			continue
		}
		if l, ok := latest[r.Table]; !ok || r.ExportTime.After(l.ExportTime) {
			latest[r.Table] = r
		}
	}
	if len(want.Types) == 0 {
		var have []string
		for table := range latest {
			have = append(have, typeName(table))
		}
		slices.Sort(have)
		hint := "name the types with --type"
		if len(have) > 0 {
			hint += " (complete there: " + strings.Join(have, ",") + ")"
		}
		return Choice{}, &UnusableError{Source: db, Reason: "a database records complete tables, not every type the server has, and this export asks for every type", Hint: hint}
	}
	var missing []string
	var since time.Time
	var used []store.CompletionRow
	for _, t := range want.Types {
		r, ok := latest[store.TableName(t)]
		if !ok {
			missing = append(missing, t)
			continue
		}
		used = append(used, r)
		if since.IsZero() || r.ExportTime.Before(since) {
			since = r.ExportTime
		}
	}
	if len(missing) > 0 {
		reason := fmt.Sprintf("no complete export of %s for %s", strings.Join(missing, ","), scopeText(want))
		if len(latest) == 0 && len(others) > 0 {
			reason += " (it has exports of " + strings.Join(slices.Sorted(maps.Keys(others)), ", ") + ")"
		}
		return Choice{}, &UnusableError{Source: db, Reason: reason, Hint: fullTypes(missing)}
	}
	return Choice{Since: since, Reason: reasonOf(db, want, used)}, nil
}

// reasonOf explains a _since from rows: one export's time, or the earliest of several.
func reasonOf(db string, want Want, used []store.CompletionRow) string {
	first := used[0]
	same := !slices.ContainsFunc(used, func(r store.CompletionRow) bool {
		return !r.ExportTime.Equal(first.ExportTime) || r.ExportURL != first.ExportURL
	})
	if same {
		from := ""
		if first.ExportURL != "" {
			from = ", " + first.ExportURL
		}
		return fmt.Sprintf("the transactionTime of the latest complete export in %s (same %s, %s%s)",
			db, scopeText(want), typesText(want.Types), from)
	}
	var parts []string
	for i, r := range used {
		parts = append(parts, want.Types[i]+" "+instant(r.ExportTime))
	}
	return fmt.Sprintf("the earliest of the latest complete exports in %s of each type (same %s: %s)",
		db, scopeText(want), strings.Join(parts, ", "))
}

// sameScope reports whether a row is of want's level and Group. The Group is the row's own (what
// etl-load recorded, --export-group included); its kickoff URL tells the level, which "" leaves
// open between system and Patient level. Rows whose load did not know the URL tell the Group only.
func sameScope(r store.CompletionRow, want Want) bool {
	if r.Group != want.Group {
		return false
	}
	if r.ExportURL == "" {
		return true
	}
	level, _ := scopeOf(r.ExportURL)
	return level == want.Level
}

func scopeOfRow(r store.CompletionRow) string {
	if r.ExportURL == "" {
		if r.Group == "" {
			return "system or Patient level"
		}
		return scopeName(bulk.LevelGroup, r.Group)
	}
	level, _ := scopeOf(r.ExportURL)
	return scopeName(level, r.Group)
}

// typeName is the resource type a table holds ("medicationrequest" → "MedicationRequest").
func typeName(table string) string {
	if s := resourcetype.Suggest(table); strings.EqualFold(s, table) {
		return s
	}
	return table
}
