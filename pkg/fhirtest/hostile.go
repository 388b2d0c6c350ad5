package fhirtest

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// HostileText is what a malicious or broken server can put in the text it sends: retitle the
// terminal window, ring the bell, clear the screen. Tools must print it escaped.
const HostileText = "\x1b]0;pwned\x07\x1b[2J"

// HostileOutcome is an OperationOutcome with one error issue of the given code whose diagnostics
// are HostileText.
func HostileOutcome(code string) string {
	diag, _ := json.Marshal(HostileText)
	return `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"` + code + `","diagnostics":` + string(diag) + `}]}`
}

// WriteRaw answers with statusLine ("400 Bad\x1b[2JRequest") exactly as given, which net/http
// will not send, then body, and closes the connection. contentType "" sends none.
func WriteRaw(w http.ResponseWriter, statusLine, contentType, body string) error {
	conn, bw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return err
	}
	defer conn.Close()
	fmt.Fprintf(bw, "HTTP/1.1 %s\r\n", statusLine)
	if contentType != "" {
		fmt.Fprintf(bw, "Content-Type: %s\r\n", contentType)
	}
	fmt.Fprintf(bw, "Content-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	return bw.Flush()
}
