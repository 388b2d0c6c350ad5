package incremental

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/store"
)

// FromFolder picks the _since of want from an export folder: its export must have finished
// downloading (export_complete in its log), be of the same level and Group, and be complete —
// as etl-load would record it in etl__completion — for every type want asks for. The _since is
// that export's transactionTime, or its _until when earlier (what it proves nothing after).
func FromFolder(dir string, want Want) (Choice, error) {
	unusable := func(reason, hint string) (Choice, error) {
		return Choice{}, &UnusableError{Source: dir, Reason: reason, Hint: hint}
	}
	logPath, err := exportdir.FindLog(dir)
	if errors.Is(err, exportdir.ErrNoLog) {
		return unusable("it has no export log (log.ndjson), so no transactionTime", hintFull)
	} else if err != nil {
		return Choice{}, fmt.Errorf("--since-from: %w", err)
	}
	exp, err := exportdir.ReadLog(logPath)
	if errors.Is(err, exportdir.ErrNoKickoff) {
		return unusable(logPath+" records no kickoff", hintFull)
	} else if err != nil {
		return Choice{}, fmt.Errorf("--since-from: %w", err)
	}
	if !slices.ContainsFunc(exp.Events, func(e exportdir.Event) bool { return e.EventID == exportdir.EventExportComplete }) {
		return unusable("its download did not finish (no export_complete in "+logPath+")",
			"finish it (rerun bulk-poll | bulk-fetch on it) and load it, or "+hintFull)
	}
	if !exp.HasTime {
		return unusable(logPath+" has no transactionTime", hintFull)
	}
	level, group := scopeOf(exp.ExportURL)
	if level != want.Level || group != want.Group {
		return unusable(fmt.Sprintf("it is an export of %s, not %s", scopeName(level, group), scopeName(want.Level, want.Group)),
			"an incremental export follows one of the same Group: "+hintFull)
	}
	files, err := exportdir.Discover(dir)
	if err != nil {
		return Choice{}, fmt.Errorf("--since-from: %w", err)
	}
	var present []string
	for _, f := range files {
		if f.ItemType == exportdir.ItemOutput && !slices.Contains(present, f.ResourceType) {
			present = append(present, f.ResourceType)
		}
	}
	plan, err := store.PlanCompletion(store.Export{Group: exp.Group, Time: exp.TransactionTime, URL: exp.ExportURL,
		RequestParameters: exp.RequestParameters}, present)
	if err != nil {
		return Choice{}, fmt.Errorf("--since-from %s: %w", logPath, err)
	}
	earlier := requestedTypes(exp.RequestParameters)
	if reason, hint := uncovered(plan, earlier, want.Types); reason != "" {
		return unusable(reason, hint)
	}
	what := "transactionTime"
	if plan.Time.Before(store.Micro(exp.TransactionTime)) {
		what = "_until (earlier than its transactionTime)"
	}
	return Choice{Since: plan.Time, Reason: fmt.Sprintf("the %s of the export in %s (complete, same %s, %s)",
		what, dir, scopeText(want), typesText(want.Types))}, nil
}

// uncovered says why the earlier export (its completion plan, and the _type it asked for) does
// not cover the types wanted now, and what to do; "" when it does.
func uncovered(plan store.Completion, earlier, wanted []string) (reason, hint string) {
	skipped := map[string]string{}
	for _, s := range plan.Skipped {
		skipped[s.Table] = s.Reason
	}
	if len(wanted) == 0 {
		if len(earlier) > 0 {
			return "it asked only for " + typesText(earlier) + ", and this export asks for every type",
				"name those types with --type, or " + hintFull
		}
		for _, s := range plan.Skipped {
			return fmt.Sprintf("%s is not complete in it: %s", s.Table, s.Reason), hintFull
		}
		return "", ""
	}
	var missing, sliced []string
	for _, t := range wanted {
		table := store.TableName(t)
		switch {
		case skipped[table] != "":
			sliced = append(sliced, fmt.Sprintf("%s (%s)", t, skipped[table]))
		case slices.Contains(plan.Tables, table):
		case len(earlier) == 0 && len(plan.Skipped) == 0:
			// An export of every type that returned no file of t proves the server had none.
		default:
			missing = append(missing, t)
		}
	}
	switch {
	case len(sliced) > 0:
		return "not complete in it: " + strings.Join(sliced, "; "), hintFull
	case len(missing) > 0:
		return strings.Join(missing, ",") + " not in it", fullTypes(missing)
	}
	return "", ""
}

// fullTypes is what to do about types no earlier export holds: export them in full once.
func fullTypes(types []string) string {
	return fmt.Sprintf("export them in full first (the same kickoff with --type %s and without --since), load that, "+
		"then use --since auto; or leave them out of --type", strings.Join(types, ","))
}

// requestedTypes is the _type a kickoff event logged: a comma list, or a list of values.
func requestedTypes(params map[string]any) []string {
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			out = append(out, bulk.SplitList(v)...)
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(params[bulk.ParamType])
	return out
}

// scopeText names want's scope after "same".
func scopeText(w Want) string {
	if w.Level == bulk.LevelGroup {
		return fmt.Sprintf("Group %q", w.Group)
	}
	return scopeName(w.Level, "")
}
