package main

import (
	"errors"
	"fmt"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
)

// refused adds to a kickoff the server refused because of the client's earlier exports what the
// user can do about it, on the same line: such a refusal is not retried (waiting minutes does not
// help, and hours of silent retries would hide the choice).
func refused(err error, pk *bulk.PreparedKickoff) error {
	r, ok := errors.AsType[*bulk.RefusedError](err)
	if !ok {
		return err
	}
	del := "DELETE the previous export of this Group (bulk-poll --cancel STATUS_URL, with the status URL bulk-kickoff printed for it, or curl -X DELETE on it with your token)"
	if dir := tool.RecordDir(); dir != "" && pk.Level == bulk.LevelGroup {
		if rec := bulk.LatestRecord(dir, pk.Base, pk.Group); rec != nil {
			del = "DELETE the previous export of this Group (bulk-poll --cancel " + shellQuote(rec.StatusURL) +
				", started " + rec.Created + ")"
		}
	}
	if r.Kind == bulk.RefusedWindow {
		return fmt.Errorf("%w; the server allows one export per client and Group within a request window (Epic: 24 hours unless configured otherwise): "+
			"%s, or wait until the window has passed and run the same command again, or ask the server's administrator to shorten the window; not retrying", err, del)
	}
	return fmt.Errorf("%w; the server runs one export at a time for this client: let the previous export finish and download it "+
		"(bulk-fetch DELETEs it once verified), or %s; then run the same command again; not retrying", err, del)
}
