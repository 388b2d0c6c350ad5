package bulk

import (
	"errors"
	"time"
)

// DefaultReadTimeout is how long a status request may wait for the server, for its headers or
// between bytes of its body, before the attempt is abandoned: a server that stalls (DESIGN.md §8)
// must not hang a poll that Retry-After and the retry table would otherwise keep alive.
const DefaultReadTimeout = time.Minute

// kickoffIdle is the default wait for a kickoff's answer: as long as the transport's own wait
// for headers, since cutting a kickoff once sent means "an export may already exist".
const kickoffIdle = 5 * time.Minute

// errBody marks a response whose body could not be read whole (cut, reset, stalled): the request
// is worth repeating, as fhirclient repeats a transport error.
var errBody = errors.New("reading the response body")
