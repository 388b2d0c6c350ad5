//go:build !linux

package merge

import "os"

// startWriteback is a no-op where sync_file_range(2) does not exist: the fsync that closes the
// file writes it all.
func startWriteback(f *os.File, off, n int64) {}
