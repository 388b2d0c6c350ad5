package fhirtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tidwall/gjson"
)

func TestParseFault(t *testing.T) {
	tests := []struct {
		spec string
		want Fault
	}{
		{"500", Fault{Kind: "500"}},
		{"500@status*2", Fault{Kind: "500", Route: "status", Count: 2}},
		{"503:5@kickoff", Fault{Kind: "503", Arg: "5", Route: "kickoff"}},
		{"429:epoch-ms@status%0.25", Fault{Kind: "429", Arg: "epoch-ms", Route: "status", Rate: 0.25}},
		{"429:date", Fault{Kind: "429", Arg: "date"}},
		{"stall:1000@file", Fault{Kind: "stall", Arg: "1000", Route: "file"}},
		{"slow:250%1", Fault{Kind: "slow", Arg: "250", Rate: 1}},
		{"reset@binary*3", Fault{Kind: "reset", Route: "binary", Count: 3}},
		{"401@token", Fault{Kind: "401", Route: "token"}},
		{"expire-links@file", Fault{Kind: "expire-links", Route: "file"}},
		{"dup-lines:3@kickoff*1", Fault{Kind: "dup-lines", Arg: "3", Route: "kickoff", Count: 1}},
		{"no-lastupdated", Fault{Kind: "no-lastupdated"}},
	}
	for _, tt := range tests {
		got, err := ParseFault(tt.spec)
		if err != nil || got != tt.want {
			t.Errorf("ParseFault(%q) = %+v, %v; want %+v", tt.spec, got, err, tt.want)
		}
		if got.String() != tt.spec {
			t.Errorf("ParseFault(%q).String() = %q", tt.spec, got.String())
		}
	}
	for _, bad := range []string{"", "bogus", "500@nowhere", "500*0", "500*x", "500%0", "500%1.5", "503:soon",
		"429:tomorrow", "slow:-1", "dup-lines:0", "dup-lines@file", "expire-links@status", "b64-size:3", "500@"} {
		if f, err := ParseFault(bad); err == nil || !errors.Is(err, ErrFaultSyntax) || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseFault(%q) = %+v, %v; want a one-line ErrFaultSyntax", bad, f, err)
		}
	}
	for _, k := range FaultKinds() {
		if !strings.Contains(FaultGrammar, "--fault "+k) {
			t.Errorf("FaultGrammar has no example of %s", k)
		}
	}
}

func FuzzParseFault(f *testing.F) {
	for _, s := range []string{"500", "503:5@kickoff*2", "429:epoch-ms@status%0.5", "stall:10@file", "dup-lines:3", "x@y*z%w:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		got, err := ParseFault(spec)
		if err != nil {
			return
		}
		again, err := ParseFault(got.String())
		if err != nil || again != got {
			t.Errorf("ParseFault(%q) = %+v; ParseFault(String()) = %+v, %v", spec, got, again, err)
		}
	})
}

// statusCodes polls a status URL n times and returns the codes.
func statusCodes(t *testing.T, u string, n int, h http.Header) []int {
	var codes []int
	for range n {
		resp, _ := do(t, "GET", u, h, nil)
		codes = append(codes, resp.StatusCode)
	}
	return codes
}

func TestFaultStatusCodes(t *testing.T) {
	clock := &fakeClock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
	now := clock.t
	tests := []struct {
		fault      string
		route      string // where to send the requests
		codes      []int
		retryAfter string // on the first answer
		code       string // OperationOutcome issue code of the first answer
	}{
		{"500@status*2", "status", []int{500, 500, 200}, "", "exception"},
		{"503@status", "status", []int{503, 200, 200}, "", "transient"},
		{"503:7@status", "status", []int{503, 200}, "7", "transient"},
		{"429@status", "status", []int{429, 200}, "1", "throttled"},
		{"429:3@file", "file", []int{429, 200}, "3", "throttled"},
		{"429:date@status", "status", []int{429, 200}, now.Add(2 * time.Second).Format(http.TimeFormat), "throttled"},
		{"429:epoch-ms@status", "status", []int{429, 200}, strconv.FormatInt(now.Add(time.Second).UnixMilli(), 10), "throttled"},
		{"429:epoch-s@status", "status", []int{429, 200}, strconv.FormatInt(now.Add(2*time.Second).Unix(), 10), "throttled"},
		{"500@binary", "binary", []int{500, 200}, "", "exception"},
		{"500@file%1", "file", []int{500, 500, 500}, "", "exception"},
		{"503:2@kickoff*1", "kickoff", []int{503, 202}, "2", "transient"},
	}
	for _, tt := range tests {
		f, err := ParseFault(tt.fault)
		if err != nil {
			t.Fatal(err)
		}
		s := start(t, Options{Now: clock.now})
		status := kickoff(t, s, "/$export", url.Values{"_type": {"Patient"}}, nil)
		m, _ := poll(t, status, nil)
		s.AddFault(f)
		target := map[string]string{"status": status, "file": m.Output[0].URL, "binary": s.URL() + "/Binary/b1",
			"kickoff": s.URL() + "/$export"}[tt.route]
		var codes []int
		for i := range tt.codes {
			resp, body := do(t, "GET", target, kickoffHeader(), nil)
			codes = append(codes, resp.StatusCode)
			if i == 0 {
				if ra := resp.Header.Get("Retry-After"); ra != tt.retryAfter {
					t.Errorf("%s: Retry-After = %q, want %q", tt.fault, ra, tt.retryAfter)
				}
				if code := gjson.GetBytes(body, "issue.0.code").Str; code != tt.code {
					t.Errorf("%s: OperationOutcome code = %q (%s), want %q", tt.fault, code, body, tt.code)
				}
			}
		}
		if !slices.Equal(codes, tt.codes) {
			t.Errorf("%s: GET %s codes = %v, want %v", tt.fault, tt.route, codes, tt.codes)
		}
	}
}

func TestFaultAnyRouteAndOrder(t *testing.T) {
	s := start(t, Options{Faults: []Fault{{Kind: "500"}, {Kind: "503", Count: 1}}})
	// Without a route a fault hits the next request, whatever it is; faults fire in order.
	if got := statusCodes(t, s.URL()+"/metadata", 3, nil); !slices.Equal(got, []int{500, 503, 200}) {
		t.Errorf("metadata codes with 500 and 503 faults = %v, want [500 503 200]", got)
	}
}

func TestFaultRateIsSeeded(t *testing.T) {
	run := func() []int {
		s := start(t, Options{Seed: 42, Faults: []Fault{{Kind: "503", Route: "binary", Rate: 0.5}}})
		return statusCodes(t, s.URL()+"/Binary/b1", 20, nil)
	}
	a, b := run(), run()
	fired := slices.Index(a, 503) >= 0 && slices.Index(a, 200) >= 0
	if !slices.Equal(a, b) || !fired {
		t.Errorf("503%%0.5 with seed 42: runs %v and %v, want the same mix of 503 and 200", a, b)
	}
}

func TestFault401(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	s := smartServer(t, clock, Options{Faults: []Fault{{Kind: "401", Route: "status"}}})
	tok := accessToken(t, s, clock.now(), "system/*.read")
	h := kickoffHeader()
	h.Set("Authorization", "Bearer "+tok)
	status := kickoff(t, s, "/$export", nil, h)
	bearer := http.Header{"Authorization": {"Bearer " + tok}}
	// The token "expires": 401 now and for every later use, until the client gets a new one.
	resp, body := do(t, "GET", status, bearer, nil)
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") ||
		gjson.GetBytes(body, "resourceType").Str != "OperationOutcome" {
		t.Fatalf("status with 401 fault = %s %q %s, want 401 invalid_token", resp.Status, resp.Header.Get("WWW-Authenticate"), body)
	}
	if resp, _ := do(t, "GET", status, bearer, nil); resp.StatusCode != 401 {
		t.Errorf("status with the revoked token = %s, want 401", resp.Status)
	}
	fresh := http.Header{"Authorization": {"Bearer " + accessToken(t, s, clock.now(), "system/*.read")}}
	if _, resp := poll(t, status, fresh); resp.StatusCode != 200 {
		t.Errorf("status with a new token = %s, want 200", resp.Status)
	}
}

// rawGet sends a GET on a fresh TCP connection and returns the response with its body unread.
func rawGet(t *testing.T, u string) (*http.Response, net.Conn) {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", pu.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: */*\r\n\r\n", pu.RequestURI(), pu.Host)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: read response head: %v", u, err)
	}
	return resp, conn
}

// faultedFile starts a server with fault f and returns an Observation file's URL and its
// fault-free content (the first GET is the one faulted, so the content comes from a twin).
func faultedFile(t *testing.T, f string) (string, []byte) {
	t.Helper()
	fault, err := ParseFault(f)
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, Options{Patients: 2})
	m, _ := poll(t, kickoff(t, s, "/$export", url.Values{"_type": {"Observation"}}, nil), nil)
	_, full := do(t, "GET", m.Output[0].URL, nil, nil)
	s.AddFault(fault)
	return m.Output[0].URL, full
}

func TestFaultReset(t *testing.T) {
	u, full := faultedFile(t, "reset@file")
	resp, _ := rawGet(t, u)
	body, err := io.ReadAll(resp.Body)
	if resp.ContentLength != int64(len(full)) || resp.StatusCode != 200 {
		t.Errorf("reset: %s Content-Length %d, want 200 with the full length %d", resp.Status, resp.ContentLength, len(full))
	}
	t.Logf("reset: read %d of %d bytes, then %v", len(body), len(full), err)
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("reset: reading the body ended with %v, want connection reset", err)
	}
	if len(body) >= len(full) || !bytes.HasPrefix(full, body) {
		t.Errorf("reset: got %d of %d bytes, want a true prefix", len(body), len(full))
	}
	// The reset is a one-off: the next request gets the whole file.
	if _, again := do(t, "GET", u, nil, nil); !bytes.Equal(again, full) {
		t.Error("reset: the next GET did not return the whole file")
	}
}

func TestFaultResetIsRST(t *testing.T) {
	// Read nothing until the server has cut, so the RST reaches a socket with unread data.
	u, full := faultedFile(t, "reset:100@file")
	resp, conn := rawGet(t, u)
	buf := make([]byte, 100)
	if _, err := io.ReadFull(resp.Body, buf); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("reset:100: read the first 100 bytes: %v", err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := resp.Body.Read(make([]byte, 1))
	t.Logf("reset:100: then %v", err)
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("reset:100: after 100 bytes of %d, read ended with %v, want a connection reset", len(full), err)
	}
}

func TestFaultTruncate(t *testing.T) {
	u, full := faultedFile(t, "truncate@file")
	resp, _ := rawGet(t, u)
	body, err := io.ReadAll(resp.Body)
	if resp.ContentLength != int64(len(full)) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncate: Content-Length %d, read error %v; want %d and unexpected EOF", resp.ContentLength, err, len(full))
	}
	if want := min(len(full)/2, cutDefault); len(body) != want || !bytes.HasPrefix(full, body) {
		t.Errorf("truncate: got %d bytes, want the first %d", len(body), want)
	}
}

func TestFaultTruncateEmptyBody(t *testing.T) {
	s := start(t, Options{Polls: 1, Faults: []Fault{{Kind: "truncate", Route: "status"}}})
	status := kickoff(t, s, "/$export", nil, nil)
	resp, _ := rawGet(t, status) // the 202 has no body: the fault promises one byte
	if _, err := io.ReadAll(resp.Body); resp.StatusCode != 202 || resp.ContentLength != 1 || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncate on an empty 202: %s Content-Length %d read %v, want 202, 1, unexpected EOF", resp.Status, resp.ContentLength, err)
	}
}

func TestFaultStall(t *testing.T) {
	u, full := faultedFile(t, "stall:100@file")
	resp, conn := rawGet(t, u)
	got := make([]byte, 100)
	if _, err := io.ReadFull(resp.Body, got); err != nil || !bytes.Equal(got, full[:100]) {
		t.Fatalf("stall:100: first 100 bytes: %v", err)
	}
	// Then nothing: the connection stays open and silent (a short deadline proves it).
	conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	n, err := resp.Body.Read(make([]byte, 1))
	var ne net.Error
	if n != 0 || !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("stall:100: after 100 bytes read %d, %v; want a timeout with no data", n, err)
	}
}

func TestFaultSlow(t *testing.T) {
	s := start(t, Options{Faults: []Fault{{Kind: "slow", Arg: "250", Route: "binary", Count: 2}, {Kind: "500", Route: "binary"}}})
	var slept []time.Duration
	s.mu.Lock()
	s.sleep = func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }
	s.mu.Unlock()
	codes := statusCodes(t, s.URL()+"/Binary/b1", 3, nil)
	s.mu.Lock()
	defer s.mu.Unlock()
	// slow delays and lets the next fault act: 500 after the first delay, then a plain answer.
	if !slices.Equal(codes, []int{500, 200, 200}) || !slices.Equal(slept, []time.Duration{250 * time.Millisecond, 250 * time.Millisecond}) {
		t.Errorf("slow:250*2 then 500: codes %v, delays %v; want [500 200 200] and two 250ms delays", codes, slept)
	}
}

func TestFaultSlowWallClock(t *testing.T) {
	s := start(t, Options{Faults: []Fault{{Kind: "slow", Arg: "50", Route: "binary"}}})
	begin := time.Now()
	do(t, "GET", s.URL()+"/Binary/b1", nil, nil)
	if d := time.Since(begin); d < 50*time.Millisecond {
		t.Errorf("slow:50 answered after %v, want >= 50ms", d)
	}
}

func TestFaultExpireLinks(t *testing.T) {
	s := start(t, Options{Faults: []Fault{{Kind: "expire-links"}}})
	status := kickoff(t, s, "/$export", url.Values{"_type": {"Patient,Observation"}}, nil)
	m1, _ := poll(t, status, nil)
	for _, it := range m1.Output {
		if resp, body := do(t, "GET", it.URL, nil, nil); resp.StatusCode != http.StatusGone || gjson.GetBytes(body, "issue.0.code").Str != "expired" {
			t.Errorf("GET %s after expire-links = %s %s, want 410 expired", it.Type, resp.Status, body)
		}
	}
	m2, _ := poll(t, status, nil)
	for i, it := range m2.Output {
		if it.URL == m1.Output[i].URL {
			t.Errorf("manifest after expiry kept the URL %s, want a new one", it.URL)
		}
		if resp, _ := do(t, "GET", it.URL, nil, nil); resp.StatusCode != 200 {
			t.Errorf("GET new %s link = %s, want 200", it.Type, resp.Status)
		}
		if resp, _ := do(t, "GET", m1.Output[i].URL, nil, nil); resp.StatusCode != http.StatusGone {
			t.Errorf("GET old %s link = %s, want 410 for good", it.Type, resp.Status)
		}
	}
	if m2.TransactionTime != m1.TransactionTime {
		t.Errorf("transactionTime changed with the links: %s, %s", m1.TransactionTime, m2.TransactionTime)
	}
}

// dataExport runs one export with data faults and returns its Observation and DocumentReference lines.
func dataExport(t *testing.T, opts Options, q url.Values) (*manifestT, map[string][][]byte) {
	t.Helper()
	s := start(t, opts)
	m, _ := poll(t, kickoff(t, s, "/$export", q, nil), nil)
	lines := map[string][][]byte{}
	for _, it := range m.Output {
		_, body := do(t, "GET", it.URL, nil, nil)
		lines[it.Type] = append(lines[it.Type], body)
	}
	return m, lines
}

func TestFaultDupLines(t *testing.T) {
	m, files := dataExport(t, Options{Faults: []Fault{{Kind: "dup-lines", Arg: "2"}}}, url.Values{"_type": {"Observation"}})
	body := files["Observation"][0]
	var got []string
	for _, l := range bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n")) {
		got = append(got, gjson.GetBytes(l, "id").Str)
	}
	if want := []string{"o1", "o2", "o2", "o3", "o4", "o4", "o5"}; !slices.Equal(got, want) || m.Output[0].Count != len(want) {
		t.Errorf("dup-lines:2: ids %v (count %d), want %v and a matching count", got, m.Output[0].Count, want)
	}
	// Across files: the last line of a file opens the next.
	m, files = dataExport(t, Options{FileLines: 2, Faults: []Fault{{Kind: "dup-lines", Arg: "100"}}}, url.Values{"_type": {"Observation"}})
	got = nil
	for i, f := range files["Observation"] {
		n := 0
		for _, l := range bytes.Split(bytes.TrimSuffix(f, []byte("\n")), []byte("\n")) {
			got = append(got, gjson.GetBytes(l, "id").Str)
			n++
		}
		if n != m.Output[i].Count {
			t.Errorf("dup-lines across files: file %d has %d lines, count %d", i, n, m.Output[i].Count)
		}
	}
	if want := []string{"o1", "o2", "o2", "o3", "o3", "o4", "o4", "o5"}; !slices.Equal(got, want) {
		t.Errorf("dup-lines across files of 2 lines: ids %v, want %v", got, want)
	}
}

func TestFaultNoFinalNewline(t *testing.T) {
	s := start(t, Options{Faults: []Fault{{Kind: "no-final-newline", Count: 1}}})
	for i, want := range []bool{false, true} {
		m, _ := poll(t, kickoff(t, s, "/$export", nil, nil), nil)
		for _, it := range slices.Concat(m.Output, m.Error) {
			_, body := do(t, "GET", it.URL, nil, nil)
			if got := bytes.HasSuffix(body, []byte("\n")); got != want || bytes.Count(body, []byte("\n")) != it.Count-1+map[bool]int{true: 1}[want] {
				t.Errorf("export %d (no-final-newline*1): %s ends in newline %v, want %v", i+1, it.Type, got, want)
			}
		}
	}
}

func TestFaultIgnoreTypeFilter(t *testing.T) {
	q := url.Values{"_type": {"Observation"}, "_typeFilter": {"Observation?category=laboratory", "Observation?unknown-param=1"}}
	_, files := dataExport(t, Options{Faults: []Fault{{Kind: "ignore-typefilter"}}}, q)
	if n := bytes.Count(files["Observation"][0], []byte("\n")); n != 5 {
		t.Errorf("ignore-typefilter: %d Observations, want all 5 (filter ignored, even an unsupported one)", n)
	}
}

func TestFaultB64Size(t *testing.T) {
	_, files := dataExport(t, Options{Faults: []Fault{{Kind: "b64-size"}}}, url.Values{"_type": {"DocumentReference"}})
	doc := files["DocumentReference"][0]
	var got []int64
	for _, a := range gjson.GetBytes(doc, "content.#.attachment.size").Array() {
		got = append(got, a.Int())
	}
	// hello (5 bytes) → 8, hello world (11) → 16, %PDF-1.4\n (9) → 12.
	if want := []int64{8, 16, 12}; !slices.Equal(got, want) {
		t.Errorf("b64-size: attachment sizes %v, want base64 lengths %v", got, want)
	}
}

func TestFaultNoLastUpdated(t *testing.T) {
	_, files := dataExport(t, Options{Patients: 2, Faults: []Fault{{Kind: "no-lastupdated"}}}, nil)
	for typ, bodies := range files {
		for _, b := range bodies {
			if bytes.Contains(b, []byte(`"lastUpdated"`)) {
				t.Errorf("no-lastupdated: %s still has meta.lastUpdated", typ)
			}
			if !gjson.ValidBytes(bytes.Split(b, []byte("\n"))[0]) {
				t.Errorf("no-lastupdated: %s line is not valid JSON", typ)
			}
		}
	}
}

func TestFaultErrorCount(t *testing.T) {
	m, files := dataExport(t, Options{Patients: 2, Faults: []Fault{{Kind: "error-count"}}}, nil)
	if len(m.Error) != 1 {
		t.Fatalf("error-count: %d error items, want 1", len(m.Error))
	}
	_, body := do(t, "GET", m.Error[0].URL, nil, nil)
	lines := bytes.Count(body, []byte("\n"))
	want := max(m.Output[0].Count, 2)
	if lines != 1 || m.Error[0].Count != want || len(files[m.Output[0].Type][0]) == 0 {
		t.Errorf("error-count: error file of %d lines with count %d, want 1 line with count %d (the first output file's)", lines, m.Error[0].Count, want)
	}
	if got := gjson.GetBytes(body, "issue.0.severity").Str; got != "error" || !strings.Contains(string(body), m.Output[0].Type) {
		t.Errorf("error-count: error file %s, want an error issue naming %s", body, m.Output[0].Type)
	}
}

func TestFaultsOnHelp(t *testing.T) {
	// Every kind has a test above and an example in FaultGrammar; this keeps the list honest.
	want := []string{"500", "503", "429", "reset", "truncate", "stall", "slow", "401", "expire-links",
		"dup-lines", "no-final-newline", "ignore-typefilter", "b64-size", "no-lastupdated", "error-count", "fail-job"}
	if d := cmp.Diff(want, FaultKinds()); d != "" {
		t.Errorf("FaultKinds() (-want +got):\n%s", d)
	}
	src, err := os.ReadFile("fault_test.go")
	if err != nil {
		t.Fatal(err)
	}
	lower := bytes.ToLower(src)
	for _, k := range want {
		if k[0] >= '0' && k[0] <= '9' {
			continue // 500, 503 and 429 are in TestFaultStatusCodes; 401 has TestFault401
		}
		name := "testfault" + strings.ReplaceAll(k, "-", "")
		if !bytes.Contains(lower, []byte("func "+name+"(")) {
			t.Errorf("no test function %s for fault kind %s", name, k)
		}
	}
}

// TestFaultFailJob: a failed job's status URL answers 500 with an OperationOutcome, on every poll.
func TestFaultFailJob(t *testing.T) {
	s := start(t, Options{Faults: []Fault{{Kind: FaultFailJob}}})
	status := kickoff(t, s, "/$export", nil, nil)
	for range 2 {
		resp, body := do(t, "GET", status, nil, nil)
		if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(gjson.GetBytes(body, "issue.0.diagnostics").Str, "failed") {
			t.Errorf("GET %s = %s %s, want 500 saying the export failed", status, resp.Status, body)
		}
	}
}
