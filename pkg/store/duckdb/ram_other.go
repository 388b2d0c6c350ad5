//go:build !linux

package duckdb

// physicalMemory is unknown here: the default limit is then 2 GiB.
func physicalMemory() int64 { return 0 }
