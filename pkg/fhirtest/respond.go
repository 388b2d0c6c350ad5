package fhirtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// writeJSON answers with v as JSON of the given content type.
func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	b, err := marshal(v)
	if err != nil {
		writeOutcome(w, http.StatusInternalServerError, "exception", "encode response: "+err.Error())
		return
	}
	writeBody(w, status, contentType, b)
}

// marshal is json.Marshal without HTML escaping: URLs keep their "&" readable.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func writeBody(w http.ResponseWriter, status int, contentType string, b []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// operationOutcome is an OperationOutcome with resourceType first, as FHIR JSON is usually written.
type operationOutcome struct {
	ResourceType string  `json:"resourceType"`
	ID           string  `json:"id,omitempty"`
	Issue        []issue `json:"issue"`
}

type issue struct {
	Severity    string `json:"severity"`
	Code        string `json:"code"`
	Diagnostics string `json:"diagnostics"`
}

// outcome is an OperationOutcome with one issue.
func outcome(severity, code, diagnostics string) *operationOutcome {
	return &operationOutcome{ResourceType: "OperationOutcome", Issue: []issue{{severity, code, diagnostics}}}
}

// writeOutcome answers with an OperationOutcome of severity error, as FHIR servers do on failure.
func writeOutcome(w http.ResponseWriter, status int, code, diagnostics string) {
	writeOutcomeSeverity(w, status, "error", code, diagnostics)
}

func writeOutcomeSeverity(w http.ResponseWriter, status int, severity, code, diagnostics string) {
	writeJSON(w, status, "application/fhir+json", outcome(severity, code, diagnostics))
}

// unauthorized answers 401 with the Bearer challenge of RFC 6750 §3 and an OperationOutcome.
func unauthorized(w http.ResponseWriter, why string) {
	w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="`+strings.ReplaceAll(why, `"`, "'")+`"`)
	writeOutcome(w, http.StatusUnauthorized, "login", why)
}

// serveOverride answers with a fixed response from Options.Override.
func (s *Server) serveOverride(path string) http.HandlerFunc {
	raw := s.opts.Override[path]
	return func(w http.ResponseWriter, r *http.Request) {
		if bytes.HasPrefix(raw, []byte("HTTP/")) {
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(normalizeCRLF(raw))), r)
			if err != nil {
				writeOutcome(w, http.StatusInternalServerError, "exception", "override "+path+": "+err.Error())
				return
			}
			defer resp.Body.Close()
			var body bytes.Buffer
			body.ReadFrom(resp.Body)
			for k, v := range resp.Header {
				w.Header()[k] = v
			}
			w.Header().Set("Content-Length", strconv.Itoa(body.Len()))
			w.WriteHeader(resp.StatusCode)
			w.Write(body.Bytes())
			return
		}
		ct := "application/octet-stream"
		switch {
		case strings.HasSuffix(path, ".ndjson"):
			ct = "application/fhir+ndjson"
		case json.Valid(raw):
			ct = "application/json"
		}
		writeBody(w, http.StatusOK, ct, raw)
	}
}

// normalizeCRLF lets a raw response written in a txtar file use plain newlines in its head.
func normalizeCRLF(raw []byte) []byte {
	head, body, ok := bytes.Cut(raw, []byte("\n\n"))
	if !ok {
		head, body, ok = bytes.Cut(raw, []byte("\r\n\r\n"))
		if !ok {
			return raw
		}
	}
	head = bytes.ReplaceAll(bytes.ReplaceAll(head, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
	out := append(head, "\r\n\r\n"...)
	// The body's length is whatever follows the head; a Content-Length in the file is not needed.
	return append(out, body...)
}
