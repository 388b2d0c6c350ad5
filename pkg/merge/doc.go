// Package merge is the engine of ndjson-merge: it recombines the slices of a sliced Bulk Data
// export (export folders or NDJSON files) into one de-duplicated export folder, or one type's
// NDJSON stream, in bounded memory (DESIGN.md §6). Records are keyed by resourceType/id, sorted in
// a fixed budget and spilled to disk as sorted runs, then merged; per key the newest
// meta.lastUpdated wins, ties going to the later slice, then to the later argument, and a
// deletion removes the copies of earlier slices. The output appears whole (one rename) or not at
// all. Like every library here it never prints or exits: warnings and progress go through
// Options.Warn and Options.Progress, and a merge asked for in a way that cannot work is an
// *OptionsError.
package merge
