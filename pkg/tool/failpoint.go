package tool

import "github.com/bulkpipe/bulkpipe/pkg/failpoint"

// Failpoint kills the process at the named point when BULKPIPE_CRASH selects it (see package
// failpoint); tools call it between the steps whose crash safety tests must prove.
func Failpoint(name string) { failpoint.Hit(name) }
