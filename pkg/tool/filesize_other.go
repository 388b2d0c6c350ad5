//go:build !unix

package tool

// ignoreFileSizeLimit is a no-op where there is no SIGXFSZ.
func ignoreFileSizeLimit() {}
