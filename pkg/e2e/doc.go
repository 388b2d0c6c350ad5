// Package e2e holds the end-to-end tests of bulkpipe: they build the real binaries of ./cmd/...,
// start bulk-testserver as a separate process, and run whole pipelines and scripts/*.sh the way
// a user's shell or Makefile would. It has no non-test code.
package e2e
