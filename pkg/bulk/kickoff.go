package bulk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/resourcetype"
)

// Level is the scope of an export: the three kickoff endpoints of the IG.
type Level string

// Export levels.
const (
	LevelSystem  Level = "system"  // [base]/$export
	LevelPatient Level = "patient" // [base]/Patient/$export
	LevelGroup   Level = "group"   // [base]/Group/[id]/$export
)

// Target is what an export URL names: the FHIR base, the level and the Group.
type Target struct {
	Base   string // the FHIR base URL, without a trailing slash
	Level  Level
	Group  string   // the Group id at group level, else ""
	Export *url.URL // the $export endpoint, without a query
}

// ParseExportURL reads any URL a user may give bulk-kickoff: a FHIR base, [base]/Patient,
// [base]/Group/ID, or the $export endpoint of any level with or without a query. The query is
// returned apart, undecoded, so that the order and spelling of its parameters survive. A base
// whose last path segment is "Patient", or whose last two are "Group" and an id, is taken for
// that level: give the full $export URL to say otherwise.
func ParseExportURL(raw string) (*Target, string, error) {
	u, err := fhirclient.ParseHTTPURL(strings.TrimSpace(raw))
	if err != nil {
		return nil, "", fmt.Errorf("export URL %w", err)
	}
	query := u.RawQuery
	u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = "", false, "", ""
	p := SplitExportPath(u.EscapedPath())
	t := &Target{Level: p.Level, Group: p.Group}
	base := *u
	setEscapedPath(&base, p.Base)
	t.Base = base.String()
	exp := base
	switch t.Level {
	case LevelPatient:
		setEscapedPath(&exp, p.Base+"/Patient/$export")
	case LevelGroup:
		setEscapedPath(&exp, p.Base+"/Group/"+p.RawGroup+"/$export")
	default:
		setEscapedPath(&exp, p.Base+"/$export")
	}
	t.Export = &exp
	return t, query, nil
}

// ExportPath is what the path of an export URL says (SplitExportPath).
type ExportPath struct {
	Base     string // the FHIR base's path, escaped as given, without a trailing slash
	Level    Level
	Group    string // the Group id, unescaped (as given when it is not a valid escape)
	RawGroup string // the Group id as it appears in the path
	Export   bool   // the path ends in the $export operation
}

// SplitExportPath reads the escaped path of an export URL ("/fhir/Group/a%2Fb/$export"): the one
// reading of a kickoff URL's anatomy, shared by ParseExportURL, BaseURL (the base a logged
// kickoff vouches for) and exportdir.GroupFromURL (the Group a log names). Segments are compared
// escaped, so a Group id holding an escaped slash stays one segment; "$export" may be escaped
// as "%24export".
func SplitExportPath(escaped string) ExportPath {
	segs := strings.Split(strings.TrimRight(escaped, "/"), "/") // segs[0] is "" for an absolute path
	var p ExportPath
	if n := len(segs); n > 1 && isExportOp(segs[n-1]) {
		segs, p.Export = segs[:n-1], true
	}
	for len(segs) > 1 && segs[len(segs)-1] == "" { // "…/Group/ID//$export"
		segs = segs[:len(segs)-1]
	}
	p.Level = LevelSystem
	switch n := len(segs); {
	case n > 1 && segs[n-1] == "Patient":
		p.Level, segs = LevelPatient, segs[:n-1]
	case n >= 2 && segs[n-2] == "Group" && segs[n-1] != "":
		p.Level, p.RawGroup, p.Group = LevelGroup, segs[n-1], segs[n-1]
		if id, err := url.PathUnescape(segs[n-1]); err == nil {
			p.Group = id
		}
		segs = segs[:n-2]
	}
	p.Base = strings.TrimRight(strings.Join(segs, "/"), "/") // "…/fhir//$export"
	return p
}

func isExportOp(seg string) bool {
	op, err := url.PathUnescape(seg)
	return err == nil && op == "$export"
}

// setEscapedPath sets u's path from its escaped form, keeping the escapes as given.
func setEscapedPath(u *url.URL, escaped string) {
	u.Path, u.RawPath = escaped, ""
	if p, err := url.PathUnescape(escaped); err == nil {
		u.Path, u.RawPath = p, escaped
	}
}

// UnknownTypeError is a resource type in _type or a _typeFilter that no FHIR version (R4, R4B,
// R5) defines: most likely a typo, which a server would answer with an error (or, worse, an
// empty export), so Prepare refuses it unless KickoffRequest.AllowUnknownTypes is set.
type UnknownTypeError struct {
	Param      string // _type or _typeFilter
	Name       string // the type as given
	Suggestion string // the type it most likely means, "" when none is close
}

func (e *UnknownTypeError) Error() string {
	msg := fmt.Sprintf("%s %q: not a FHIR resource type", e.Param, e.Name)
	if e.Suggestion != "" {
		msg += "; did you mean " + e.Suggestion + "?"
	}
	return msg
}

// checkTypes finds the first unknown type in _type and in the type part of each _typeFilter.
func checkTypes(ps params) error {
	for _, p := range ps {
		for _, v := range p.values {
			var names []string
			switch p.name {
			case ParamType:
				names = SplitList(v) // a --param value is a comma list
			case ParamTypeFilter:
				name, _, _ := strings.Cut(v, "?")
				names = []string{name}
			}
			for _, name := range names {
				if !resourcetype.Known(name) {
					return &UnknownTypeError{Param: p.name, Name: name, Suggestion: resourcetype.Suggest(name)}
				}
			}
		}
	}
	return nil
}

// BaseURL returns the FHIR base of an export URL as logged in a kickoff event's exportUrl: an
// absolute http(s) URL of the $export operation at any level. Anything else names no base.
func BaseURL(exportURL string) (string, error) {
	t, _, err := ParseExportURL(exportURL)
	if err != nil {
		return "", err
	}
	u, _ := url.Parse(strings.TrimSpace(exportURL))
	if !SplitExportPath(u.EscapedPath()).Export {
		return "", fmt.Errorf("export URL %s: not a $export URL", fhirclient.Redact(exportURL))
	}
	return t.Base, nil
}

// KickoffRequest describes an export to start. Values are taken as given: list flags are split by
// the caller (SplitList), and each TypeFilters entry is one filter, escaped here (EscapeTypeFilter).
type KickoffRequest struct {
	URL                   string   // base, [base]/Patient, [base]/Group/ID or a full $export URL
	Types                 []string // _type
	Elements              []string // _elements
	TypeFilters           []string // _typeFilter, one filter each, never split on commas
	Patients              []string // patient: "123" or "Patient/123"; forces POST (the IG allows it only there)
	IncludeAssociatedData []string
	Since, Until          string // a FHIR date or dateTime; sent as an instant (NormalizeTime)
	OutputFormat          string
	AllowPartialManifests bool
	Lenient               bool        // Prefer: handling=lenient
	Post                  bool        // POST a Parameters body instead of GET
	AllowUnknownTypes     bool        // send _type and _typeFilter types no FHIR version defines (custom types)
	Params                [][2]string // anything else (organizeOutputBy, vendor parameters), each one value

	// Wait bounds the time spent retrying 429s (another export still running) and 503s with
	// Retry-After; 0 means only the client's attempt limit applies.
	Wait time.Duration
	// ReadTimeout abandons a kickoff whose answer, headers or body, sends nothing for this long
	// (0 = five minutes, the transport's wait for headers); the body is informational, the status
	// URL is in the headers, so a 202 whose body stalls is still a started export.
	ReadTimeout time.Duration
}

// PreparedKickoff is a KickoffRequest turned into the HTTP request to send.
type PreparedKickoff struct {
	Target
	Method string
	URL    string // the request URL: with the query on GET, without on POST
	Header http.Header
	Body   []byte // the Parameters resource on POST

	Wait, ReadTimeout time.Duration // from the KickoffRequest

	// ParamNames are the names of the parameters sent, in their order (Capabilities.Check).
	ParamNames []string

	// Parameters is what the kickoff event of the log records as requestParameters (DESIGN.md §4):
	// each parameter's values as one comma list (as a GET sends them), patient replaced by
	// _patientCount, allowPartialManifests as a boolean.
	Parameters map[string]any
}

// param is one kickoff parameter with its values, in the order first seen.
type param struct {
	name   string
	values []string
}

type params []param

func (ps *params) find(name string) *param {
	for i := range *ps {
		if (*ps)[i].name == name {
			return &(*ps)[i]
		}
	}
	*ps = append(*ps, param{name: name})
	return &(*ps)[len(*ps)-1]
}

// add appends values, skipping repeats (a repeated value only makes servers reject the request).
func (ps *params) add(name string, values ...string) {
	p := ps.find(name)
	for _, v := range values {
		if !slices.Contains(p.values, v) {
			p.values = append(p.values, v)
		}
	}
}

// set replaces the value of a single-valued parameter.
func (ps *params) set(name, value string) { ps.find(name).values = []string{value} }

// Prepare builds the request without sending it, so that every mistake in the request is found
// before anything reaches the server (the tool reports them as usage errors).
//
// Parameters of a full $export URL are kept in their order; list parameters (_type, _elements,
// _typeFilter, patient, includeAssociatedData) merge with the flags' values, and a flag or Params
// entry replaces a single-valued one. A single-valued parameter set both by a field and by Params
// with different values is an error.
func (r KickoffRequest) Prepare() (*PreparedKickoff, error) {
	t, rawQuery, err := ParseExportURL(r.URL)
	if err != nil {
		return nil, err
	}
	ps, err := parseQuery(rawQuery)
	if err != nil {
		return nil, err
	}
	if err := r.addTo(&ps); err != nil {
		return nil, err
	}
	ps = slices.DeleteFunc(ps, func(p param) bool { return len(p.values) == 0 })
	if err := ps.check(r.AllowUnknownTypes); err != nil {
		return nil, err
	}
	pk := &PreparedKickoff{Target: *t, Header: http.Header{}, Parameters: ps.logged(),
		Wait: r.Wait, ReadTimeout: r.ReadTimeout}
	for _, p := range ps {
		pk.ParamNames = append(pk.ParamNames, p.name)
	}
	pk.Header.Set("Accept", "application/fhir+json")
	// Separate header lines, respond-async first: some servers compare the first Prefer value
	// with "respond-async" verbatim.
	pk.Header.Add("Prefer", "respond-async")
	if r.Lenient {
		pk.Header.Add("Prefer", "handling=lenient")
	}
	if r.Post || slices.ContainsFunc(ps, func(p param) bool { return p.name == ParamPatient }) {
		if err := pk.post(ps); err != nil {
			return nil, err
		}
		return pk, nil
	}
	pk.get(ps)
	return pk, nil
}

// parseQuery reads the parameters of a full $export URL, in their order.
func parseQuery(rawQuery string) (params, error) {
	var ps params
	for kv := range strings.SplitSeq(rawQuery, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		name, err1 := url.QueryUnescape(k)
		value, err2 := url.QueryUnescape(v)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("export URL query %q: %w", kv, err)
		}
		if IsListParam(name) {
			ps.add(name, SplitList(value)...)
		} else {
			ps.set(name, value)
		}
	}
	return ps, nil
}

// addTo merges the request's fields, then its Params, into the URL's parameters.
func (r KickoffRequest) addTo(ps *params) error {
	fromFields := map[string]string{}
	single := func(name, value string) {
		if value != "" {
			ps.set(name, value)
			fromFields[name] = value
		}
	}
	single(ParamOutputFormat, r.OutputFormat)
	single(ParamSince, r.Since)
	single(ParamUntil, r.Until)
	ps.add(ParamType, r.Types...)
	ps.add(ParamElements, r.Elements...)
	for _, f := range r.TypeFilters {
		ps.add(ParamTypeFilter, EscapeTypeFilter(f))
	}
	ps.add(ParamIncludeAssociatedData, r.IncludeAssociatedData...)
	for _, p := range r.Patients {
		ps.add(ParamPatient, PatientReference(p))
	}
	if r.AllowPartialManifests {
		single(ParamAllowPartialManifests, "true")
	}
	for _, kv := range r.Params {
		name, value := kv[0], kv[1]
		if name == "" {
			return fmt.Errorf("parameter %q=%q: empty name", name, value)
		}
		if IsListParam(name) {
			ps.add(name, value)
			continue
		}
		if prev, ok := fromFields[name]; ok && prev != value {
			return fmt.Errorf("parameter %s given twice, as %q and %q", name, prev, value)
		}
		ps.set(name, value)
	}
	return nil
}

// check refuses types no FHIR version defines (unless allowed) and values the server would
// refuse, and normalizes _since and _until to instants, whatever set them.
func (ps params) check(allowUnknownTypes bool) error {
	if !allowUnknownTypes {
		if err := checkTypes(ps); err != nil {
			return err
		}
	}
	for i, p := range ps {
		if p.name == ParamSince || p.name == ParamUntil {
			for j, v := range p.values {
				n, err := NormalizeTime(v)
				if err != nil {
					return fmt.Errorf("parameter %s: %w", p.name, err)
				}
				ps[i].values[j] = n
			}
		}
		if p.name == ParamAllowPartialManifests {
			if _, err := strconv.ParseBool(p.values[0]); err != nil {
				return fmt.Errorf("parameter %s=%q: want true or false", p.name, p.values[0])
			}
		}
	}
	return nil
}

// logged is PreparedKickoff.Parameters: what the log records of the parameters.
func (ps params) logged() map[string]any {
	m := map[string]any{}
	for _, p := range ps {
		switch p.name {
		case ParamPatient:
			m["_patientCount"] = len(p.values)
		case ParamAllowPartialManifests:
			b, _ := strconv.ParseBool(p.values[0])
			m[p.name] = b
		default:
			m[p.name] = strings.Join(p.values, ",")
		}
	}
	return m
}

// get makes pk a GET with the parameters in the query, each one's values in one comma list.
func (pk *PreparedKickoff) get(ps params) {
	pk.Method = http.MethodGet
	var q []string
	for _, p := range ps {
		vs := make([]string, len(p.values))
		for i, v := range p.values {
			vs[i] = queryEscape(v)
		}
		q = append(q, url.QueryEscape(p.name)+"="+strings.Join(vs, ","))
	}
	u := *pk.Export
	u.RawQuery = strings.Join(q, "&")
	pk.URL = u.String()
}

// post makes pk a POST of a FHIR Parameters resource, one parameter per value.
func (pk *PreparedKickoff) post(ps params) error {
	pk.Method = http.MethodPost
	pk.URL = pk.Export.String()
	pk.Header.Set("Content-Type", "application/fhir+json")
	body := struct {
		ResourceType string           `json:"resourceType"`
		Parameter    []map[string]any `json:"parameter"`
	}{ResourceType: "Parameters", Parameter: []map[string]any{}}
	for _, p := range ps {
		for _, v := range p.values {
			var value any = v
			switch valueType(p.name) {
			case "valueBoolean":
				value, _ = strconv.ParseBool(v)
			case "valueReference":
				value = map[string]string{"reference": v}
			}
			body.Parameter = append(body.Parameter, map[string]any{"name": p.name, valueType(p.name): value})
		}
	}
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode Parameters: %w", err)
	}
	pk.Body = b
	return nil
}

// KickoffResult is an export the server accepted.
type KickoffResult struct {
	StatusURL         string // absolute: a relative Content-Location is resolved against the request URL
	ExportURL         string // the URL the kickoff went to (with the query on GET)
	Method            string
	Header            http.Header    // the 202's headers, for the log's responseHeaders
	RequestParameters map[string]any // as PreparedKickoff.Parameters
	// Outcome is the OperationOutcome some servers put in the 202 body (warnings about ignored
	// parameters under handling=lenient); nil when there is none.
	Outcome *fhirclient.OperationOutcome
}

// ErrMaybeExported wraps a kickoff that failed after the request was sent: the server may have
// started the export anyway, and kickoff is not idempotent (DESIGN.md §2).
var ErrMaybeExported = errors.New("an export may already exist on the server")

// Send starts the export and returns its status URL. It expects 202 Accepted with a
// Content-Location; anything else is an error naming the request, the status and the
// OperationOutcome's text. Retries follow the kickoff rules of fhirclient (only after a 429, a 503
// with Retry-After, or a failure before sending), within the request's Wait.
func (pk *PreparedKickoff) Send(ctx context.Context, c *fhirclient.Client) (*KickoffResult, error) {
	idle := pk.ReadTimeout
	if idle <= 0 {
		idle = kickoffIdle
	}
	// A refusal because of the client's earlier exports (Epic's request window, one export at a
	// time) comes as a 429 that the retry loop would repeat until Wait runs out: Settle sees each
	// answer, and the cause cancels the wait before the next try.
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	settle := func(err error) {
		if r := refusal(err); r != nil {
			stop(r)
		}
	}
	resp, err := c.Do(ctx, &fhirclient.Request{Method: pk.Method, URL: pk.URL, Header: pk.Header.Clone(),
		Body: pk.Body, Route: fhirclient.RouteKickoff, Budget: pk.Wait, IdleTimeout: idle, Settle: settle})
	if err != nil {
		if r, ok := errors.AsType[*RefusedError](context.Cause(ctx)); ok {
			return nil, r
		}
		if errors.Is(err, fhirclient.ErrMaybeSent) {
			return nil, fmt.Errorf("%w: %w; check the server before kicking off again", err, ErrMaybeExported)
		}
		return nil, err
	}
	defer resp.Body.Close()
	// The body is at most an OperationOutcome; a cut or stalled one loses nothing that matters.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	what := pk.Method + " " + fhirclient.Redact(pk.URL)
	outcome, _ := fhirclient.ParseOperationOutcome(body)
	if resp.StatusCode != http.StatusAccepted {
		msg := fmt.Sprintf("%s: %s: expected 202 Accepted (an asynchronous export)", what, resp.Status)
		if outcome != nil {
			msg += ": " + outcome.Error()
		}
		return nil, errors.New(msg)
	}
	loc := strings.TrimSpace(resp.Header.Get("Content-Location"))
	if loc == "" {
		return nil, fmt.Errorf("%s: %s without a Content-Location header (no status URL to poll)", what, resp.Status)
	}
	status, err := responseURL(resp, pk.URL).Parse(loc)
	if err != nil {
		return nil, fmt.Errorf("%s: Content-Location %q: %w", what, loc, err)
	}
	return &KickoffResult{StatusURL: status.String(), ExportURL: pk.URL, Method: pk.Method,
		Header: resp.Header, RequestParameters: pk.Parameters, Outcome: outcome}, nil
}

// responseURL is the URL that answered (after redirects), against which relative URLs in the
// response resolve.
func responseURL(resp *http.Response, sent string) *url.URL {
	if resp.Request != nil && resp.Request.URL != nil {
		return resp.Request.URL
	}
	u, err := url.Parse(sent)
	if err != nil {
		return &url.URL{}
	}
	return u
}

// compactJSON removes insignificant whitespace, so that a pretty-printed manifest becomes one
// line with every value byte-for-byte as the server wrote it.
func compactJSON(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
