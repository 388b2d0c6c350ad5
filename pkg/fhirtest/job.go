package fhirtest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/synth"
)

// job is one export: a kickoff's request, its build, and the links handed out for its files.
type job struct {
	id        string
	client    string // who kicked it off (SMART client id; "" without auth)
	req       *exportRequest
	txTime    time.Time // transactionTime: the kickoff instant
	build     *build
	polls     int       // 202s answered so far
	completed time.Time // first manifest; Expires counts from here
	gen       int       // link generation: expire-links makes the next manifest issue new names
	expired   bool
	names     []string        // current generation's name of each file
	links     map[string]link // every name ever issued
}

// link is a file name handed out in a manifest.
type link struct {
	file int
	gen  int
}

// newName is an opaque file name: clients must take names from the manifest, never derive them.
func newName() string { return strings.ToLower(rand.Text()[:20]) + ".ndjson" }

// startJob registers an export and starts (or reuses) the build of its files, unless the
// vendor's limits on exports per client refuse it (the refusal's text).
func (s *Server) startJob(req *exportRequest, client string) (id, refusal string) {
	j := &job{id: strings.ToLower(rand.Text()[:16]), client: client, req: req, txTime: s.now().UTC(), links: map[string]link{}}
	// The build starts first, so that a job is never seen without one; a refused kickoff's build
	// stays in the cache for the next identical request.
	j.build = s.builds.get(s, req)
	s.mu.Lock()
	defer s.mu.Unlock()
	if refusal := s.admit(client, req); refusal != "" {
		return "", refusal
	}
	s.jobs[j.id] = j
	return j.id, ""
}

// buildWait bounds how long a status request waits for files still being written before it
// answers 202 instead: long enough that small test exports never show the extra poll.
const buildWait = 5 * time.Second

// statusHandler answers GET (progress or manifest) and DELETE (cancel) on a status URL.
func (s *Server) statusHandler(id string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		j := s.jobs[id]
		s.mu.Unlock()
		if j == nil {
			writeOutcome(w, http.StatusNotFound, "not-found", "no export "+id+" (never started, or deleted)")
			return
		}
		switch r.Method {
		case http.MethodDelete:
			s.mu.Lock()
			delete(s.jobs, id)
			// A deleted request no longer counts against the vendor's request window.
			delete(s.lastKickoff, windowKey(j.client, j.req.Group))
			s.mu.Unlock()
			writeOutcomeSeverity(w, http.StatusAccepted, "information", "informational", "export "+id+" deleted")
			return
		case http.MethodGet, http.MethodHead:
		default:
			w.Header().Set("Allow", "GET, DELETE")
			writeOutcome(w, http.StatusMethodNotAllowed, "not-supported", "a status URL takes GET or DELETE")
			return
		}
		page := 1
		if p := r.URL.Query().Get("page"); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 {
				writeOutcome(w, http.StatusNotFound, "not-found", "no manifest page "+p)
				return
			}
			page = n
		}
		s.mu.Lock()
		if page == 1 && j.polls < s.opts.Polls {
			j.polls++
			n := j.polls
			s.mu.Unlock()
			s.progress(w, s.progressText("step "+strconv.Itoa(n)+" of "+strconv.Itoa(s.opts.Polls), j))
			return
		}
		s.mu.Unlock()
		t := time.NewTimer(buildWait)
		select {
		case <-j.build.done:
			t.Stop()
		case <-t.C:
			s.progress(w, "writing files")
			return
		case <-r.Context().Done():
			t.Stop()
			return
		}
		if j.build.err != nil {
			s.failJob(w, j.build.err.Error())
			return
		}
		if _, failed := j.req.fault(FaultFailJob); failed {
			s.failJob(w, "Bulk export job failed: the server gave up on it (simulated by --fault fail-job)")
			return
		}
		s.manifest(w, j, page)
	}
}

// progress answers 202 with X-Progress and Retry-After in whole seconds ("0" in fast mode).
func (s *Server) progress(w http.ResponseWriter, msg string) {
	w.Header().Set("X-Progress", msg)
	w.Header().Set("Retry-After", strconv.FormatInt(int64((s.opts.RetryAfter+time.Second-1)/time.Second), 10))
	w.WriteHeader(http.StatusAccepted)
}

// manifestItem is an entry of output, deleted or error.
type manifestItem struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count int    `json:"count"`
}

type manifestLink struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

// manifest writes page of the job's manifest, issuing a new generation of links first when
// expire-links killed the last one.
func (s *Server) manifest(w http.ResponseWriter, j *job, page int) {
	names, completed := s.issueLinks(j)
	m := s.manifestItems(j, names)
	pages := m.paginate(page, s.opts.PageSize, j.req.Partial && s.opts.Profile != ProfileV2)
	if page > pages {
		writeOutcome(w, http.StatusNotFound, "not-found", "no manifest page "+strconv.Itoa(page))
		return
	}
	var links []manifestLink
	if page < pages {
		links = []manifestLink{{Relation: "next", URL: s.URL() + "/status/" + j.id + "?page=" + strconv.Itoa(page+1)}}
	}
	w.Header().Set("Expires", completed.Add(ManifestLifetime).UTC().Format(http.TimeFormat))
	writeJSON(w, http.StatusOK, "application/json", s.manifestBody(j, m, links))
}

// issueLinks returns the names of the job's file links, making them on the first manifest and
// after expire-links, and the time the job completed.
func (s *Server) issueLinks(j *job) ([]string, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j.completed.IsZero() {
		j.completed = s.now()
	}
	if j.names == nil || j.expired {
		j.gen++
		j.expired = false
		j.names = make([]string, len(j.build.files))
		for i := range j.build.files {
			j.names[i] = newName()
			j.links[j.names[i]] = link{file: i, gen: j.gen}
		}
	}
	return j.names, j.completed
}

// manifestItems are the items of a manifest (or of one page of it).
type manifestItems struct{ out, del, errs []manifestItem }

// manifestItems lists the job's files under their link names.
func (s *Server) manifestItems(j *job, names []string) manifestItems {
	base := s.URL()
	if s.filesBase != nil {
		base = s.FilesURL()
	}
	var m manifestItems
	for i, f := range j.build.files {
		it := manifestItem{Type: f.typ, URL: base + "/files/" + j.id + "/" + names[i], Count: f.count}
		switch f.item {
		case itemOutput:
			m.out = append(m.out, it)
		case itemDeleted:
			m.del = append(m.del, it)
		default:
			m.errs = append(m.errs, it)
		}
	}
	return m
}

// paginate keeps the items of page (of size output items when paged) and returns the number of
// pages.
func (m *manifestItems) paginate(page, size int, paged bool) int {
	pages := 1
	if paged && size > 0 {
		pages = max(1, (len(m.out)+size-1)/size)
		lo := min((page-1)*size, len(m.out))
		m.out = m.out[lo:min(lo+size, len(m.out))]
	}
	// deleted goes on the first page and error on the last, so a client must read every page.
	if page != 1 {
		m.del = nil
	}
	if page != pages {
		m.errs = nil
	}
	if m.out == nil {
		m.out = []manifestItem{}
	}
	if m.errs == nil {
		m.errs = []manifestItem{}
	}
	return pages
}

// manifestBody is the manifest of the server's profile.
func (s *Server) manifestBody(j *job, m manifestItems, links []manifestLink) any {
	// Field order follows the IG's examples; v4 renames error to outcome and drops request.
	type manifestV3 struct {
		TransactionTime     string         `json:"transactionTime"`
		Request             string         `json:"request,omitempty"`
		RequiresAccessToken bool           `json:"requiresAccessToken"`
		Output              []manifestItem `json:"output"`
		Deleted             []manifestItem `json:"deleted,omitempty"`
		Error               []manifestItem `json:"error"`
		Link                []manifestLink `json:"link,omitempty"`
	}
	type manifestV4 struct {
		TransactionTime     string         `json:"transactionTime"`
		RequiresAccessToken bool           `json:"requiresAccessToken"`
		Output              []manifestItem `json:"output"`
		Deleted             []manifestItem `json:"deleted,omitempty"`
		Outcome             []manifestItem `json:"outcome"`
		Link                []manifestLink `json:"link,omitempty"`
	}
	tx := j.txTime.Format("2006-01-02T15:04:05.000Z07:00")
	// HAPI's manifest says requiresAccessToken: true whatever its security.
	requires := s.opts.RequiresToken || s.prof.hapi
	if s.opts.Profile == ProfileV4 {
		return manifestV4{TransactionTime: tx, RequiresAccessToken: requires,
			Output: m.out, Deleted: m.del, Outcome: m.errs, Link: links}
	}
	return manifestV3{TransactionTime: tx, Request: j.req.URL, RequiresAccessToken: requires,
		Output: m.out, Deleted: m.del, Error: m.errs, Link: links}
}

// fileHandler serves one export file from disk: Range, If-Range and conditional requests come
// from http.ServeContent; the gzip variant goes to clients that accept it and ask no Range.
// main is false on the files origin.
func (s *Server) fileHandler(jobID, name string, main bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeOutcome(w, http.StatusMethodNotAllowed, "not-supported", "files take GET")
			return
		}
		s.mu.Lock()
		j := s.jobs[jobID]
		var l link
		var ok, live bool
		if j != nil {
			l, ok = j.links[name]
			live = ok && l.gen == j.gen && !j.expired
		}
		s.mu.Unlock()
		switch {
		case j == nil || !ok:
			writeOutcome(w, http.StatusNotFound, "not-found", "no such export file")
			return
		case live && s.fireKind(FaultExpireLinks):
			s.mu.Lock()
			j.expired = true
			s.mu.Unlock()
			live = false
		}
		if !live {
			writeOutcome(w, http.StatusGone, "expired", "this file link has expired; fetch the manifest again for new links")
			return
		}
		f := j.build.files[l.file]
		path, tag := f.path, f.etag
		h := w.Header()
		h.Set("Content-Type", "application/fhir+ndjson")
		if s.opts.Gzip {
			h.Set("Vary", "Accept-Encoding")
			if r.Header.Get("Range") == "" && acceptsGzip(r.Header.Values("Accept-Encoding")) {
				path, tag = f.gzPath, f.gzETag
				h.Set("Content-Encoding", "gzip")
			}
		}
		h.Set("ETag", tag)
		fh, err := os.Open(path)
		if err != nil {
			writeOutcome(w, http.StatusInternalServerError, "exception", "open export file: "+err.Error())
			return
		}
		defer fh.Close()
		http.ServeContent(w, r, "", modTime, fh)
	}
}

// acceptsGzip reports whether Accept-Encoding allows gzip (and does not give it q=0).
func acceptsGzip(values []string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if strings.EqualFold(strings.TrimSpace(enc), "gzip") {
				q := strings.ReplaceAll(params, " ", "")
				return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
			}
		}
	}
	return false
}

// readHandler answers a read of typ/id: 403 when the token lacks the type's scope, 404 when
// find knows no such id, else serve with what find found.
func readHandler[T any](typ, id string, find func(string) (T, bool), serve func(http.ResponseWriter, *http.Request, T)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if tok := tokenOf(r); !tok.can(typ) {
			forbidden(w, tok, typ)
			return
		}
		v, ok := find(id)
		if !ok {
			writeOutcome(w, http.StatusNotFound, "not-found", typ+"/"+id+" is not known to this server")
			return
		}
		serve(w, r, v)
	}
}

// binaryHandler answers Binary/{id}: the raw content for an Accept of its MIME type (or none, or
// */*), and a FHIR Binary resource for application/fhir+json or application/json.
func (s *Server) binaryHandler(id string) http.HandlerFunc {
	return readHandler("Binary", id, s.data.binary, func(w http.ResponseWriter, r *http.Request, b synth.Binary) {
		own, _, _ := mime.ParseMediaType(b.ContentType)
		if wantsResource(r.Header.Values("Accept"), own) {
			writeJSON(w, http.StatusOK, "application/fhir+json", map[string]string{"resourceType": "Binary",
				"id": id, "contentType": b.ContentType, "data": base64.StdEncoding.EncodeToString(b.Data)})
			return
		}
		writeBody(w, http.StatusOK, b.ContentType, b.Data)
	})
}

// wantsResource reports whether Accept asks for FHIR JSON rather than the content's own type.
func wantsResource(accept []string, own string) bool {
	resource := false
	for _, v := range accept {
		for part := range strings.SplitSeq(v, ",") {
			switch mt, _, _ := mime.ParseMediaType(strings.TrimSpace(part)); mt {
			case own:
				return false
			case "application/fhir+json", "application/json":
				resource = true
			}
		}
	}
	return resource
}

// medicationHandler answers Medication/{id}: Medications are referenced by MedicationRequests
// but not exported, as on Epic, so clients must read them one by one.
func (s *Server) medicationHandler(id string) http.HandlerFunc {
	find := func(id string) ([]byte, bool) {
		m, ok := s.data.medications[id]
		return m, ok
	}
	return readHandler("Medication", id, find, serveFHIR)
}

// groupHandler answers Group/{id}: the data's own Group resource, or one listing the members.
func (s *Server) groupHandler(id string) http.HandlerFunc {
	return readHandler("Group", id, s.groupResource, serveFHIR)
}

// serveFHIR answers 200 with a FHIR JSON resource.
func serveFHIR(w http.ResponseWriter, _ *http.Request, body []byte) {
	writeBody(w, http.StatusOK, "application/fhir+json", body)
}

// groupResource returns Group/id as JSON.
func (s *Server) groupResource(id string) ([]byte, bool) {
	if g, ok := s.data.groupRes[id]; ok {
		return g, true
	}
	ids, ok := s.data.groups[id]
	if !ok {
		return nil, false
	}
	members := make([]any, len(ids))
	for i, p := range ids {
		members[i] = map[string]any{"entity": map[string]string{"reference": "Patient/" + p}}
	}
	g, _ := json.Marshal(map[string]any{"resourceType": "Group", "id": id, "type": "person", "actual": true,
		"name": "Group " + id, "quantity": len(ids), "member": members})
	return g, true
}

// binaryID returns the id of a "Binary/{id}" URL, relative or absolute, or "".
func binaryID(u string) string {
	i := strings.LastIndex(u, "Binary/")
	if i < 0 || (i > 0 && u[i-1] != '/') {
		return ""
	}
	return u[i+len("Binary/"):]
}

// decodeB64 decodes base64 with or without padding.
func decodeB64(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}
