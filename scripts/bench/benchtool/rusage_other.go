//go:build !unix

package main

import "errors"

// rusage needs getrusage(2); elsewhere use GNU time.
func rusage([]string) error { return errors.New("rusage: not supported on this system") }
