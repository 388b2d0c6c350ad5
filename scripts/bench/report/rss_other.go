//go:build !unix

package main

import "os"

// maxRSS is unknown without getrusage(2): reported as 0.
func maxRSS(*os.ProcessState) int64 { return 0 }

// written is unknown without getrusage(2): reported as 0.
func written(*os.ProcessState) int64 { return 0 }
