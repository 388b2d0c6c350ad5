// Package attachment inlines clinical-note attachments into FHIR NDJSON (DESIGN.md §5): for each
// DocumentReference.content[].attachment and DiagnosticReport.presentedForm[] whose media type is
// wanted and which has a url but no data, it downloads the content once and stores it in the line
// as data, size, hash and contentType, so the notes outlive the EHR's links and tokens.
//
// The engine is shared by ndjson-inline and bulk-fetch --inline; InPlace is ndjson-inline's
// --in-place rewrite of files and export folders (through a temporary file and a rename, under
// the folder's lock, keeping its state.json in step). It reads lines with
// ndjson.Scanner, passes lines that need no change through byte for byte after a cheap
// resourceType read, downloads attachments in parallel through a Fetcher (*fhirclient.Client
// satisfies it: one retry table, one token rule), and writes lines in input order from a window
// of in-flight lines bounded in count and bytes. New fields are spliced in at the byte offsets of
// the attachment objects rather than set with sjson one path at a time, and lines are validated
// and searched by scanners that skip base64 a word or a vector at a time: on 3 MB
// DocumentReference lines the whole rewrite of a line runs several times faster than with one
// sjson set per attachment (BenchmarkRewriteLine; issue 5).
//
// The package imports fhirclient, a leaf, for the Request it sends, the StatusError it logs and
// Redact, so that a presigned URL's signature never reaches an error or a log line; the
// dependency points downward only (STYLE.md, layout), and fhirclient knows nothing of it.
package attachment
