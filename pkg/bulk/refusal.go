package bulk

import (
	"errors"
	"net/http"
	"strings"

	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
)

// Refusal kinds of RefusedError.
const (
	// RefusedWindow: the client asked for this Group too recently (Epic's request window).
	RefusedWindow = "window"
	// RefusedBusy: the client's previous export is still running or not yet DELETEd (one export
	// at a time per client, or per client and Group).
	RefusedBusy = "busy"
)

// RefusedError is a kickoff the server refused because of its limits on exports per client:
// retrying within minutes cannot help, and retrying for hours only hides the choice the user
// has to make (DELETE the previous export, wait for the window, or have the limit changed).
type RefusedError struct {
	Kind   string                  // RefusedWindow or RefusedBusy
	Status *fhirclient.StatusError // the server's answer, with its OperationOutcome
}

func (e *RefusedError) Error() string { return e.Status.Error() }

// Unwrap gives errors.As the StatusError and its OperationOutcome.
func (e *RefusedError) Unwrap() error { return e.Status }

// refusal recognises a kickoff answer that refuses because of the client's earlier exports.
// Epic says so only in words (its OperationOutcome's code is a generic one), so the words are
// matched here and nowhere else: "Request not allowed" opens both of Epic's refusals, and "too
// recently" marks the request window. A 429 whose issue says a request is "in progress" is the
// same refusal from servers that allow one export in progress per client.
func refusal(err error) *RefusedError {
	se, ok := errors.AsType[*fhirclient.StatusError](err)
	if !ok || se.Outcome == nil || se.StatusCode < 400 || se.StatusCode >= 500 {
		return nil
	}
	for _, is := range se.Outcome.Issues {
		text := strings.ToLower(is.Diagnostics + " " + is.DetailsText)
		switch {
		case strings.Contains(text, "too recently"):
			return &RefusedError{Kind: RefusedWindow, Status: se}
		case strings.Contains(text, "request not allowed"),
			se.StatusCode == http.StatusTooManyRequests && strings.Contains(text, "in progress"):
			return &RefusedError{Kind: RefusedBusy, Status: se}
		}
	}
	return nil
}
