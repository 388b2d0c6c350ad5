//go:build !unix

package tool

// OpenFileLimit returns false: the limit on open files is a Unix one.
func OpenFileLimit() (int, bool) { return 0, false }
