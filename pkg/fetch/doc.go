// Package fetch is the download engine of bulk-fetch: it reads manifest pages as they arrive and
// moves every file of a FHIR Bulk Data export into an export folder (DESIGN.md §3), verified while
// it streams and resumable after any interruption.
//
// Each file goes to NAME.part, which holds the decoded bytes (gzip on the wire is decoded on the
// fly). Every line is checked as it is written: valid JSON, the manifest's resourceType, and at
// the end the manifest's count; the SHA-256 is computed on the same pass. Only a complete,
// verified .part is synced and renamed, then recorded in .bulkpipe/state.json by identity
// (array, resource type, ordinal), so a rerun never fetches a verified file again. Recording is
// a group commit (commit.go): the files renamed at about the same time share one sync of their
// folder and one synced line of state.json's journal (exportdir.StateJournal), and each is
// reported (log, stdout) only after that line is on disk; a record costs the same for the
// 50,000th file as for the first. A body cut mid-stream resumes with Range and If-Range; expired links are
// replaced by fetching the manifest again from the status URL (DESIGN.md §2). A fixed pool of
// Options.Parallel workers takes the files from a queue in manifest order, which pages extend as
// they arrive; within it, an adaptive limit on requests halves on a 429 and recovers slowly. The
// file requests do their own retries (with fhirclient's backoff) so that they see every 429.
//
// Memory, open files and goroutines are bounded by the parallelism, and memory by the longest
// line: one 256 KiB buffer per download in flight (pooled, not allocated per file), plus the line
// being assembled when it spans buffers, plus at most maxGroup files waiting to be recorded. What
// grows with the manifest is a small record per file (its identity, link and state entry).
//
// Nothing here prints or exits: progress and warnings go through Callbacks.
package fetch
