package fhirtest

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// TestVendorKickoff: each vendor's answer to kickoffs it does not take, and to those it does.
func TestVendorKickoff(t *testing.T) {
	tests := []struct {
		name       string
		opts       Options
		path, raw  string // raw query
		lenient    bool
		wantStatus int
		wantText   string // in the OperationOutcome's diagnostics
	}{
		{"epic system level", Options{Vendor: VendorEpic}, "/$export", "", false, 404, "Group-level export only"},
		{"epic patient level", Options{Vendor: VendorEpic}, "/Patient/$export", "", false, 404, "Group-level export only"},
		{"epic group", Options{Vendor: VendorEpic}, "/Group/g1/$export", "_type=Patient", false, 202, ""},
		{"epic since supported", Options{Vendor: VendorEpic}, "/Group/g1/$export", "_since=2020-01-01T00:00:00Z", false, 202, ""},
		{"epic since rejected", Options{Vendor: VendorEpic, EpicParams: ParamsRejected}, "/Group/g1/$export", "_since=2020-01-01T00:00:00Z", false, 400, "_since is not supported"},
		{"epic typeFilter rejected", Options{Vendor: VendorEpic, EpicParams: ParamsRejected}, "/Group/g1/$export", "_typeFilter=Observation%3Fcategory%3Dlaboratory", false, 400, "_typeFilter is not supported"},
		{"epic typeFilter ignored", Options{Vendor: VendorEpic, EpicParams: ParamsIgnored}, "/Group/g1/$export", "_typeFilter=Observation%3Fbogus%3D1", false, 202, ""},
		{"oracle system level", Options{Vendor: VendorOracle}, "/$export", "", false, 404, "Group-level export only"},
		{"oracle typeFilter", Options{Vendor: VendorOracle}, "/Group/g1/$export", "_typeFilter=Observation%3Fcategory%3Dlaboratory", false, 400, "_typeFilter is not supported"},
		{"oracle elements", Options{Vendor: VendorOracle}, "/Group/g1/$export", "_elements=id", false, 400, "_elements is not supported"},
		{"oracle includeAssociatedData", Options{Vendor: VendorOracle}, "/Group/g1/$export", "includeAssociatedData=LatestProvenanceResources", false, 400, "includeAssociatedData is not supported"},
		{"oracle lenient drops", Options{Vendor: VendorOracle}, "/Group/g1/$export", "_elements=id", true, 202, ""},
		{"oracle repeated _type", Options{Vendor: VendorOracle}, "/Group/g1/$export", "_type=Patient&_type=Observation", false, 400, "_type given 2 times"},
		{"oracle one _type list", Options{Vendor: VendorOracle}, "/Group/g1/$export", "_type=Patient,Observation", false, 202, ""},
		{"spec repeated _type", Options{}, "/Group/g1/$export", "_type=Patient&_type=Observation", false, 202, ""},
		{"hapi system level", Options{Vendor: VendorHAPI}, "/$export", "_typeFilter=Observation%3Fcategory%3Dlaboratory", false, 202, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, tt.opts)
			h := kickoffHeader()
			if tt.lenient {
				h.Add("Prefer", "handling=lenient")
			}
			u := s.URL() + tt.path
			if tt.raw != "" {
				u += "?" + tt.raw
			}
			resp, body := do(t, "GET", u, h, nil)
			if resp.StatusCode != tt.wantStatus || !strings.Contains(gjson.GetBytes(body, "issue.0.diagnostics").Str, tt.wantText) {
				t.Errorf("GET %s = %s %s, want %d and %q", u, resp.Status, body, tt.wantStatus, tt.wantText)
			}
		})
	}
}

// TestEpicIgnoresFilters: an Epic version that ignores _since and _typeFilter exports everything.
func TestEpicIgnoresFilters(t *testing.T) {
	s := start(t, Options{Vendor: VendorEpic, EpicParams: ParamsIgnored})
	q := url.Values{"_type": {"Observation"}, "_typeFilter": {"Observation?category=laboratory"}}
	got, _ := export(t, s, "/Group/g1/$export", q)
	all, _ := export(t, start(t, Options{}), "/Group/g1/$export", url.Values{"_type": {"Observation"}})
	if len(got["Observation"]) != len(all["Observation"]) || len(all["Observation"]) == 0 {
		t.Errorf("ignored _typeFilter exported %d Observations, want all %d", len(got["Observation"]), len(all["Observation"]))
	}
}

// TestEpicRequestWindow: a second kickoff for the same Group within the window is refused with
// Epic's text, another Group is not; past the window the undeleted export still blocks the
// Group; a DELETE lifts both.
func TestEpicRequestWindow(t *testing.T) {
	clock := &fakeClock{t: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := start(t, Options{Vendor: VendorEpic, RequestWindow: time.Hour, Now: clock.now})
	status := kickoff(t, s, "/Group/g1/$export", nil, nil)
	refused := func(want string) {
		t.Helper()
		resp, body := do(t, "GET", s.URL()+"/Group/g1/$export", kickoffHeader(), nil)
		if resp.StatusCode != http.StatusTooManyRequests || gjson.GetBytes(body, "issue.0.diagnostics").Str != want ||
			resp.Header.Get("Retry-After") != "" {
			t.Errorf("kickoff = %s %s (Retry-After %q), want 429 %q and no Retry-After",
				resp.Status, body, resp.Header.Get("Retry-After"), want)
		}
	}
	refused(EpicTooRecently)
	kickoff(t, s, "/Group/empty/$export", nil, nil)
	clock.add(time.Hour)
	refused(EpicInProgress)
	do(t, "DELETE", status, nil, nil)
	status = kickoff(t, s, "/Group/g1/$export", nil, nil)
	refused(EpicTooRecently)
	do(t, "DELETE", status, nil, nil)
	kickoff(t, s, "/Group/g1/$export", nil, nil)
}

// TestEpicOneAtATime: without a window, the next kickoff for the Group is refused until the
// previous export is DELETEd, even after its manifest came.
func TestEpicOneAtATime(t *testing.T) {
	s := start(t, Options{Vendor: VendorEpic})
	status := kickoff(t, s, "/Group/g1/$export", nil, nil)
	poll(t, status, nil)
	resp, body := do(t, "GET", s.URL()+"/Group/g1/$export", kickoffHeader(), nil)
	if resp.StatusCode != http.StatusTooManyRequests || gjson.GetBytes(body, "issue.0.diagnostics").Str != EpicInProgress {
		t.Errorf("kickoff while an export lives = %s %s, want 429 %q", resp.Status, body, EpicInProgress)
	}
	if resp, body := do(t, "DELETE", status, nil, nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE %s = %s %s", status, resp.Status, body)
	}
	kickoff(t, s, "/Group/g1/$export", nil, nil)
}

// TestOracleOneInProgress: Oracle allows one export in progress per client, any Group; a
// finished one does not count.
func TestOracleOneInProgress(t *testing.T) {
	s := start(t, Options{Vendor: VendorOracle, Polls: 1})
	status := kickoff(t, s, "/Group/g1/$export", nil, nil)
	resp, body := do(t, "GET", s.URL()+"/Group/empty/$export", kickoffHeader(), nil)
	if resp.StatusCode != http.StatusTooManyRequests || gjson.GetBytes(body, "issue.0.diagnostics").Str != oracleBusy {
		t.Errorf("kickoff while another is in progress = %s %s, want 429 %q", resp.Status, body, oracleBusy)
	}
	poll(t, status, nil)
	kickoff(t, s, "/Group/empty/$export", nil, nil)
}

// TestHAPIStatus: HAPI's status URL form, progress text, failed job and DELETE answers.
func TestHAPIStatus(t *testing.T) {
	s := start(t, Options{Vendor: VendorHAPI, Polls: 1})
	status := kickoff(t, s, "/Patient/$export", nil, nil)
	if !strings.HasPrefix(status, s.URL()+"/$export-poll-status?_jobId=") {
		t.Fatalf("Content-Location = %q, want %s/$export-poll-status?_jobId=…", status, s.URL())
	}
	resp, _ := do(t, "GET", status, nil, nil)
	if resp.StatusCode != http.StatusAccepted || !strings.HasPrefix(resp.Header.Get("X-Progress"), "Build in progress - Status set to BUILDING at ") {
		t.Errorf("first poll = %s, X-Progress %q, want 202 and HAPI's progress text", resp.Status, resp.Header.Get("X-Progress"))
	}
	m, _ := poll(t, status, nil)
	if !m.RequiresAccessToken {
		t.Error("HAPI's manifest says requiresAccessToken: true, even without auth")
	}
	for _, it := range m.Output {
		if it.Type != "Patient" {
			t.Errorf("Patient-level export without _type has %s, want Patient only (HAPI's default)", it.Type)
		}
	}
	if resp, body := do(t, "DELETE", status, nil, nil); resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "already cancelled or has completed") {
		t.Errorf("DELETE of a finished job = %s %s, want 404", resp.Status, body)
	}
	s.AddFault(Fault{Kind: FaultFailJob, Count: 1})
	failed := kickoff(t, s, "/$export", nil, nil)
	do(t, "GET", failed, nil, nil)
	resp, body := do(t, "GET", failed, nil, nil)
	if resp.StatusCode != http.StatusInternalServerError || gjson.GetBytes(body, "resourceType").Str != "OperationOutcome" {
		t.Errorf("failed job = %s %s, want 500 with an OperationOutcome", resp.Status, body)
	}
	if resp, _ := do(t, "GET", s.URL()+"/$export-poll-status?_jobId=nope", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown job = %s, want 404", resp.Status)
	}
}

// TestSMARTRateLimit: past the limit a client gets 429 with Retry-After in epoch milliseconds,
// then epoch seconds while blocked, and is let through once the block ends.
func TestSMARTRateLimit(t *testing.T) {
	clock := &fakeClock{t: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := start(t, Options{Vendor: VendorSMART, RateLimit: 2, RateBlock: time.Minute, Now: clock.now})
	status := kickoff(t, s, "/Group/g1/$export", nil, nil)
	do(t, "GET", status, nil, nil)
	do(t, "GET", status, nil, nil)
	resp, body := do(t, "GET", status, nil, nil)
	until := clock.now().Add(time.Minute)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != strconv.FormatInt(until.UnixMilli(), 10) {
		t.Errorf("third status request = %s %s, Retry-After %q, want 429 and %d (epoch ms)", resp.Status, body, resp.Header.Get("Retry-After"), until.UnixMilli())
	}
	resp, _ = do(t, "GET", status, nil, nil)
	if resp.Header.Get("Retry-After") != strconv.FormatInt(until.Unix(), 10) {
		t.Errorf("blocked status request: Retry-After %q, want %d (epoch s)", resp.Header.Get("Retry-After"), until.Unix())
	}
	clock.add(time.Minute)
	if resp, _ := do(t, "GET", status, nil, nil); resp.StatusCode == http.StatusTooManyRequests {
		t.Errorf("status request after the block = %s, want it served", resp.Status)
	}
}

// TestVendorCapability: a Group-only vendor declares no system or Patient-level export, and the
// publisher names the vendor (bulk-kickoff sends Epic-Client-ID to Epic).
func TestVendorCapability(t *testing.T) {
	s := start(t, Options{Vendor: VendorEpic, EpicParams: ParamsRejected})
	_, body := do(t, "GET", s.URL()+"/metadata", nil, nil)
	if gjson.GetBytes(body, "rest.0.operation").Exists() || gjson.GetBytes(body, `rest.0.resource.#(type=="Patient").operation`).Exists() {
		t.Errorf("epic CapabilityStatement declares system or Patient-level export: %s", body)
	}
	if !gjson.GetBytes(body, `rest.0.resource.#(type=="Group").operation`).Exists() {
		t.Errorf("epic CapabilityStatement lacks Group export: %s", body)
	}
	if !strings.Contains(gjson.GetBytes(body, "publisher").Str, "Epic") {
		t.Errorf("publisher = %q, want Epic named", gjson.GetBytes(body, "publisher").Str)
	}
	if got := s.UnsupportedParams(); strings.Join(got, ",") != "_since,_typeFilter" {
		t.Errorf("UnsupportedParams() = %v, want [_since _typeFilter]", got)
	}
}

// TestVendorFlags: a vendor's defaults apply to flags not given, and given flags win.
func TestVendorFlags(t *testing.T) {
	o, err := ParseFlags([]string{"--vendor", "epic"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if o.RequestWindow != 24*time.Hour || o.RetryAfter != 120*time.Second || o.Vendor != VendorEpic {
		t.Errorf("--vendor epic: window %v, retry-after %v, want 24h, 2m", o.RequestWindow, o.RetryAfter)
	}
	o, err = ParseFlags([]string{"--vendor", "epic", "--request-window", "0", "--retry-after", "0"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if o.RequestWindow != 0 || o.RetryAfter != 0 {
		t.Errorf("--vendor epic --request-window 0 --retry-after 0: %v, %v, want 0, 0", o.RequestWindow, o.RetryAfter)
	}
	for _, bad := range [][]string{{"--vendor", "cerner"}, {"--epic-params", "rejected"}, {"--vendor", "epic", "--epic-params", "maybe"}} {
		if _, err := ParseFlags(bad, ""); err == nil {
			t.Errorf("ParseFlags(%q) = nil error, want one", bad)
		}
	}
}
