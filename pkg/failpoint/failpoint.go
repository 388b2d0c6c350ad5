// Package failpoint kills the process at named points when BULKPIPE_CRASH asks for it, so tests
// can prove that a kill -9 at any step followed by a rerun gives the result of one clean run
// (DESIGN.md §8).
//
// Failpoints exist only in binaries built with -tags failpoint (make test, make chaos, and the
// binaries pkg/e2e builds). Release builds compile Hit to nothing, so an inherited
// BULKPIPE_CRASH cannot kill a user's download.
//
// BULKPIPE_CRASH holds a comma-separated list of NAME or NAME:N; the process sends itself SIGKILL
// at the Nth time (default 1st) execution reaches Hit(NAME). Without the variable, Hit costs one
// atomic load.
package failpoint

// Env is the environment variable that arms failpoints.
const Env = "BULKPIPE_CRASH"
