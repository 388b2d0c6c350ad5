package merge

import (
	"cmp"
	"slices"
	"time"
)

// rules decide, for all the entries of one resourceType/id, which copy survives (DESIGN.md §6):
//
//   - a delete entry takes its slice's transactionTime and removes the copies from slices whose time is
//     strictly earlier. A copy from the delete's own slice, or from a slice with the same time, stays:
//     the server listed it as existing at that instant, so it was re-created (or the server contradicts
//     itself, and the resource on hand is the safer answer). Such a delete is dropped from deleted/.
//   - among the copies left, the newest meta.lastUpdated wins; a missing one sorts oldest; ties go to
//     the slice with the later transactionTime, then to the later argument, then to the later line.
//   - deleted/ keeps a key's delete only when no copy survives.
//
// Deletes are applied before the newest copy is chosen: a copy re-created after the delete (in a later
// slice) survives even when an older slice held a copy with a newer lastUpdated.
type rules struct {
	when []int // per slice: dense rank of its transactionTime; equal times share a rank
	rank []int // per slice: rank by (transactionTime, argument order), the tie-break after lastUpdated
}

// newRules ranks the slices by their transactionTimes, given in argument order.
func newRules(times []time.Time) *rules {
	n := len(times)
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return times[a].Compare(times[b]) })
	r := &rules{when: make([]int, n), rank: make([]int, n)}
	w := 0
	for i, s := range order {
		if i > 0 && !times[order[i-1]].Equal(times[s]) {
			w++
		}
		r.when[s] = w
		r.rank[s] = i
	}
	return r
}

// compare orders two copies of one resource: > 0 when a wins over b.
func (r *rules) compare(a, b *entry) int {
	if c := a.lu.compare(b.lu); c != 0 {
		return c
	}
	if c := cmp.Compare(r.rank[a.slice], r.rank[b.slice]); c != 0 {
		return c
	}
	return cmp.Compare(a.seq, b.seq)
}

// prune reduces the entries of one key to those that can still matter once the entries of other runs
// join them, reordering g in place and returning the kept prefix: the surviving copies, best first,
// then the latest delete if there is one.
//
// Pruning is safe at any stage because removal is monotone: a delete that removes a copy also removes
// every copy from an earlier-or-equal slice, so a copy beaten by another from a slice at least as late
// can never win; and the latest delete removes everything an earlier one would.
// The first kept entry, if a resource, is the key's winner.
func (r *rules) prune(g []entry) []entry {
	if len(g) == 1 {
		return g
	}
	var d entry
	hasDel := false
	for i := range g {
		if g[i].kind == kindDelete && (!hasDel || r.laterDelete(&g[i], &d)) {
			d, hasDel = g[i], true
		}
	}
	n := 0
	for i := range g {
		if g[i].kind == kindResource {
			g[n] = g[i]
			n++
		}
	}
	delWhen := -1
	if hasDel {
		delWhen = r.when[d.slice]
	}
	res := g[:n]
	slices.SortFunc(res, func(a, b entry) int { return r.compare(&b, &a) })
	kept := 0
	maxWhen := -1
	for i := range res {
		w := r.when[res[i].slice]
		if w >= delWhen && w > maxWhen {
			res[kept] = res[i]
			kept++
		}
		maxWhen = max(maxWhen, w)
	}
	if hasDel {
		g[kept] = d
		kept++
	}
	return g[:kept]
}

// laterDelete orders deletes of one key: the later slice time first, then the later input.
func (r *rules) laterDelete(a, b *entry) bool {
	if ra, rb := r.rank[a.slice], r.rank[b.slice]; ra != rb {
		return ra > rb
	}
	return a.seq > b.seq
}
