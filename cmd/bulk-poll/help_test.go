package main

import (
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/tool"
	"github.com/bulkpipe/bulkpipe/pkg/tool/tooltest"
)

func TestHelp(t *testing.T) {
	tooltest.CheckHelp(t, newApp(tool.Deps{}))
}
