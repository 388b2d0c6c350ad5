package fhirclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		header string
		want   time.Duration
		wantOK bool
	}{
		{"", 0, false},
		{"120", 2 * time.Minute, true},
		{" 7 ", 7 * time.Second, true},
		{"0", 0, true},
		{"-5", 0, true},
		{"1.5", 1500 * time.Millisecond, true},
		{"soon", 0, false},
		{"NaN", 0, false},
		{"Inf", 0, false},
		{"0x10", 0, false},
		{"99999999999999999999", 0, false},
		// HTTP-date in its three forms (RFC 9110 §5.6.7), future and past.
		{"Mon, 01 Jan 2024 00:00:30 GMT", 30 * time.Second, true},
		{"Monday, 01-Jan-24 00:01:00 GMT", time.Minute, true},
		{"Mon Jan  1 00:00:45 2024", 45 * time.Second, true},
		{"Sun, 31 Dec 2023 23:59:00 GMT", 0, true},
		// Epoch numbers, as one reference server sends.
		{strconv.FormatInt(epoch.Add(20*time.Second).UnixMilli(), 10), 20 * time.Second, true},
		{strconv.FormatInt(epoch.Add(40*time.Second).Unix(), 10), 40 * time.Second, true},
		{strconv.FormatInt(epoch.Add(-time.Hour).UnixMilli(), 10), 0, true},
		{strconv.FormatInt(epoch.Add(-time.Hour).Unix(), 10), 0, true},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.header != "" {
			h.Set("Retry-After", tt.header)
		}
		got, gotOK := RetryAfter(h, epoch)
		if got != tt.want || gotOK != tt.wantOK {
			t.Errorf("RetryAfter(%q) = %v, %v, want %v, %v", tt.header, got, gotOK, tt.want, tt.wantOK)
		}
	}
}

func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"120", "-1", "1.5", "Mon, 01 Jan 2024 00:00:30 GMT", "1704067220000",
		"1704067240", "", "soon", "1e400", "9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := RetryAfter(http.Header{"Retry-After": {v}}, epoch)
		if d < 0 {
			t.Errorf("RetryAfter(%q) = %v, want ≥ 0", v, d)
		}
		if !ok && d != 0 {
			t.Errorf("RetryAfter(%q) = %v, false, want 0 when not ok", v, d)
		}
	})
}

func TestRetryable(t *testing.T) {
	want := map[int]bool{408: true, 425: true, 429: true, 500: true, 502: true, 503: true, 504: true}
	for code := 100; code < 600; code++ {
		if got := Retryable(code); got != want[code] {
			t.Errorf("Retryable(%d) = %v, want %v", code, got, want[code])
		}
	}
}

// TestStatusTable sends one request per status class to a server that always answers with it.
func TestStatusTable(t *testing.T) {
	codes := []int{200, 201, 202, 204, 304, 400, 401, 403, 404, 405, 406, 408, 409, 410, 412, 413,
		415, 422, 425, 429, 500, 501, 502, 503, 504, 505, 507, 511}
	for _, code := range codes {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			srv, rec := serve(t, status(code, ""))
			c, _ := newTestClient(t, srv.URL+"/fhir", Options{MaxAttempts: 3})
			resp, err := c.Do(t.Context(), &Request{URL: "status/1", Route: RouteStatus})
			wantTries := 1
			if Retryable(code) {
				wantTries = 3
			}
			if got := len(rec.Requests()); got != wantTries {
				t.Errorf("GET with %d: %d requests, want %d", code, got, wantTries)
			}
			if code < 400 {
				if err != nil {
					t.Fatalf("Do with %d = %v, want a response", code, err)
				}
				resp.Body.Close()
				return
			}
			se, ok := errors.AsType[*StatusError](err)
			if !ok || se.StatusCode != code {
				t.Fatalf("Do with %d = %v, want a *StatusError with that code", code, err)
			}
			if gaveUp := strings.Contains(err.Error(), "giving up after 3 attempts"); gaveUp != Retryable(code) {
				t.Errorf("Do with %d = %q, want giving up only for retryable statuses", code, err)
			}
		})
	}
}

func TestGiveUpMessage(t *testing.T) {
	srv, rec := serve(t, status(503, ""))
	c, clk := newTestClient(t, srv.URL+"/fhir", Options{})
	_, err := c.Do(t.Context(), &Request{URL: "status/1", Route: RouteStatus})
	want := "GET " + srv.URL + "/fhir/status/1: giving up after 6 attempts: 503 Service Unavailable"
	if err == nil || err.Error() != want {
		t.Fatalf("Do = %v, want %q", err, want)
	}
	if got := len(rec.Requests()); got != 6 {
		t.Errorf("requests = %d, want 6 (MaxAttempts default)", got)
	}
	wantSleeps := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
	if diff := cmp.Diff(wantSleeps, clk.Sleeps()); diff != "" {
		t.Errorf("sleeps (-want +got):\n%s", diff)
	}
}

func TestGiveUpTransportError(t *testing.T) {
	c, clk := newTestClient(t, closedURL(t), Options{MaxAttempts: 3})
	_, err := c.Do(t.Context(), &Request{URL: "metadata", Route: RouteMetadata})
	if err == nil || !strings.Contains(err.Error(), "giving up after 3 attempts: dial tcp") {
		t.Fatalf("Do to a closed port = %v, want giving up after 3 attempts: dial tcp …", err)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("Do to a closed port = %v, want it to wrap ECONNREFUSED", err)
	}
	if got := len(clk.Sleeps()); got != 2 {
		t.Errorf("sleeps = %d, want 2", got)
	}
}

// TestRetryAfterInDo checks that each Retry-After form and each route's cap reach the sleep.
func TestRetryAfterInDo(t *testing.T) {
	tests := []struct {
		name    string
		route   Route
		header  string
		maxWait map[Route]time.Duration
		want    time.Duration
	}{
		{"seconds", RouteStatus, "7", nil, 7 * time.Second},
		{"http-date", RouteStatus, epoch.Add(30 * time.Second).Format(http.TimeFormat), nil, 30 * time.Second},
		{"epoch-ms", RouteStatus, strconv.FormatInt(epoch.Add(20*time.Second).UnixMilli(), 10), nil, 20 * time.Second},
		{"epoch-s", RouteStatus, strconv.FormatInt(epoch.Add(40*time.Second).Unix(), 10), nil, 40 * time.Second},
		{"past date", RouteStatus, epoch.Add(-time.Hour).Format(http.TimeFormat), nil, 0},
		{"unparseable falls back to backoff", RouteStatus, "soon", nil, 500 * time.Millisecond},
		{"status cap", RouteStatus, "3600", nil, 5 * time.Minute},
		{"file cap", RouteFile, "3600", nil, 2 * time.Minute},
		{"attachment cap", RouteAttachment, "3600", nil, 2 * time.Minute},
		{"metadata cap", RouteMetadata, "3600", nil, time.Minute},
		{"kickoff cap", RouteKickoff, "3600", nil, time.Minute},
		{"other cap", RouteOther, "3600", nil, time.Minute},
		{"custom cap", RouteFile, "3600", map[Route]time.Duration{RouteFile: 10 * time.Second}, 10 * time.Second},
		{"zero entry keeps default", RouteFile, "3600", map[Route]time.Duration{RouteFile: 0}, 2 * time.Minute},
		{"epoch-ms capped", RouteFile, strconv.FormatInt(epoch.Add(time.Hour).UnixMilli(), 10), nil, 2 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := serve(t, status(503, tt.header), respond("{}"))
			c, clk := newTestClient(t, srv.URL+"/fhir", Options{MaxWait: tt.maxWait})
			resp, err := c.Do(t.Context(), &Request{URL: "x", Route: tt.route})
			if err != nil {
				t.Fatalf("Do = %v", err)
			}
			resp.Body.Close()
			if diff := cmp.Diff([]time.Duration{tt.want}, clk.Sleeps()); diff != "" {
				t.Errorf("Retry-After %q on %s: sleeps (-want +got):\n%s", tt.header, tt.route, diff)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		n     int
		rand  float64
		limit time.Duration
		want  time.Duration
	}{
		{1, 0, time.Minute, 500 * time.Millisecond},
		{1, 0.5, time.Minute, 750 * time.Millisecond},
		{2, 0, time.Minute, time.Second},
		{3, 0.5, time.Minute, 3 * time.Second},
		{7, 0, time.Minute, 30 * time.Second}, // 64 s capped to 60 s, then jittered in [30, 60)
		{7, 0.999, time.Minute, 59970 * time.Millisecond},
		{100, 0, time.Minute, 30 * time.Second}, // no overflow
		{0, 0, time.Minute, 500 * time.Millisecond},
		{1, 7, time.Minute, time.Second}, // a bad Rand is clamped
		{1, -1, time.Minute, 500 * time.Millisecond},
	}
	for _, tt := range tests {
		c := &Client{rand: func() float64 { return tt.rand }}
		if got := c.backoff(tt.n, tt.limit); got != tt.want {
			t.Errorf("backoff(%d) with rand %v = %v, want %v", tt.n, tt.rand, got, tt.want)
		}
	}
}

func TestWait(t *testing.T) {
	c, clk := newTestClient(t, "http://fhir.example/fhir", Options{})
	ctx := t.Context()
	if err := c.Wait(ctx, RouteStatus, 1, http.Header{"Retry-After": {"30"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(ctx, RouteStatus, 1, http.Header{"Retry-After": {"86400"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(ctx, RouteFile, 3, nil); err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{30 * time.Second, 5 * time.Minute, 2 * time.Second}
	if diff := cmp.Diff(want, clk.Sleeps()); diff != "" {
		t.Errorf("Wait sleeps (-want +got):\n%s", diff)
	}
	if got := c.MaxAttempts(); got != 6 {
		t.Errorf("MaxAttempts() = %d, want 6", got)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := c.Wait(cancelled, RouteStatus, 1, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait(cancelled) = %v, want context.Canceled", err)
	}
}

func TestDefaultSleep(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	if err := Sleep(ctx, 0); err != nil {
		t.Errorf("Sleep(0) = %v, want nil", err)
	}
	cancel()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep(cancelled, 1h) = %v, want context.Canceled", err)
	}
}

func TestKickoffRule(t *testing.T) {
	tests := []struct {
		name       string
		first      http.HandlerFunc
		wantTries  int
		wantStatus int // 0: success
	}{
		{"429 retried", status(429, ""), 2, 0},
		{"429 with Retry-After retried", status(429, "3"), 2, 0},
		{"503 with Retry-After retried", status(503, "3"), 2, 0},
		{"503 without Retry-After not retried", status(503, ""), 1, 503},
		{"503 with bad Retry-After not retried", status(503, "later"), 1, 503},
		{"500 not retried", status(500, ""), 1, 500},
		{"502 not retried", status(502, ""), 1, 502},
		{"504 not retried", status(504, ""), 1, 504},
		{"408 not retried", status(408, ""), 1, 408},
		{"425 not retried", status(425, ""), 1, 425},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, rec := serve(t, tt.first, status(202, ""))
			c, _ := newTestClient(t, srv.URL+"/fhir", Options{})
			resp, err := c.Do(t.Context(), &Request{Method: "POST", URL: "$export", Body: []byte(`{"resourceType":"Parameters"}`), Route: RouteKickoff})
			if got := len(rec.Requests()); got != tt.wantTries {
				t.Errorf("kickoff: %d requests, want %d", got, tt.wantTries)
			}
			if tt.wantStatus == 0 {
				if err != nil {
					t.Fatalf("kickoff = %v, want 202", err)
				}
				resp.Body.Close()
				return
			}
			if se, ok := errors.AsType[*StatusError](err); !ok || se.StatusCode != tt.wantStatus {
				t.Errorf("kickoff = %v, want *StatusError %d", err, tt.wantStatus)
			}
			if strings.Contains(fmt.Sprint(err), "giving up") {
				t.Errorf("kickoff = %v, want no retries mentioned", err)
			}
		})
	}
}

func TestKickoffResetAfterSend(t *testing.T) {
	for _, method := range []string{"GET", "POST"} {
		t.Run(method, func(t *testing.T) {
			srv, rec := serve(t, reset, status(202, ""))
			c, clk := newTestClient(t, srv.URL+"/fhir", Options{})
			var body []byte
			if method == "POST" {
				body = []byte(`{"resourceType":"Parameters"}`)
			}
			_, err := c.Do(t.Context(), &Request{Method: method, URL: "$export", Body: body, Route: RouteKickoff})
			if !errors.Is(err, ErrMaybeSent) {
				t.Fatalf("kickoff reset after send = %v, want ErrMaybeSent", err)
			}
			wantPrefix := method + " " + srv.URL + "/fhir/$export: "
			if msg := err.Error(); !strings.HasPrefix(msg, wantPrefix) || !strings.HasSuffix(msg, "after the request was sent: an export may already exist on the server") {
				t.Errorf("kickoff reset after send = %q, want %q… after the request was sent: an export may already exist on the server", msg, wantPrefix)
			}
			if got := len(rec.Requests()); got != 1 {
				t.Errorf("kickoff reset after send: %d requests, want 1", got)
			}
			if got := len(clk.Sleeps()); got != 0 {
				t.Errorf("kickoff reset after send: %d sleeps, want 0", got)
			}
		})
	}
}

// TestResetRetriedElsewhere: outside kickoff, a reset is an ordinary transport error.
func TestResetRetriedElsewhere(t *testing.T) {
	srv, rec := serve(t, reset, respond(`{}`))
	c, _ := newTestClient(t, srv.URL+"/fhir", Options{})
	resp, err := c.Do(t.Context(), &Request{URL: "status/1", Route: RouteStatus})
	if err != nil {
		t.Fatalf("status after a reset = %v, want a retry to succeed", err)
	}
	resp.Body.Close()
	if got := len(rec.Requests()); got != 2 {
		t.Errorf("status after a reset: %d requests, want 2", got)
	}
}

// TestKickoffRefusedBeforeSend: a dial that fails never reached the server, so kickoff retries.
func TestKickoffRefusedBeforeSend(t *testing.T) {
	srv, rec := serve(t, status(202, ""))
	var dials atomic.Int32
	d := &net.Dialer{}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dials.Add(1) == 1 {
			return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
		}
		return d.DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	var events []RetryEvent
	c, _ := newTestClient(t, srv.URL+"/fhir", Options{HTTPClient: &http.Client{Transport: tr},
		OnRetry: func(e RetryEvent) { events = append(events, e) }})
	resp, err := c.Do(t.Context(), &Request{Method: "POST", URL: "$export", Body: []byte("{}"), Route: RouteKickoff})
	if err != nil {
		t.Fatalf("kickoff after a refused dial = %v, want a retry to succeed", err)
	}
	resp.Body.Close()
	if got := len(rec.Requests()); got != 1 {
		t.Errorf("server saw %d kickoffs, want 1", got)
	}
	if len(events) != 1 || !strings.Contains(events[0].Reason, "connection refused") {
		t.Errorf("OnRetry events = %+v, want one for the refused connection", events)
	}
}

func TestKickoffRefusedGivesUp(t *testing.T) {
	c, _ := newTestClient(t, closedURL(t), Options{MaxAttempts: 2})
	_, err := c.Do(t.Context(), &Request{Method: "POST", URL: "$export", Route: RouteKickoff})
	if err == nil || errors.Is(err, ErrMaybeSent) || !strings.Contains(err.Error(), "giving up after 2 attempts") {
		t.Errorf("kickoff to a closed port = %v, want giving up after 2 attempts, not ErrMaybeSent", err)
	}
}

// TestBudget: with a budget, "come back later" answers are bounded by time, not MaxAttempts.
func TestBudget(t *testing.T) {
	srv, rec := serve(t, status(429, "10"))
	c, clk := newTestClient(t, srv.URL+"/fhir", Options{MaxAttempts: 2})
	_, err := c.Do(t.Context(), &Request{URL: "$export", Route: RouteKickoff, Budget: 35 * time.Second})
	if got := len(rec.Requests()); got != 4 {
		t.Errorf("kickoff with a 35 s budget and Retry-After 10: %d requests, want 4", got)
	}
	if diff := cmp.Diff([]time.Duration{10 * time.Second, 10 * time.Second, 10 * time.Second}, clk.Sleeps()); diff != "" {
		t.Errorf("sleeps (-want +got):\n%s", diff)
	}
	want := "giving up after 4 attempts (the next try, in 10s, would pass the 35s budget): 429 Too Many Requests"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("kickoff over budget = %v, want …%s", err, want)
	}
	if se, ok := errors.AsType[*StatusError](err); !ok || se.StatusCode != 429 {
		t.Errorf("kickoff over budget = %v, want it to wrap the 429 *StatusError", err)
	}
}

func TestBudgetStillCountsOtherFailures(t *testing.T) {
	srv, rec := serve(t, status(500, ""))
	c, _ := newTestClient(t, srv.URL+"/fhir", Options{MaxAttempts: 3})
	_, err := c.Do(t.Context(), &Request{URL: "status/1", Route: RouteStatus, Budget: time.Hour})
	if got := len(rec.Requests()); got != 3 {
		t.Errorf("500s with a budget: %d requests, want MaxAttempts = 3", got)
	}
	if err == nil || !strings.Contains(err.Error(), "giving up after 3 attempts: 500") {
		t.Errorf("500s with a budget = %v", err)
	}
}

func TestBudgetZeroRetryAfterBacksOff(t *testing.T) {
	srv, _ := serve(t, status(429, "0"), status(429, "0"), status(202, ""))
	c, clk := newTestClient(t, srv.URL+"/fhir", Options{})
	resp, err := c.Do(t.Context(), &Request{URL: "$export", Route: RouteKickoff, Budget: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if diff := cmp.Diff([]time.Duration{500 * time.Millisecond, time.Second}, clk.Sleeps()); diff != "" {
		t.Errorf("sleeps (-want +got):\n%s", diff)
	}
}

func TestCancelWhileWaiting(t *testing.T) {
	srv, _ := serve(t, status(503, ""))
	ctx, cancel := context.WithCancel(t.Context())
	c, _ := newTestClient(t, srv.URL+"/fhir", Options{Sleep: func(context.Context, time.Duration) error {
		cancel()
		return context.Canceled
	}})
	_, err := c.Do(ctx, &Request{URL: "status/1", Route: RouteStatus})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "waiting to retry after 503 Service Unavailable") {
		t.Errorf("Do cancelled while waiting = %v, want context.Canceled, saying what it waited for", err)
	}
}

// TestSettleStops: a Settle hook that cancels the call's context (bulk's kickoff, on a refusal
// that waiting does not cure) ends it at once: no retry is announced, nothing more is sent.
func TestSettleStops(t *testing.T) {
	srv, hits := serve(t, status(429, ""))
	ctx, cancel := context.WithCancel(t.Context())
	var retries int
	c, _ := newTestClient(t, srv.URL+"/fhir", Options{OnRetry: func(RetryEvent) { retries++ }})
	_, err := c.Do(ctx, &Request{URL: "$export", Route: RouteKickoff, Budget: time.Hour,
		Settle: func(error) { cancel() }})
	if !errors.Is(err, context.Canceled) || retries != 0 || len(hits.Requests()) != 1 {
		t.Errorf("Do with a Settle that cancels = %v after %d requests and %d retries announced, want context.Canceled, 1, 0", err, len(hits.Requests()), retries)
	}
}

func TestCancelledContextNotRetried(t *testing.T) {
	srv, rec := serve(t, respond("{}"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	c, clk := newTestClient(t, srv.URL+"/fhir", Options{})
	_, err := c.Do(ctx, &Request{URL: "status/1", Route: RouteStatus})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Do(cancelled) = %v, want context.Canceled", err)
	}
	if n, s := len(rec.Requests()), len(clk.Sleeps()); n != 0 || s != 0 {
		t.Errorf("Do(cancelled): %d requests, %d sleeps, want 0, 0", n, s)
	}
}

func TestBodyReplayed(t *testing.T) {
	const body = `{"resourceType":"Parameters","parameter":[{"name":"_type","valueString":"Patient"}]}`
	redirect := func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/fhir/moved/$export", http.StatusTemporaryRedirect)
	}
	srv, rec := serve(t, status(429, ""), redirect, status(202, ""))
	c, _ := newTestClient(t, srv.URL+"/fhir", Options{})
	resp, err := c.Do(t.Context(), &Request{Method: "POST", URL: "$export", Body: []byte(body),
		Header: http.Header{"Content-Type": {"application/fhir+json"}}, Route: RouteKickoff})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	reqs := rec.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3 (429, 307, 202)", len(reqs))
	}
	for i, r := range reqs {
		if r.Method != "POST" || r.Body != body || r.Header.Get("Content-Type") != "application/fhir+json" {
			t.Errorf("request %d = %s %q (%s), want POST with the original body", i, r.Method, r.Body, r.Header.Get("Content-Type"))
		}
	}
	if reqs[2].Path != "/fhir/moved/$export" {
		t.Errorf("request 3 path = %q, want the redirect target", reqs[2].Path)
	}
}

// countingTransport tracks response bodies opened and closed.
type countingTransport struct {
	base           http.RoundTripper
	opened, closed atomic.Int32
}

func (ct *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := ct.base.RoundTrip(r)
	if resp != nil {
		ct.opened.Add(1)
		resp.Body = &closeCounter{ReadCloser: resp.Body, n: &ct.closed}
	}
	return resp, err
}

type closeCounter struct {
	io.ReadCloser
	n    *atomic.Int32
	done bool
}

func (cc *closeCounter) Close() error {
	if !cc.done {
		cc.done = true
		cc.n.Add(1)
	}
	return cc.ReadCloser.Close()
}

func TestBodiesClosed(t *testing.T) {
	big := strings.Repeat("x", 200<<10)
	bodyStatus := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(code)
			io.WriteString(w, big)
		}
	}
	srv, _ := serve(t, bodyStatus(503), bodyStatus(502), bodyStatus(404))
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	ct := &countingTransport{base: tr}
	c, _ := newTestClient(t, srv.URL+"/fhir", Options{HTTPClient: &http.Client{Transport: ct}})
	_, err := c.Do(t.Context(), &Request{URL: "x", Route: RouteFile})
	se, ok := errors.AsType[*StatusError](err)
	if !ok || se.StatusCode != 404 {
		t.Fatalf("Do = %v, want a 404 *StatusError", err)
	}
	if len(se.Body) != maxErrorBody {
		t.Errorf("StatusError.Body = %d bytes, want %d", len(se.Body), maxErrorBody)
	}
	if o, cl := ct.opened.Load(), ct.closed.Load(); o != 3 || cl != 3 {
		t.Errorf("bodies opened %d, closed %d; want 3, 3", o, cl)
	}

	// A success hands the body to the caller, unread.
	srv2, _ := serve(t, bodyStatus(503), respond("payload"))
	ct2 := &countingTransport{base: tr}
	c2, _ := newTestClient(t, srv2.URL+"/fhir", Options{HTTPClient: &http.Client{Transport: ct2}})
	resp, err := c2.Do(t.Context(), &Request{URL: "x", Route: RouteFile})
	if err != nil {
		t.Fatal(err)
	}
	if o, cl := ct2.opened.Load(), ct2.closed.Load(); o != 2 || cl != 1 {
		t.Errorf("before the caller closes: bodies opened %d, closed %d; want 2, 1", o, cl)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "payload" {
		t.Errorf("body = %q, want payload", b)
	}
}

func TestOnRetry(t *testing.T) {
	srv, _ := serve(t, status(503, "4"), status(500, ""), respond("{}"))
	var events []RetryEvent
	c, _ := newTestClient(t, srv.URL+"/fhir", Options{OnRetry: func(e RetryEvent) { events = append(events, e) }})
	resp, err := c.Do(t.Context(), &Request{URL: "files/a.ndjson?X-Amz-Signature=deadbeef&part=1", Route: RouteFile})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	u := srv.URL + "/fhir/files/a.ndjson?X-Amz-Signature=REDACTED&part=1"
	want := []RetryEvent{
		{Method: "GET", URL: u, Route: RouteFile, Attempt: 1, Wait: 4 * time.Second, Reason: "503 Service Unavailable"},
		{Method: "GET", URL: u, Route: RouteFile, Attempt: 2, Wait: time.Second, Reason: "500 Internal Server Error"},
	}
	// Err is the failure itself, the *StatusError a caller would have got, with its headers.
	for i, code := range []int{503, 500} {
		if i >= len(events) {
			break
		}
		if se, ok := errors.AsType[*StatusError](events[i].Err); !ok || se.StatusCode != code || se.URL != u {
			t.Errorf("event %d: Err = %v, want the *StatusError of the %d from %s", i+1, events[i].Err, code, u)
		}
		events[i].Err = nil
	}
	if diff := cmp.Diff(want, events); diff != "" {
		t.Errorf("OnRetry events (-want +got):\n%s", diff)
	}
}

// TestKickoffCancelledAfterSend: an interrupt once the kickoff is out still warns of an export.
func TestKickoffCancelledAfterSend(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		cancel() // the request has fully arrived: the user presses Ctrl-C now
		<-r.Context().Done()
	})
	c, _ := newTestClient(t, srv.URL+"/fhir", Options{})
	_, err := c.Do(ctx, &Request{Method: "POST", URL: "$export", Body: []byte("{}"), Route: RouteKickoff})
	if !errors.Is(err, ErrMaybeSent) || !errors.Is(err, context.Canceled) {
		t.Errorf("kickoff cancelled after send = %v, want ErrMaybeSent and context.Canceled", err)
	}
}

// TestConcurrentUse runs requests while origins are trusted, for the race detector.
func TestConcurrentUse(t *testing.T) {
	srv, rec := serve(t, status(503, "0"), respond("{}"))
	c, _ := newTestClient(t, srv.URL+"/fhir", Options{Credentials: &fakeCreds{}})
	done := make(chan error)
	for i := range 8 {
		go func() {
			resp, err := c.Do(t.Context(), &Request{URL: "Binary/" + strconv.Itoa(i), Route: RouteAttachment})
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		go func() { done <- c.Trust("https://files" + strconv.Itoa(i) + ".example.org") }()
	}
	for range 16 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	if n := len(rec.Requests()); n != 9 {
		t.Errorf("%d requests, want 9 (one 503, then 8 successes)", n)
	}
}
