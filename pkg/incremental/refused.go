package incremental

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
)

// SinceRefusedError is a kickoff with _since that the server refused as a bad request: often a
// server that does not support _since. Exporting everything instead would be a silent change of
// plan, so the error explains the choices and leaves them to the user.
type SinceRefusedError struct {
	Err   error  // the server's answer (a *fhirclient.StatusError)
	Since string // the _since sent
	// Named is set when the server's words name _since: then it surely is the refusal's cause.
	Named bool
}

func (e *SinceRefusedError) Error() string {
	cause := "if the server does not support _since"
	if e.Named {
		cause = "the server refused _since"
	}
	return fmt.Sprintf("%v (sent _since=%s; %s, no incremental export is possible with it: either export everything "+
		"again without --since (etl-load applies it over the earlier data, but deletions made on the server are not seen), "+
		"or, where the server supports _typeFilter, ask for each type changed since then with "+
		"--type-filter 'TYPE?_lastUpdated=gt%s' instead of --since (deletions are not seen either))",
		e.Err, e.Since, cause, e.Since)
}

func (e *SinceRefusedError) Unwrap() error { return e.Err }

// ExplainSince turns a kickoff error into a *SinceRefusedError when the kickoff sent _since
// (since != "") and the server answered that the request was bad (400, 422) or asked for
// something it does not implement (501); other errors are returned as they are. Refusals for
// auth (401, 403), an unknown Group (404) or load (429) have other causes.
func ExplainSince(err error, since string) error {
	se, ok := errors.AsType[*fhirclient.StatusError](err)
	if !ok || since == "" {
		return err
	}
	switch se.StatusCode {
	case http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusNotImplemented:
	default:
		return err
	}
	named := strings.Contains(string(se.Body), "_since")
	if se.Outcome != nil {
		named = named || strings.Contains(se.Outcome.Error(), "_since")
	}
	return &SinceRefusedError{Err: err, Since: since, Named: named}
}
