package fhirtest

import (
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Vendors of Options.Vendor: habits of real servers, each taken from the vendor's documentation
// or from the issue trackers of tools run against it (docs/servers.md names the sources). ""
// is plain spec behaviour.
const (
	VendorEpic   = "epic"   // Epic: Group only, one export per client and Group, request window, long ids
	VendorOracle = "oracle" // Oracle Health (Cerner) Millennium: Group only, few parameters, scopes per type
	VendorSMART  = "smart"  // the SMART reference server (smart-on-fhir/bulk-data-server): rate limit, strict scopes
	VendorHAPI   = "hapi"   // HAPI FHIR JPA: $export-poll-status?_jobId=, failed jobs as 500
)

// Vendors lists the names Options.Vendor accepts.
var Vendors = []string{VendorEpic, VendorOracle, VendorSMART, VendorHAPI}

// Modes of Options.EpicParams: how an older Epic version treats _since and _typeFilter.
const (
	ParamsSupported = "supported"
	ParamsRejected  = "rejected" // 400 with an OperationOutcome
	ParamsIgnored   = "ignored"  // accepted, and the export is not filtered
)

// Refusal texts of the Epic profile. The first is Epic's own wording as reported by users (see
// docs/servers.md); the second is ours: Epic's wording for it is not published.
const (
	EpicTooRecently = "Request not allowed: The Client requested this Group too recently."
	EpicInProgress  = "Request not allowed: The Client already has a request for this Group in progress; DELETE it before requesting the Group again."
	oracleBusy      = "Only one bulk export request for a client application may be in progress at a time."
)

// profile is what a vendor changes in the server's behaviour.
type profile struct {
	groupOnly   bool     // system and Patient-level kickoffs answer 404
	unsupported []string // kickoff parameters answered 400 (dropped under Prefer: handling=lenient)
	ignored     []string // kickoff parameters accepted and not applied
	noRepeats   bool     // a GET that repeats _type answers 400
	perGroup    bool     // one export at a time per client and Group (Epic), else per client (Oracle)
	oneAtATime  bool     // a client's next kickoff is refused while its last export lives
	untilDelete bool     // "lives" lasts until DELETE (Epic), not until the manifest (Oracle)
	scopedTypes bool     // without _type, export only the types the token may read (Oracle)
	hapi        bool     // HAPI's status URL, progress text, failure and DELETE answers
	publisher   string   // CapabilityStatement publisher, which clients read to recognise the vendor
}

// profileOf returns the profile of a vendor and, for Epic, the mode of _since and _typeFilter.
func profileOf(vendor, epicParams string) profile {
	switch vendor {
	case VendorEpic:
		p := profile{groupOnly: true, perGroup: true, oneAtATime: true, untilDelete: true,
			publisher: "Epic Systems Corporation (imitated by the bulkpipe test server)"}
		switch epicParams {
		case ParamsRejected:
			p.unsupported = []string{"_since", "_typeFilter"}
		case ParamsIgnored:
			p.ignored = []string{"_since", "_typeFilter"}
		}
		return p
	case VendorOracle:
		return profile{groupOnly: true, unsupported: []string{"_typeFilter", "_elements", "includeAssociatedData", "patient"},
			noRepeats: true, oneAtATime: true, scopedTypes: true,
			publisher: "Oracle Health (imitated by the bulkpipe test server)"}
	case VendorHAPI:
		return profile{hapi: true, publisher: "HAPI FHIR (imitated by the bulkpipe test server)"}
	}
	return profile{}
}

// VendorDefaults are the values a vendor gives the flags the user did not set: the server's
// habits that the user may still override (cmd/bulk-testserver and .fhirserver/flags apply them).
func VendorDefaults(vendor string) map[string]string {
	switch vendor {
	case VendorEpic:
		// Long waits between polls and short-lived tokens (docs/servers.md: not confirmed by a
		// public source); the window of one request per client and Group (reported as 24 hours).
		return map[string]string{"retry-after": "120s", "token-ttl": "60s", "request-window": "24h"}
	case VendorSMART:
		// bulk-data-server's rateLimiter: 60 requests a minute per client, then 5 minutes blocked.
		return map[string]string{"rate-limit": "60", "rate-limit-block": "5m"}
	case VendorHAPI:
		// BulkDataExportProvider answers every 202 with Retry-After: 120.
		return map[string]string{"retry-after": "120s"}
	}
	return nil
}

// UnsupportedParams are the kickoff parameters the server's vendor profile refuses or ignores:
// the CapabilityStatement leaves them out, so that it is honest about what the server does.
func (s *Server) UnsupportedParams() []string {
	return slices.Concat(s.prof.unsupported, s.prof.ignored)
}

// vendorLevel refuses the levels a Group-only server lacks.
func (s *Server) vendorLevel(w http.ResponseWriter, lv level) bool {
	if s.prof.groupOnly && lv != levelGroup {
		writeOutcome(w, http.StatusNotFound, "not-supported",
			"this server supports Group-level export only: use "+s.URL()+"/Group/ID/$export")
		return false
	}
	return true
}

// vendorParams applies the profile to the kickoff parameters: unsupported ones are an error
// (dropped when lenient), ignored ones are dropped, and a repeated _type is an error.
func (s *Server) vendorParams(params []param, post, lenient bool) ([]param, error) {
	if s.prof.noRepeats && !post {
		if n := countParam(params, "_type"); n > 1 {
			return nil, badf("_type given %d times: give one comma-separated list", n)
		}
	}
	out := params[:0:0]
	for _, p := range params {
		switch {
		case slices.Contains(s.prof.ignored, p.name):
			continue
		case slices.Contains(s.prof.unsupported, p.name) && lenient:
			continue
		case slices.Contains(s.prof.unsupported, p.name):
			return nil, badf("parameter %s is not supported by this server (Prefer: handling=lenient ignores it)", p.name)
		}
		out = append(out, p)
	}
	return out, nil
}

func countParam(params []param, name string) int {
	n := 0
	for _, p := range params {
		if p.name == name {
			n++
		}
	}
	return n
}

// vendorTypes fills in the types of a kickoff without _type where the vendor decides them:
// Oracle exports what the token may read, HAPI's Patient-level export only Patients.
func (s *Server) vendorTypes(req *exportRequest, lv level, tok *token) {
	switch {
	case req.Types != nil:
	case s.prof.scopedTypes && tok != nil && !tok.all:
		req.Types = []string{}
		for _, t := range s.data.types {
			if tok.can(t) {
				req.Types = append(req.Types, t)
			}
		}
	case s.prof.hapi && lv == levelPatient:
		req.Types = []string{"Patient"}
	}
}

// clientOf names the client of a request: the SMART client, else "" (one anonymous client).
func clientOf(tok *token) string {
	if tok == nil {
		return ""
	}
	return tok.client
}

// admit applies the vendor's limits on exports per client (under s.mu): the request window of
// one kickoff per client and Group (lifted by DELETE), and one export at a time. It returns the
// refusal's text, or "" and records the kickoff.
func (s *Server) admit(client string, req *exportRequest) string {
	key := windowKey(client, req.Group)
	now := s.now()
	if last, ok := s.lastKickoff[key]; ok && s.opts.RequestWindow > 0 && now.Sub(last) < s.opts.RequestWindow {
		return EpicTooRecently
	}
	if s.prof.oneAtATime {
		for _, j := range s.jobs {
			if j.client != client || (s.prof.perGroup && j.req.Group != req.Group) {
				continue
			}
			if s.prof.untilDelete {
				return EpicInProgress
			}
			if j.completed.IsZero() {
				return oracleBusy
			}
		}
	}
	if s.opts.RequestWindow > 0 {
		s.lastKickoff[key] = now
	}
	return ""
}

// windowKey keys Server.lastKickoff: a client and a Group.
func windowKey(client, group string) string { return client + "\x00" + group }

// refuse answers a kickoff the vendor's limits do not allow. The status is 429 with no
// Retry-After: waiting a little does not help, and a client must not retry for hours.
func refuse(w http.ResponseWriter, text string) {
	writeOutcome(w, http.StatusTooManyRequests, "processing", text)
}

// statusURL is the status URL of a job, in the vendor's form.
func (s *Server) statusURL(id string) string {
	if s.prof.hapi {
		return s.URL() + "/$export-poll-status?_jobId=" + id
	}
	return s.URL() + "/status/" + id
}

// hapiPollStatus answers HAPI's status URL, [base]/$export-poll-status?_jobId=ID.
func (s *Server) hapiPollStatus(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("_jobId")
	if id == "" {
		writeOutcome(w, http.StatusBadRequest, "processing", "$export-poll-status requires a job ID, please provide the value of target jobId.")
		return
	}
	s.mu.Lock()
	j := s.jobs[id]
	s.mu.Unlock()
	if j == nil {
		writeOutcome(w, http.StatusNotFound, "processing", "Unknown instance ID: "+id+". Please check if the input job ID is valid.")
		return
	}
	if r.Method == http.MethodDelete && !j.completed.IsZero() {
		// HAPI cancels only jobs still running; a finished one answers 404.
		writeOutcome(w, http.StatusNotFound, "processing", "Job instance <"+id+"> was already cancelled or has completed.  Nothing to do.")
		return
	}
	s.statusHandler(id)(w, r)
}

// failJob answers the status request of a job that failed, as the vendor does.
func (s *Server) failJob(w http.ResponseWriter, why string) {
	if s.prof.hapi {
		// HAPI: 500 and an OperationOutcome whose diagnostics is the job's error message.
		writeOutcome(w, http.StatusInternalServerError, "processing", why)
		return
	}
	writeOutcome(w, http.StatusInternalServerError, "exception", "export failed: "+why)
}

// progressText is the X-Progress of a 202.
func (s *Server) progressText(msg string, j *job) string {
	if s.prof.hapi {
		return "Build in progress - Status set to BUILDING at " + j.txTime.Format("2006-01-02T15:04:05.000Z07:00")
	}
	return msg
}

// rateLimited applies the SMART reference server's rate limit to kickoff and status requests:
// past RateLimit requests in a minute, a client is blocked for RateBlock. The first 429 gives
// Retry-After as epoch milliseconds, the next ones as epoch seconds, as bulk-data-server does.
func (s *Server) rateLimited(w http.ResponseWriter, r *http.Request, route string) bool {
	if s.opts.RateLimit <= 0 || (route != RouteKickoff && route != RouteStatus) {
		return false
	}
	client, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		client = r.RemoteAddr
	}
	key := route + "\x00" + client // the reference server keeps one limiter per route
	now := s.now()
	s.mu.Lock()
	rl := s.rates[key]
	if rl == nil {
		rl = &rateState{}
		s.rates[key] = rl
	}
	var retryAfter string
	switch {
	case now.Before(rl.blockedUntil):
		retryAfter = strconv.FormatInt((rl.blockedUntil.UnixMilli()+999)/1000, 10)
	default:
		rl.recent = slices.DeleteFunc(rl.recent, func(t time.Time) bool { return now.Sub(t) >= time.Minute })
		rl.recent = append(rl.recent, now)
		if len(rl.recent) > s.opts.RateLimit {
			rl.blockedUntil = now.Add(s.opts.RateBlock)
			rl.recent = nil
			retryAfter = strconv.FormatInt(rl.blockedUntil.UnixMilli(), 10)
		}
	}
	s.mu.Unlock()
	if retryAfter == "" {
		return false
	}
	w.Header().Set("Retry-After", retryAfter)
	writeBody(w, http.StatusTooManyRequests, "text/html; charset=utf-8", []byte("Too Many Requests. Try again later."))
	return true
}

// rateState is one client's requests in the last minute on one route, and its block.
type rateState struct {
	recent       []time.Time
	blockedUntil time.Time
}

// capability makes the CapabilityStatement honest about the vendor: a Group-only server
// declares no system or Patient-level export.
func (s *Server) capability(rest map[string]any, resources []any) {
	if !s.prof.groupOnly {
		return
	}
	delete(rest, "operation")
	for _, res := range resources {
		if m := res.(map[string]any); m["type"] == "Patient" {
			delete(m, "operation")
		}
	}
}

// checkVendor checks the vendor options.
func (o *Options) checkVendor() error {
	switch {
	case o.Vendor != "" && !slices.Contains(Vendors, o.Vendor):
		return fmt.Errorf("vendor %q: want one of %s", o.Vendor, strings.Join(Vendors, ", "))
	case o.EpicParams != "" && o.EpicParams != ParamsSupported && o.EpicParams != ParamsRejected && o.EpicParams != ParamsIgnored:
		return fmt.Errorf("epic-params %q: want supported, rejected or ignored", o.EpicParams)
	case o.EpicParams != "" && o.EpicParams != ParamsSupported && o.Vendor != VendorEpic:
		return fmt.Errorf("epic-params %s needs vendor epic", o.EpicParams)
	case o.RequestWindow < 0 || o.RateLimit < 0 || o.RateBlock < 0:
		return fmt.Errorf("request window, rate limit and rate limit block must be >= 0")
	}
	return nil
}

// clientKeys returns the client an assertion claims to come from (its unverified iss) and that
// client's keys: Options.ClientID's, or those registered at /auth/register. An unknown issuer
// gets Options.ClientID and its keys, so that the claims check names the client expected.
func (s *Server) clientKeys(tok *jwt.JSONWebToken) (string, []jose.JSONWebKey) {
	var claims jwt.Claims
	if tok.UnsafeClaimsWithoutVerification(&claims) == nil && claims.Issuer != s.opts.ClientID {
		s.mu.Lock()
		keys, ok := s.registered[claims.Issuer]
		s.mu.Unlock()
		if ok {
			return claims.Issuer, keys
		}
	}
	return s.opts.ClientID, s.keys
}

// maxRegistered bounds the clients /auth/register keeps.
const maxRegistered = 1000

// handleRegister registers a client by its public JWKS, as the SMART reference server's
// /auth/register does: a form with jwks (the key set as JSON) answers the new client id as
// text. jwks_url, which the reference server fetches, is refused: this server fetches nothing.
func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeOutcome(w, http.StatusMethodNotAllowed, "not-supported", "/auth/register takes POST")
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "read form: "+err.Error())
		return
	}
	if r.PostForm.Get("jwks") == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "give the client's public keys as jwks (a JWKS); jwks_url is not supported here")
		return
	}
	keys, err := parsePublicKeys([][]byte{[]byte(r.PostForm.Get("jwks"))})
	if err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "jwks: "+err.Error())
		return
	}
	id := "client-" + strings.ToLower(rand.Text()[:16])
	s.mu.Lock()
	if len(s.registered) >= maxRegistered {
		s.mu.Unlock()
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "too many registered clients")
		return
	}
	s.registered[id] = keys
	s.mu.Unlock()
	writeBody(w, http.StatusOK, "text/plain; charset=utf-8", []byte(id))
}
