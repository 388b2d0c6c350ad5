package attachment

import (
	"errors"
	"strings"

	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
)

// Event returns the export-log event for d in the format of DESIGN.md §4 (bulk-data-client's
// logVersion 2): "download_complete" with fileUrl, fileSize and a null resourceCount for an
// inlined attachment, "download_error" with fileUrl, body, code, message and responseHeaders
// for a failed one; both carry itemType "attachment" and the resourceType. A skipped attachment
// is no download and gives eventID "". Pass the detail to exportdir.NewEvent.
func (d Download) Event() (eventID string, detail map[string]any) {
	rt, _, _ := strings.Cut(d.Resource, "/")
	detail = map[string]any{"fileUrl": d.URL, "itemType": "attachment", "resourceType": rt}
	switch d.Result {
	case Inlined:
		detail["fileSize"] = d.Size
		detail["resourceCount"] = nil
		return "download_complete", detail
	case Failed:
		detail["body"], detail["code"], detail["responseHeaders"] = nil, nil, nil
		detail["message"] = ""
		if d.Err != nil {
			detail["message"] = d.Err.Error()
		}
		if se, ok := errors.AsType[*fhirclient.StatusError](d.Err); ok {
			detail["code"] = se.StatusCode
			if len(se.Body) > 0 {
				detail["body"] = string(se.Body) // scrubbed of credentials by fhirclient
			}
			detail["responseHeaders"] = headers(se.Header)
		}
		return "download_error", detail
	}
	return "", nil
}

// headers flattens response headers the way bulk-data-client logs them (lowercase names, values
// joined), leaving out cookies, which are credentials.
func headers(h map[string][]string) map[string]string {
	out := make(map[string]string, len(h))
	for k, vs := range h {
		k = strings.ToLower(k)
		if k == "set-cookie" {
			continue
		}
		out[k] = strings.Join(vs, ", ")
	}
	return out
}
