package main

import (
	"fmt"
)

// lakeSameMax is how much more a load onto a large lake may cost than onto an empty one and
// still count as "the same" (issue 16): the noise of one run each on a shared machine, since an
// append reads nothing the lake holds but the commit records.
const lakeSameMax = 1.10

// The roles scripts/bench/scale.sh gives the lake part's runs.
const (
	lakeBase = "base" // the lake's first, large load
	lakeNew  = "new"  // the folder appended to a new lake
	lakeOnto = "onto" // the same folder appended onto the base
)

var lakeHeader = []string{"step", "contestant", "GB", "wall s", "s/GB", "written GB", "lake growth GB", "peak RSS MiB", "memory limit", "load 1 min (start → end)"}

// lakeAlign is the Markdown alignment row of lakeHeader: numbers to the right.
const lakeAlign = "|---|---|---:|---:|---:|---:|---:|---:|---|---|\n"

func lakeCells(r Record) []string {
	name := r.Name
	if r.Exit != 0 {
		name += fmt.Sprintf(" (exit %d)", r.Exit)
	}
	spg, wr, limit := "—", "—", "—"
	if r.Bytes > 0 && r.Wall > 0 {
		spg = fmt.Sprintf("%.1f", secPerGB(r))
	}
	if r.Written > 0 {
		wr = fmt.Sprintf("%.3f", float64(r.Written)/1e9)
	}
	if r.Limit != "" {
		limit = r.Limit
	}
	return []string{r.Step, name, fmt.Sprintf("%.3f", gb(r)), fmt.Sprintf("%.1f", r.Wall), spg, wr,
		fmt.Sprintf("%.3f", float64(r.Grown)/1e9), fmt.Sprintf("%.0f", float64(r.RSS)/1024), limit,
		fmt.Sprintf("%.2f → %.2f", r.Load1Start, r.Load1)}
}

// byRole finds the lake part's run of a role: the fastest of its rounds, or a failed one when
// one failed (a failure is not hidden behind a faster round); nil when there is none.
func byRole(recs []Record, role string) *Record {
	var best *Record
	for i := range recs {
		r := &recs[i]
		switch {
		case r.Role != role:
		case r.Exit != 0:
			return r
		case best == nil || r.Wall < best.Wall:
			best = r
		}
	}
	return best
}

// lakeTargets: the same folder appended onto the base lake costs what it costs on an empty one,
// in wall time and in bytes written (the fastest round of each); the lake's growth and the base's s/GB are reported; every
// run's peak RSS against its memory limit.
func lakeTargets(recs []Record) []string {
	base, fresh, onto := byRole(recs, lakeBase), byRole(recs, lakeNew), byRole(recs, lakeOnto)
	var out []string
	if fresh == nil || onto == nil {
		return []string{"the same folder onto an empty and onto the base lake: **not measured** (a run is missing)"}
	}
	what := fmt.Sprintf("%s GB onto the %s GB lake", trimGB(gb(*onto)), baseGB(base))
	switch {
	case base == nil || base.Exit != 0:
		// The "base" then holds no committed load: appending onto it is appending to an empty lake.
		exit := -1
		if base != nil {
			exit = base.Exit
		}
		out = append(out, fmt.Sprintf("%s ≤ %.2f × onto an empty lake: **not measured** (the base load failed, exit %d: the lake held none of it)", what, lakeSameMax, exit))
	case fresh.Exit != 0 || onto.Exit != 0:
		out = append(out, fmt.Sprintf("%s ≤ %.2f × onto an empty lake: **not measured** (exit %d onto the base, %d onto an empty lake)", what, lakeSameMax, onto.Exit, fresh.Exit))
	default:
		r := onto.Wall / fresh.Wall
		out = append(out, fmt.Sprintf("%s ≤ %.2f × onto an empty lake, wall time: %.1f s vs %.1f s, %.2f× — %s",
			what, lakeSameMax, onto.Wall, fresh.Wall, r, metVerdict(r <= lakeSameMax)))
		if fresh.Written == 0 {
			out = append(out, what+", bytes written: **not measured** (no rusage ru_oublock on this system)")
		} else {
			r := float64(onto.Written) / float64(fresh.Written)
			out = append(out, fmt.Sprintf("%s ≤ %.2f × onto an empty lake, bytes written: %.3f GB vs %.3f GB, %.2f× — %s",
				what, lakeSameMax, float64(onto.Written)/1e9, float64(fresh.Written)/1e9, r, metVerdict(r <= lakeSameMax)))
		}
		if fresh.Grown > 0 {
			out = append(out, fmt.Sprintf("%s, lake growth: %.3f GB vs %.3f GB onto an empty lake, %.2f× (reported, no target)",
				what, float64(onto.Grown)/1e9, float64(fresh.Grown)/1e9, float64(onto.Grown)/float64(fresh.Grown)))
		}
	}
	if base != nil && base.Exit == 0 && fresh.Exit == 0 {
		out = append(out, fmt.Sprintf("etl-load --lake s/GB at %s GB (the base) vs at %s GB (onto an empty lake): %.1f vs %.1f s/GB, %.2f× (reported, no target)",
			baseGB(base), trimGB(gb(*fresh)), secPerGB(*base), secPerGB(*fresh), secPerGB(*base)/secPerGB(*fresh)))
	}
	// Peak RSS of every run, not only the fastest of each role.
	for i := range recs {
		out = append(out, rssTarget(recs[i].Step, &recs[i], loadRSSSlack))
	}
	return out
}

// baseGB is the base load's size for the targets' wording, "?" when it was not measured.
func baseGB(base *Record) string {
	if base == nil {
		return "?"
	}
	return trimGB(gb(*base))
}

func trimGB(g float64) string { return fmt.Sprintf("%.3g", g) }
