package fhirtest

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

// level is the scope of an export: the whole system, every patient, or one Group's members.
type level int

const (
	levelSystem level = iota
	levelPatient
	levelGroup
)

func (l level) String() string { return [...]string{"system", "patient", "group"}[l] }

// exportRequest is a validated kickoff. Its JSON form (without URL) keys the build cache, so two
// identical kickoffs share one set of files on disk.
type exportRequest struct {
	Level    string                   `json:"level"`
	Group    string                   `json:"group,omitempty"`
	Types    []string                 `json:"types,omitempty"` // nil = every type
	Since    *time.Time               `json:"since,omitempty"`
	Until    *time.Time               `json:"until,omitempty"`
	Filters  map[string][][]criterion `json:"filters,omitempty"`  // type → OR of AND lists
	Elements map[string][]string      `json:"elements,omitempty"` // type ("" = all types) → elements
	Patients []string                 `json:"patients,omitempty"` // nil = no restriction
	Faults   []Fault                  `json:"faults,omitempty"`   // data faults in effect
	Partial  bool                     `json:"-"`
	URL      string                   `json:"-"`
	lenient  bool
}

// criterion is one search parameter of a _typeFilter: values are ORed.
type criterion struct {
	Name     string   `json:"name"`
	Modifier string   `json:"modifier,omitempty"`
	Values   []string `json:"values"`
	instants []int64  // _lastUpdated values without their prefix, as Unix nanoseconds
}

// kickoffParams are the parameters of $export this server knows (Bulk Data IG STU3 §export).
var kickoffParams = []string{"_outputFormat", "_since", "_until", "_type", "_typeFilter", "_elements",
	"patient", "includeAssociatedData", "allowPartialManifests"}

// badRequest is a kickoff error answered with 400 and an OperationOutcome.
type badRequest struct{ msg string }

func (e badRequest) Error() string { return e.msg }

func badf(format string, a ...any) error { return badRequest{fmt.Sprintf(format, a...)} }

// kickoffHandler answers $export at one level.
func (s *Server) kickoffHandler(lv level, group string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			w.Header().Set("Allow", "GET, POST")
			writeOutcome(w, http.StatusMethodNotAllowed, "not-supported", "$export takes GET or POST")
			return
		}
		if !acceptsFHIRJSON(r.Header.Values("Accept")) {
			writeOutcome(w, http.StatusBadRequest, "invalid", "kickoff needs Accept: application/fhir+json")
			return
		}
		prefer := preferTokens(r.Header.Values("Prefer"))
		if !prefer["respond-async"] {
			writeOutcome(w, http.StatusBadRequest, "invalid", "kickoff needs Prefer: respond-async")
			return
		}
		if !s.vendorLevel(w, lv) {
			return
		}
		if lv == levelGroup {
			if _, ok := s.data.groups[group]; !ok {
				writeOutcome(w, http.StatusNotFound, "not-found", "Group/"+group+" is not known to this server")
				return
			}
		}
		req, err := s.parseKickoff(r, lv, group, prefer["handling=lenient"])
		if err != nil {
			writeOutcome(w, http.StatusBadRequest, "invalid", err.Error())
			return
		}
		tok := tokenOf(r)
		s.vendorTypes(req, lv, tok)
		if tok != nil {
			types := req.Types
			if types == nil {
				types = s.data.types
			}
			for _, t := range types {
				if !tok.can(t) {
					forbidden(w, tok, t)
					return
				}
			}
		}
		id, refusal := s.startJob(req, clientOf(tok))
		if refusal != "" {
			refuse(w, refusal)
			return
		}
		w.Header().Set("Content-Location", s.statusURL(id))
		writeOutcomeSeverity(w, http.StatusAccepted, "information", "informational", "export started: poll "+s.statusURL(id))
	}
}

// acceptsFHIRJSON reports whether an Accept header lists application/fhir+json.
func acceptsFHIRJSON(values []string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "application/fhir+json" {
				return true
			}
		}
	}
	return false
}

// preferTokens splits Prefer headers ("respond-async, handling=lenient") into a set.
func preferTokens(values []string) map[string]bool {
	m := map[string]bool{}
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			for p := range strings.SplitSeq(part, ";") {
				m[strings.ReplaceAll(strings.ToLower(strings.TrimSpace(p)), " ", "")] = true
			}
		}
	}
	return m
}

// param is one kickoff parameter value: a query value (GET) or a Parameters entry (POST).
type param struct {
	name, value string
	ref         string // valueReference.reference (POST patient)
}

// parseKickoff reads and checks the kickoff parameters from the query (GET) or a Parameters
// body (POST), one parameter per value, as DESIGN.md §2 describes clients sending them.
func (s *Server) parseKickoff(r *http.Request, lv level, group string, lenient bool) (*exportRequest, error) {
	u := *r.URL
	u.Scheme, u.Host = "http", r.Host
	kp := &kickoffParser{req: &exportRequest{Level: lv.String(), Group: group, URL: u.String(), lenient: lenient},
		lv: lv, post: r.Method == http.MethodPost}
	params, err := kickoffParamsOf(r)
	if err != nil {
		return nil, err
	}
	if params, err = s.vendorParams(params, kp.post, lenient); err != nil {
		return nil, err
	}
	for _, p := range params {
		if !slices.Contains(kickoffParams, p.name) {
			if lenient {
				continue
			}
			return nil, badf("parameter %s is not supported (Prefer: handling=lenient ignores it)", p.name)
		}
		if err := kp.apply(p); err != nil {
			return nil, err
		}
	}
	req := kp.req
	if req.Since != nil && req.Until != nil && req.Until.Before(*req.Since) {
		return nil, badf("_until is before _since")
	}
	if req.Types != nil {
		slices.Sort(req.Types)
	}
	// Data faults count kickoffs, so they are drawn once the request is known to be good.
	req.Faults = s.dataFaults()
	if _, ok := req.fault(FaultIgnoreFilter); ok {
		return req, nil // a server that silently ignores _typeFilter does not check it either
	}
	for _, f := range kp.filters {
		if err := req.addFilter(f); err != nil {
			return nil, err
		}
	}
	return req, nil
}

// kickoffParamsOf returns the parameters of a POST's Parameters body, or of a GET's query in
// the order of their names.
func kickoffParamsOf(r *http.Request) ([]param, error) {
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		if err != nil {
			return nil, badf("read body: %v", err)
		}
		return parseParameters(body)
	}
	q := r.URL.Query()
	var params []param
	for _, k := range slices.Sorted(maps.Keys(q)) {
		for _, v := range q[k] {
			params = append(params, param{name: k, value: v})
		}
	}
	return params, nil
}

// kickoffParser is the state of parseKickoff: the request so far, and the _typeFilter values
// checked once the data faults are known.
type kickoffParser struct {
	req     *exportRequest
	lv      level
	post    bool
	filters []string
}

// apply reads one known parameter into the request.
func (kp *kickoffParser) apply(p param) error {
	switch p.name {
	case "_outputFormat":
		switch p.value {
		case "application/fhir+ndjson", "application/ndjson", "ndjson":
			return nil
		}
		return badf("_outputFormat %q is not supported (want application/fhir+ndjson)", p.value)
	case "_since", "_until":
		return kp.instant(p)
	case "_type":
		return kp.types(p.value)
	case "_typeFilter":
		if kp.post {
			kp.filters = append(kp.filters, p.value)
		} else {
			// In a GET, commas separate filters; a comma inside one is escaped as %2C.
			kp.filters = append(kp.filters, strings.Split(p.value, ",")...)
		}
	case "_elements":
		return kp.elements(p.value)
	case "patient":
		return kp.patient(p.ref)
	case "allowPartialManifests":
		switch p.value {
		case "true":
			kp.req.Partial = true
		case "false":
		default:
			return badf("allowPartialManifests must be true or false, got %q", p.value)
		}
	case "includeAssociatedData":
		// Accepted and ignored: this server keeps no Provenance.
	}
	return nil
}

func (kp *kickoffParser) instant(p param) error {
	t, err := parseInstant(p.value)
	if err != nil {
		return badf("%s: %v", p.name, err)
	}
	if p.name == "_since" {
		kp.req.Since = &t
	} else {
		kp.req.Until = &t
	}
	return nil
}

func (kp *kickoffParser) types(value string) error {
	for t := range strings.SplitSeq(value, ",") {
		t = strings.TrimSpace(t)
		if !isResourceType(t) {
			return badf("_type: %q is not a FHIR R4 resource type", t)
		}
		if !slices.Contains(kp.req.Types, t) {
			kp.req.Types = append(kp.req.Types, t)
		}
	}
	return nil
}

func (kp *kickoffParser) elements(value string) error {
	for e := range strings.SplitSeq(value, ",") {
		typ, name, ok := strings.Cut(strings.TrimSpace(e), ".")
		if !ok {
			typ, name = "", typ
		} else if !isResourceType(typ) {
			return badf("_elements: %q is not a FHIR R4 resource type", typ)
		}
		if kp.req.Elements == nil {
			kp.req.Elements = map[string][]string{}
		}
		kp.req.Elements[typ] = append(kp.req.Elements[typ], name)
	}
	return nil
}

func (kp *kickoffParser) patient(ref string) error {
	switch id, ok := strings.CutPrefix(ref, "Patient/"); {
	case !kp.post:
		return badf("patient is accepted only in a POST kickoff (Parameters body)")
	case kp.lv == levelSystem:
		return badf("patient is accepted at Patient and Group level, not in a system export")
	case !ok || id == "":
		return badf("patient: want valueReference {reference: \"Patient/ID\"}, got %q", ref)
	case !slices.Contains(kp.req.Patients, id):
		kp.req.Patients = append(kp.req.Patients, id)
	}
	return nil
}

// parseParameters reads a FHIR Parameters body into parameters, one per value.
func parseParameters(body []byte) ([]param, error) {
	if !gjson.ValidBytes(body) || gjson.GetBytes(body, "resourceType").Str != "Parameters" {
		return nil, badf("a POST kickoff needs a FHIR Parameters resource as its body")
	}
	var out []param
	for _, p := range gjson.GetBytes(body, "parameter").Array() {
		pr := param{name: p.Get("name").Str}
		p.ForEach(func(k, v gjson.Result) bool {
			key := k.Str
			switch {
			case key == "valueReference":
				pr.ref = v.Get("reference").Str
			case strings.HasPrefix(key, "value"):
				pr.value = v.String()
			}
			return true
		})
		out = append(out, pr)
	}
	return out, nil
}

// filterParams are the search parameters a _typeFilter may use here: token parameters (with
// :missing) and _lastUpdated with gt/ge/lt/le prefixes. Others are an error unless lenient.
var filterParams = []string{"category", "status", "code", "_lastUpdated"}

// addFilter parses one "Type?query" filter.
func (req *exportRequest) addFilter(f string) error {
	typ, query, ok := strings.Cut(f, "?")
	if !ok || !isResourceType(typ) {
		return badf("_typeFilter %q: want ResourceType?search (a comma inside a value is escaped as %%2C)", f)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return badf("_typeFilter %q: %v", f, err)
	}
	var and []criterion
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range q {
			if !yield(k) {
				return
			}
		}
	}) {
		name, mod, _ := strings.Cut(k, ":")
		supported := slices.Contains(filterParams, name) && (mod == "" || (mod == "missing" && name != "_lastUpdated"))
		if !supported {
			if req.lenient {
				continue
			}
			return badf("_typeFilter %q: search parameter %s is not supported here (category, status, code, their :missing, _lastUpdated; Prefer: handling=lenient ignores others)", f, k)
		}
		for _, v := range q[k] {
			c := criterion{Name: name, Modifier: mod, Values: strings.Split(v, ",")}
			if err := c.check(); err != nil {
				return badf("_typeFilter %q: %v", f, err)
			}
			and = append(and, c)
		}
	}
	if req.Filters == nil {
		req.Filters = map[string][][]criterion{}
	}
	req.Filters[typ] = append(req.Filters[typ], and)
	return nil
}

func (c *criterion) check() error {
	switch {
	case c.Modifier == "missing":
		if len(c.Values) != 1 || (c.Values[0] != "true" && c.Values[0] != "false") {
			return fmt.Errorf("%s:missing takes true or false", c.Name)
		}
	case c.Name == "_lastUpdated":
		for _, v := range c.Values {
			if len(v) < 2 || !slices.Contains([]string{"gt", "ge", "lt", "le"}, v[:2]) {
				return fmt.Errorf("_lastUpdated needs a gt, ge, lt or le prefix, got %q", v)
			}
			t, err := parseInstant(v[2:])
			if err != nil {
				return fmt.Errorf("_lastUpdated: %w", err)
			}
			c.instants = append(c.instants, t.UnixNano())
		}
	}
	return nil
}

// matches reports whether a resource passes the filters of its type (any filter; every
// criterion of it). A type without filters passes.
func (req *exportRequest) matches(typ string, r *resource) bool {
	filters, ok := req.Filters[typ]
	if !ok {
		return true
	}
	for _, and := range filters {
		if allMatch(and, r) {
			return true
		}
	}
	return false
}

func allMatch(and []criterion, r *resource) bool {
	for _, c := range and {
		if !c.match(r) {
			return false
		}
	}
	return true
}

func (c criterion) match(r *resource) bool {
	if c.Name == "_lastUpdated" {
		if !r.hasUpd {
			return false
		}
		for i, v := range c.Values {
			n, u := c.instants[i], r.updated
			switch v[:2] {
			case "gt":
				if u > n {
					return true
				}
			case "ge":
				if u >= n {
					return true
				}
			case "lt":
				if u < n {
					return true
				}
			case "le":
				if u <= n {
					return true
				}
			}
		}
		return false
	}
	codes := tokenCodes(gjson.GetBytes(r.raw, c.Name))
	if c.Modifier == "missing" {
		return (len(codes) == 0) == (c.Values[0] == "true")
	}
	for _, v := range c.Values {
		system, code, hasSystem := strings.Cut(v, "|")
		if !hasSystem {
			system, code = "", v
		}
		for _, sc := range codes {
			if sc[1] == code && (!hasSystem || system == "" || sc[0] == system) {
				return true
			}
		}
	}
	return false
}

// tokenCodes lists the (system, code) pairs of a code, a CodeableConcept, or an array of them.
func tokenCodes(v gjson.Result) [][2]string {
	var out [][2]string
	var walk func(v gjson.Result)
	walk = func(v gjson.Result) {
		switch {
		case v.IsArray():
			for _, e := range v.Array() {
				walk(e)
			}
		case v.Type == gjson.String:
			out = append(out, [2]string{"", v.Str})
		case v.IsObject():
			for _, c := range v.Get("coding").Array() {
				out = append(out, [2]string{c.Get("system").Str, c.Get("code").Str})
			}
		}
	}
	walk(v)
	return out
}

// key is the build cache key of the request.
func (req *exportRequest) key() string {
	b, _ := json.Marshal(req)
	return string(b)
}
