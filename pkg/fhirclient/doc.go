// Package fhirclient is the one HTTP client of bulkpipe: every tool talks to FHIR servers, file
// stores and attachment hosts through it, with one retry table, one token rule and one error type.
//
// The retry table, the Retry-After forms, the per-route caps and the kickoff rule are those of
// DESIGN.md §2. Credentials go out only to trusted origins — the FHIR base's, the status URL's
// (see Client.Trust) and any given with --token-origin — and are set per request hop, so that a
// redirect never carries a token to another server. Errors name what was tried with the URL
// passed through Redact, and never contain a token or a --header value.
//
// Clocks, sleeps and jitter are injectable (Options.Now, Options.Sleep, Options.Rand), so tests
// run the whole retry schedule without waiting.
package fhirclient
