package exportdir

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
)

// The event details of log.ndjson (DESIGN.md §4, bulk-data-client's logVersion 2). Every writer
// builds its details from these types, so that a field has one name and one order in every
// tool's log. The kickoff keeps bulk-data-client's field order; the other events keep the
// alphabetical order they were written in when they were maps (a reader sees the same bytes).

// Event IDs of the log format.
const (
	EventKickoff            = "kickoff"
	EventStatusProgress     = "status_progress"
	EventStatusError        = "status_error"
	EventStatusComplete     = "status_complete"
	EventStatusPageComplete = "status_page_complete"
	EventManifestComplete   = "manifest_complete"
	EventDownloadRequest    = "download_request"
	EventDownloadComplete   = "download_complete"
	EventDownloadError      = "download_error"
	EventExportComplete     = "export_complete"
)

// Kickoff is the kickoff event's detail. The software fields are null when the server's
// CapabilityStatement did not say; ErrorCode and ErrorBody are null for a kickoff that worked.
type Kickoff struct {
	ExportURL           string            `json:"exportUrl"`
	ErrorCode           any               `json:"errorCode"`
	ErrorBody           any               `json:"errorBody"`
	SoftwareName        any               `json:"softwareName"`
	SoftwareVersion     any               `json:"softwareVersion"`
	SoftwareReleaseDate any               `json:"softwareReleaseDate"`
	FHIRVersion         any               `json:"fhirVersion"`
	RequestParameters   map[string]any    `json:"requestParameters"`
	ResponseHeaders     map[string]string `json:"responseHeaders"`
	LogVersion          string            `json:"logVersion"`
	// Synthesized marks a kickoff composed by a tool (bulk-fetch from the manifest, ndjson-merge
	// from the slices) rather than recorded as it was sent: its exportUrl may come from a server,
	// so readers take a FHIR base only from Context, which the tool vouches for.
	Synthesized string          `json:"_synthesized,omitempty"`
	Context     *KickoffContext `json:"_bulkpipe,omitempty"`
}

// KickoffContext is the _bulkpipe member of a synthesized kickoff.
type KickoffContext struct {
	FHIRBase string `json:"fhirBase"`
}

// NewKickoff returns a kickoff detail for exportURL with the fields bulk-data-client always
// writes: nulls for what is unknown, empty parameters and headers, logVersion "2".
func NewKickoff(exportURL string, params map[string]any) Kickoff {
	if params == nil {
		params = map[string]any{}
	}
	return Kickoff{ExportURL: exportURL, RequestParameters: params, ResponseHeaders: map[string]string{}, LogVersion: "2"}
}

// StatusProgress is the status_progress event's detail: what a 202 said.
type StatusProgress struct {
	Body             any    `json:"body"`
	RetryAfterHeader string `json:"retryAfterHeader"`
	XProgressHeader  string `json:"xProgressHeader"`
}

// StatusComplete is the status_complete event's detail.
type StatusComplete struct {
	TransactionTime string `json:"transactionTime"`
}

// StatusPageComplete is the status_page_complete event's detail: one page of a partial manifest.
type StatusPageComplete struct {
	DeletedFileCount int    `json:"deletedFileCount"`
	ErrorFileCount   int    `json:"errorFileCount"`
	OutputFileCount  int    `json:"outputFileCount"`
	TransactionTime  string `json:"transactionTime"`
}

// ManifestComplete is the manifest_complete event's detail: the file counts of every page.
type ManifestComplete struct {
	TotalDeletedFileCount int    `json:"totalDeletedFileCount"`
	TotalErrorFileCount   int    `json:"totalErrorFileCount"`
	TotalManifests        int    `json:"totalManifests"`
	TotalOutputFileCount  int    `json:"totalOutputFileCount"`
	TransactionTime       string `json:"transactionTime"`
}

// DownloadRequest is the download_request event's detail.
type DownloadRequest struct {
	FileURL      string `json:"fileUrl"`
	ItemType     string `json:"itemType"`
	ResourceType string `json:"resourceType"`
}

// DownloadComplete is the download_complete event's detail. ResourceCount is null for an
// attachment, which holds no resources; ItemType and ResourceType are written for attachments.
type DownloadComplete struct {
	FileSize      int64  `json:"fileSize"`
	FileURL       string `json:"fileUrl"`
	ItemType      string `json:"itemType,omitempty"`
	ResourceCount any    `json:"resourceCount"`
	ResourceType  string `json:"resourceType,omitempty"`
}

// ErrorDetail is what the log records of a failed request (status_error): the server's answer
// when there was one, else nulls and the error's text.
type ErrorDetail struct {
	Body            any               `json:"body"`
	Code            any               `json:"code"`
	Message         string            `json:"message"`
	ResponseHeaders map[string]string `json:"responseHeaders"`
}

// NewErrorDetail describes err. A *fhirclient.StatusError gives the status code, the response
// headers (through ResponseHeaders) and the body: as JSON when it is JSON (an OperationOutcome
// stays readable), else as a string; fhirclient has already scrubbed credentials from it.
func NewErrorDetail(err error) ErrorDetail {
	d := ErrorDetail{ResponseHeaders: map[string]string{}}
	if err == nil {
		return d
	}
	d.Message = err.Error()
	if se, ok := errors.AsType[*fhirclient.StatusError](err); ok {
		d.Code = se.StatusCode
		d.ResponseHeaders = ResponseHeaders(se.Header)
		switch {
		case json.Valid(se.Body):
			d.Body = json.RawMessage(se.Body)
		case len(se.Body) > 0:
			d.Body = string(se.Body)
		}
	}
	return d
}

// DownloadError is the download_error event's detail: ErrorDetail for one file or attachment.
type DownloadError struct {
	Body            any               `json:"body"`
	Code            any               `json:"code"`
	FileURL         string            `json:"fileUrl"`
	ItemType        string            `json:"itemType,omitempty"`
	Message         string            `json:"message"`
	ResourceType    string            `json:"resourceType,omitempty"`
	ResponseHeaders map[string]string `json:"responseHeaders"`
}

// NewDownloadError describes a failed download of fileURL (already redacted by the caller).
func NewDownloadError(fileURL string, err error) DownloadError {
	d := NewErrorDetail(err)
	return DownloadError{Body: d.Body, Code: d.Code, FileURL: fileURL, Message: d.Message, ResponseHeaders: d.ResponseHeaders}
}

// ExportComplete is the export_complete event's detail. Attachments is null when the tool inlined
// none; Duration is in milliseconds.
type ExportComplete struct {
	Attachments any   `json:"attachments"`
	Bytes       int64 `json:"bytes"`
	Duration    int64 `json:"duration"`
	Files       int   `json:"files"`
	Resources   int64 `json:"resources"`
}

// credentialHeaders are response headers the log never records: a session cookie or an
// authorization echoed back is a credential (DESIGN.md §2: never log a token).
var credentialHeaders = map[string]bool{
	"set-cookie": true, "set-cookie2": true, "authorization": true, "proxy-authorization": true,
}

// ResponseHeaders is a response's headers as the log records them (bulk-data-client's form):
// lowercase names, values joined with ", ", credential headers left out.
func ResponseHeaders(h http.Header) map[string]string {
	m := make(map[string]string, len(h))
	for k, vs := range h {
		k = strings.ToLower(k)
		if credentialHeaders[k] {
			continue
		}
		m[k] = strings.Join(vs, ", ")
	}
	return m
}
