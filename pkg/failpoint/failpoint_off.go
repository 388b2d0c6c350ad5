//go:build !failpoint

package failpoint

// Enabled is true in builds whose failpoints work (-tags failpoint); tests that kill a tool at a
// failpoint skip without it.
const Enabled = false

// Hit does nothing: this build has no failpoints.
func Hit(string) {}
