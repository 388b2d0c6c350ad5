package attachment

import (
	"strings"

	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
)

// Event returns the export-log event for d in the format of DESIGN.md §4 (bulk-data-client's
// logVersion 2): "download_complete" (exportdir.DownloadComplete, a null resourceCount) for an
// inlined attachment, "download_error" (exportdir.DownloadError) for a failed one; both carry
// itemType "attachment" and the resourceType. A skipped attachment is no download and gives
// eventID "". Pass the detail to exportdir.NewEvent.
func (d Download) Event() (eventID string, detail any) {
	rt, _, _ := strings.Cut(d.Resource, "/")
	switch d.Result {
	case Inlined:
		return exportdir.EventDownloadComplete, exportdir.DownloadComplete{FileURL: d.URL, FileSize: d.Size,
			ItemType: "attachment", ResourceType: rt}
	case Failed:
		// The body is scrubbed of credentials by fhirclient.
		e := exportdir.NewDownloadError(d.URL, d.Err)
		e.ItemType, e.ResourceType = "attachment", rt
		return exportdir.EventDownloadError, e
	}
	return "", nil
}
