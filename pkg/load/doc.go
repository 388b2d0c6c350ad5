// Package load is etl-load's engine: export folders in, a store out (DESIGN.md §7). It reads
// each folder's files and export metadata (the log's Group and transactionTime, or the caller's
// overrides), refuses a folder whose download did not finish, loads each folder in one
// transaction through package store into a DuckDB database, optionally downloads the Medications
// and attachments the folder lacks from a FHIR server, writes a Parquet or Cumulus-layout NDJSON
// snapshot on request, and explains why encounters are still incomplete.
//
// Every folder is checked before the database is opened, so that an error in the third folder
// leaves the first two unloaded and no database file is created for a load that cannot start.
// Like every library here it never prints or exits: diagnostics go through Options.Warn, a
// folder's progress through Options.Start, Progress and Done, and a load asked for in a way that
// cannot work (a folder with neither a log nor the Group and time given) is an *OptionsError.
package load
