package fhirtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// faultState is a Fault with what is left of its count.
type faultState struct {
	Fault
	left int // fires while > 0 (Count, or 1 for a transport kind's default "once")
}

func newFaultState(f Fault) *faultState {
	st := &faultState{Fault: f, left: f.Count}
	if f.Count == 0 && f.Rate == 0 {
		if f.IsData() {
			st.left = -1 // always
		} else {
			st.left = 1
		}
	}
	return st
}

// fires decides, for one matching request, whether the fault acts; called with s.mu held.
func (s *Server) fires(f *faultState) bool {
	switch {
	case f.Rate > 0:
		return s.rng.Float64() < f.Rate
	case f.left < 0:
		return true
	case f.left > 0:
		f.left--
		return true
	}
	return false
}

// pick returns the delay of the slow faults that fire on this request and the first other
// transport fault that fires, if any. expire-links is decided by the file handler, which alone
// knows whether the request is for a live link.
func (s *Server) pick(route string, r *http.Request) (time.Duration, *Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var delay time.Duration
	for _, f := range s.faults {
		if f.IsData() || f.Kind == FaultExpireLinks || (f.Route != "" && f.Route != route) {
			continue
		}
		if f.Kind == Fault401 && r.Header.Get("Authorization") == "" {
			continue // it is the presented token that "expires"
		}
		if !s.fires(f) {
			continue
		}
		if f.Kind == FaultSlow {
			delay += time.Duration(f.argInt(1000)) * time.Millisecond
			continue
		}
		fault := f.Fault
		return delay, &fault
	}
	return delay, nil
}

// fireKind consumes one firing of the first fault of kind that fires (expire-links).
func (s *Server) fireKind(kind string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.faults {
		if f.Kind == kind && s.fires(f) {
			return true
		}
	}
	return false
}

// dataFaults returns the data faults that act on the export being kicked off now.
func (s *Server) dataFaults() []Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Fault
	for _, f := range s.faults {
		if f.IsData() && !slices.ContainsFunc(out, func(g Fault) bool { return g.Kind == f.Kind }) && s.fires(f) {
			out = append(out, f.Fault)
		}
	}
	return out
}

// answerFault answers a request with fault f; h is the real handler, whose answer reset, truncate
// and stall cut short.
func (s *Server) answerFault(w http.ResponseWriter, r *http.Request, f Fault, h http.HandlerFunc) {
	switch f.Kind {
	case Fault500:
		writeOutcome(w, http.StatusInternalServerError, "exception", "injected fault: internal server error")
	case Fault503:
		if f.Arg != "" {
			w.Header().Set("Retry-After", f.Arg)
		}
		writeOutcomeSeverity(w, http.StatusServiceUnavailable, "error", "transient", "injected fault: service unavailable, try again")
	case Fault429:
		w.Header().Set("Retry-After", s.retryAfterValue(f.Arg))
		writeOutcomeSeverity(w, http.StatusTooManyRequests, "error", "throttled", "injected fault: too many requests")
	case Fault401:
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			s.mu.Lock()
			delete(s.tokens, tok)
			s.mu.Unlock()
		}
		unauthorized(w, "the access token expired (injected fault)")
	case FaultReset, FaultTruncate, FaultStall:
		s.cut(w, r, f, h)
	}
}

// retryAfterValue is a short Retry-After in the form ARG of a 429 fault names: seconds, an
// HTTP-date, or an epoch number in milliseconds or seconds (a reference server's habit, §9).
func (s *Server) retryAfterValue(arg string) string {
	now := s.now()
	switch arg {
	case "date":
		return now.Add(2 * time.Second).UTC().Format(http.TimeFormat)
	case "epoch-ms":
		return strconv.FormatInt(now.Add(time.Second).UnixMilli(), 10)
	case "epoch-s":
		return strconv.FormatInt(now.Add(2*time.Second).Unix(), 10)
	case "":
		return "1"
	}
	return arg
}

// errCaptured stops a handler once capture holds enough of its body.
var errCaptured = errors.New("fhirtest: response captured")

// capture is a ResponseWriter that keeps the status, the headers and the first limit body bytes
// of a handler's answer, so a fault can send part of the real answer.
type capture struct {
	h      http.Header
	status int
	body   bytes.Buffer
	limit  int
	total  int64
}

func (c *capture) Header() http.Header { return c.h }

func (c *capture) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
}

func (c *capture) Write(p []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	c.total += int64(len(p))
	room := c.limit - c.body.Len()
	if room <= 0 {
		return 0, errCaptured
	}
	if len(p) > room {
		c.body.Write(p[:room])
		return room, errCaptured
	}
	return c.body.Write(p)
}

// cutDefault is how much of the body reset and truncate send without ARG: half, at most 64 KiB,
// so that the client has something to resume from.
const cutDefault = 64 << 10

// cut sends the headers of h's answer and part of its body on the raw connection, then resets
// it (reset), closes it (truncate) or holds it silent (stall).
func (s *Server) cut(w http.ResponseWriter, r *http.Request, f Fault, h http.HandlerFunc) {
	c := &capture{h: http.Header{}, limit: max(f.argInt(0), cutDefault) + 1}
	h(c, r)
	c.WriteHeader(http.StatusOK)
	length := c.total
	if n, err := strconv.ParseInt(c.h.Get("Content-Length"), 10, 64); err == nil {
		length = n
	}
	send := min(int64(f.argInt(int(min(length/2, cutDefault)))), int64(c.body.Len()))
	if f.Kind == FaultStall {
		send = min(int64(f.argInt(0)), int64(c.body.Len()))
	}
	send = min(send, length)
	declared := length
	if f.Kind == FaultTruncate && send >= length {
		// Nothing to leave out (an empty or tiny body): promise one byte more than there is.
		send, declared = length, length+1
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		writeOutcome(w, http.StatusInternalServerError, "exception", "fault "+f.Kind+" needs HTTP/1.1")
		return
	}
	conn, bw, err := hj.Hijack()
	if err != nil {
		return
	}
	c.h.Set("Content-Length", strconv.FormatInt(declared, 10))
	c.h.Del("Transfer-Encoding")
	if c.h.Get("Date") == "" {
		c.h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\n", c.status, http.StatusText(c.status))
	c.h.Write(bw)
	bw.WriteString("\r\n")
	if r.Method != http.MethodHead {
		bw.Write(c.body.Bytes()[:send])
	}
	bw.Flush()
	switch f.Kind {
	case FaultReset:
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetLinger(0) // close with RST, not FIN: "connection reset by peer"
		}
		conn.Close()
	case FaultTruncate:
		conn.Close()
	case FaultStall:
		s.stall(conn, bw)
	}
}

// stall holds a hijacked connection open and silent until the client goes away, the server
// closes, or StallCap passes.
func (s *Server) stall(conn net.Conn, bw *bufio.ReadWriter) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.Close()
		return
	}
	s.conns[conn] = struct{}{}
	s.mu.Unlock()
	gone := make(chan struct{})
	go func() {
		buf := make([]byte, 512)
		for {
			if _, err := bw.Read(buf); err != nil {
				close(gone)
				return
			}
		}
	}()
	t := time.NewTimer(StallCap)
	select {
	case <-gone:
	case <-t.C:
	case <-s.done:
	}
	t.Stop()
	s.mu.Lock()
	delete(s.conns, conn)
	s.mu.Unlock()
	conn.Close()
}
