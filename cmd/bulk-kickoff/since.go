package main

import (
	"github.com/urfave/cli/v2"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/incremental"
	"github.com/bulkpipe/bulkpipe/pkg/store/duckdb"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
)

// sinceAuto is the --since value that takes _since from an earlier export (--since-from).
const sinceAuto = "auto"

// chooseSince resolves --since auto: the earlier export's time becomes req.Since, and one line
// says which and why. bulk-kickoff links the DuckDB driver (read-only) for this alone: an
// etl-load database's etl__completion says which exports were complete.
func chooseSince(c *cli.Context, st *tool.Status, req *bulk.KickoffRequest) error {
	from := c.String("since-from")
	switch auto := req.Since == sinceAuto; {
	case !auto && from == "":
		return nil
	case !auto:
		return tool.UsageErrorf("--since-from needs --since auto")
	case from == "":
		return tool.UsageErrorf("--since auto needs --since-from FOLDER|DATABASE (an earlier export folder, or etl-load's database)")
	}
	req.Since = ""
	pk, err := req.Prepare()
	if err != nil {
		return nil // prepare reports it, as without --since auto
	}
	want, err := incremental.WantOf(pk)
	if err != nil {
		return tool.UsageErrorf("%v", err)
	}
	ch, err := incremental.Choose(c.Context, from, want, duckdb.ReadCompletion)
	if err != nil {
		return err
	}
	req.Since = ch.Since.UTC().Format("2006-01-02T15:04:05.999999Z07:00")
	st.Line("--since auto: %s, %s", req.Since, ch.Reason)
	return nil
}
