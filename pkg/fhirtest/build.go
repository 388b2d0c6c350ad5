package fhirtest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/synth"
)

// Item types of a manifest (Bulk Data IG: output, deleted, error).
const (
	itemOutput  = "output"
	itemDeleted = "deleted"
	itemError   = "error"
)

// exportFile is one file of an export, written once and then only read.
type exportFile struct {
	item   string // itemOutput, itemDeleted, itemError
	typ    string // resource type of its lines
	path   string
	size   int64
	etag   string
	gzPath string // "" without Options.Gzip
	gzSize int64
	gzETag string
	count  int // lines
}

// build is the result of writing one distinct export request's files.
type build struct {
	done  chan struct{}
	files []*exportFile
	err   error
}

// buildCache writes each distinct export once: kickoffs of the same request (a benchmark's
// repeated runs, every test of a suite) share files, so a kickoff costs O(1) after the first.
type buildCache struct {
	dir string
	mu  sync.Mutex
	m   map[string]*build
	wg  sync.WaitGroup
}

func newBuildCache(dir string) *buildCache { return &buildCache{dir: dir, m: map[string]*build{}} }

// get returns the build of req, starting it in the background the first time.
func (c *buildCache) get(s *Server, req *exportRequest) *build {
	// A --data folder that changed since the last kickoff is read again: another export.
	key := req.key() + s.data.refresh()
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := c.m[key]; ok {
		return b
	}
	b := &build{done: make(chan struct{})}
	c.m[key] = b
	dir := filepath.Join(c.dir, strconv.Itoa(len(c.m)))
	c.wg.Go(func() {
		defer close(b.done)
		b.files, b.err = s.write(req, dir)
	})
	return b
}

// wait waits for running builds (Close removes their folder after).
func (c *buildCache) wait() { c.wg.Wait() }

// FilesBasePlaceholder stands in generated attachment URLs for the origin that serves them.
const filesBasePlaceholder = synth.FilesBasePlaceholder

// attachmentBase is what replaces the placeholder: the files origin, else the FHIR base.
func (s *Server) attachmentBase() string {
	if s.filesBase != nil {
		return s.FilesURL()
	}
	return s.URL()
}

// write filters the data set for req and writes its files into dir. The data set is read once,
// in whatever order it comes (type by type, or patient by patient for a generated one), and each
// type's lines go to a writer of their own, so that the files are the same either way.
func (s *Server) write(req *exportRequest, dir string) ([]*exportFile, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// Output follows the data set's type order; requested types it lacks export nothing.
	types := s.data.exportTypes()
	if req.Types != nil {
		types = slices.DeleteFunc(slices.Clone(types), func(t string) bool { return !slices.Contains(req.Types, t) })
	}
	e := s.newExportRun(req, dir, types)
	if err := s.data.each(types, s.closing, e.add); err != nil {
		e.abort()
		return nil, err
	}
	return e.finish(types)
}

// exportRun is the state of one write: the request's filters and faults, and a writer per type.
type exportRun struct {
	s             *Server
	req           *exportRequest
	dir           string
	scope         map[string]bool
	since, until  int64
	elements      map[string][]string
	placeholder   []byte
	filesBase     []byte
	b64Size       bool
	noLastUpdated bool
	dupEvery      int
	noFinalNL     bool
	out           map[string]*fileWriter
	deleted       map[string][]string // type → keys reported deleted
}

func (s *Server) newExportRun(req *exportRequest, dir string, types []string) *exportRun {
	e := &exportRun{s: s, req: req, dir: dir, scope: s.scope(req), elements: map[string][]string{},
		placeholder: []byte(filesBasePlaceholder), filesBase: []byte(s.attachmentBase()),
		out: map[string]*fileWriter{}, deleted: map[string][]string{}}
	if f, ok := req.fault(FaultDupLines); ok {
		e.dupEvery = f.argInt(10)
	}
	_, e.noFinalNL = req.fault(FaultNoFinalNL)
	_, e.b64Size = req.fault(FaultB64Size)
	_, e.noLastUpdated = req.fault(FaultNoLastUpd)
	if req.Since != nil {
		e.since = req.Since.UnixNano()
	}
	if req.Until != nil {
		e.until = req.Until.UnixNano()
	}
	for _, typ := range types {
		e.elements[typ] = req.elementsOf(typ)
		e.out[typ] = e.writer(itemOutput, typ)
	}
	return e
}

// abort closes the files still open after a failed write (Close removes the folder).
func (e *exportRun) abort() {
	for _, fw := range e.out {
		if o := fw.cur; o != nil {
			o.f.Close()
			if o.gzf != nil {
				o.gzf.Close()
			}
		}
	}
}

// fault returns the request's fault of kind, if it has one.
func (req *exportRequest) fault(kind string) (Fault, bool) {
	i := slices.IndexFunc(req.Faults, func(f Fault) bool { return f.Kind == kind })
	if i < 0 {
		return Fault{}, false
	}
	return req.Faults[i], true
}

func (e *exportRun) writer(item, typ string) *fileWriter {
	return &fileWriter{dir: e.dir, maxLines: e.s.opts.FileLines, gzip: e.s.opts.Gzip, dupEvery: e.dupEvery,
		noFinalNL: e.noFinalNL, item: item, typ: typ}
}

// add writes r, a resource of typ, when the request selects it.
func (e *exportRun) add(typ string, r *resource) error {
	if !e.selects(typ, r) {
		return nil
	}
	return e.out[typ].line(e.transform(typ, r.raw))
}

// selects applies the request's scope, _since, _until and _typeFilter to r.
func (e *exportRun) selects(typ string, r *resource) bool {
	if e.scope != nil && !e.scope[r.patient] {
		return false
	}
	if r.hasUpd && e.req.Since != nil && r.updated < e.since {
		// Changed before _since: a few of these are reported deleted, deterministically
		// (never a Patient, whose other resources would be left dangling).
		// A --data folder reports the deletions its tombstones record instead (finish).
		if len(e.deleted[typ]) < 2 && typ != "Patient" && e.s.data.live == nil {
			e.deleted[typ] = append(e.deleted[typ], typ+"/"+r.id)
		}
		return false
	}
	if r.hasUpd && e.req.Until != nil && r.updated > e.until {
		return false
	}
	return e.req.matches(typ, r)
}

// transform gives the line as the export serves it: attachment URLs on the files origin,
// _elements, and the faults that change a resource.
func (e *exportRun) transform(typ string, line []byte) []byte {
	if bytes.Contains(line, e.placeholder) {
		line = bytes.ReplaceAll(line, e.placeholder, e.filesBase)
	}
	if els := e.elements[typ]; els != nil {
		line = subset(line, els)
	}
	if e.b64Size {
		line = e.s.base64Sizes(line)
	}
	if e.noLastUpdated {
		line = dropLastUpdated(line)
	}
	return line
}

// finish closes the output files in type order and writes the deleted and error items.
func (e *exportRun) finish(types []string) ([]*exportFile, error) {
	var files []*exportFile
	var deleted []string
	for _, typ := range types {
		if err := e.out[typ].end(); err != nil {
			return nil, err
		}
		files = append(files, e.out[typ].files...)
		deleted = append(deleted, e.deleted[typ]...)
	}
	if e.req.Since != nil {
		deleted = append(deleted, e.s.data.deletedSince(types, e.since, e.until, e.scope)...)
	}
	if len(deleted) > 0 {
		f, err := e.single(itemDeleted, "Bundle", deletionBundle(deleted))
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	// error-count: as a reference server does, a failed output file's manifest entry is copied
	// into the error item, count included, while the file holds one OperationOutcome.
	var failed *exportFile
	if _, ok := e.req.fault(FaultErrorCount); ok && len(files) > 0 && files[0].item == itemOutput {
		failed = files[0]
	}
	issue := e.s.warning(slices.Contains(types, "MedicationRequest"))
	if failed != nil {
		issue = failure(failed.typ)
	}
	f, err := e.single(itemError, "OperationOutcome", issue)
	if err != nil {
		return nil, err
	}
	if failed != nil {
		// A count of 1 would be right by chance: the fault is a count that is wrong.
		f.count = max(failed.count, 2)
	}
	return append(files, f), nil
}

// single writes a file of one line.
func (e *exportRun) single(item, typ string, line []byte) (*exportFile, error) {
	fw := e.writer(item, typ)
	if err := fw.line(line); err != nil {
		return nil, err
	}
	if err := fw.end(); err != nil {
		return nil, err
	}
	return fw.files[0], nil
}

// scope returns the patients whose compartments the export covers; nil means everything.
func (s *Server) scope(req *exportRequest) map[string]bool {
	var set map[string]bool
	switch req.Level {
	case levelSystem.String():
		return nil
	case levelPatient.String():
		set = map[string]bool{}
		for _, id := range s.data.patientIDs() {
			set[id] = true
		}
	case levelGroup.String():
		set = map[string]bool{}
		for _, id := range s.data.members(req.Group) {
			set[id] = true
		}
	}
	if req.Patients != nil {
		only := map[string]bool{}
		for _, id := range req.Patients {
			only[id] = set[id]
		}
		set = only
	}
	return set
}

// elementsOf returns the elements kept for typ, or nil when _elements does not restrict it.
func (req *exportRequest) elementsOf(typ string) []string {
	els := slices.Concat(req.Elements[""], req.Elements[typ])
	if len(els) == 0 {
		return nil
	}
	return els
}

// subsetTag marks a resource that lacks elements (Bulk Data IG: _elements).
const subsetTag = `{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED","display":"subsetted"}`

// subset keeps the listed top-level elements and those no resource may lose.
func subset(line []byte, elements []string) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	gjson.ParseBytes(line).ForEach(func(k, v gjson.Result) bool {
		if k.Str == "resourceType" || k.Str == "id" || k.Str == "meta" || slices.Contains(elements, k.Str) {
			if b.Len() > 1 {
				b.WriteByte(',')
			}
			b.WriteString(k.Raw)
			b.WriteByte(':')
			b.WriteString(v.Raw)
		}
		return true
	})
	b.WriteByte('}')
	out, _ := sjson.SetRawBytes(b.Bytes(), "meta.tag.-1", []byte(subsetTag))
	return out
}

// base64Sizes sets each attachment's size to the length of its content in base64, the mistake
// DESIGN.md §9 says some servers make.
func (s *Server) base64Sizes(line []byte) []byte {
	var paths []string
	gjson.GetBytes(line, "content").ForEach(func(i, _ gjson.Result) bool {
		paths = append(paths, "content."+i.String()+".attachment")
		return true
	})
	gjson.GetBytes(line, "presentedForm").ForEach(func(i, _ gjson.Result) bool {
		paths = append(paths, "presentedForm."+i.String())
		return true
	})
	for _, p := range paths {
		a := gjson.GetBytes(line, p)
		n := -1
		if d := a.Get("data"); d.Exists() {
			if b, err := decodeB64(d.Str); err == nil {
				n = len(b)
			}
		} else if id := binaryID(a.Get("url").Str); id != "" {
			if b, ok := s.data.binary(id); ok {
				n = len(b.Data)
			}
		}
		if n >= 0 {
			line, _ = sjson.SetBytes(line, p+".size", base64.StdEncoding.EncodedLen(n))
		}
	}
	return line
}

// dropLastUpdated removes meta.lastUpdated (and meta, when nothing else is left in it).
func dropLastUpdated(line []byte) []byte {
	line, _ = sjson.DeleteBytes(line, "meta.lastUpdated")
	if m := gjson.GetBytes(line, "meta"); m.IsObject() && len(m.Map()) == 0 {
		line, _ = sjson.DeleteBytes(line, "meta")
	}
	return line
}

// deletionBundle is the transaction Bundle of DELETE entries that a manifest's deleted item holds.
func deletionBundle(keys []string) []byte {
	type request struct {
		Method string `json:"method"`
		URL    string `json:"url"`
	}
	type entry struct {
		Request request `json:"request"`
	}
	type bundle struct {
		ResourceType string  `json:"resourceType"`
		ID           string  `json:"id"`
		Type         string  `json:"type"`
		Entry        []entry `json:"entry"`
	}
	b := bundle{ResourceType: "Bundle", ID: "deleted", Type: "transaction"}
	for _, k := range keys {
		b.Entry = append(b.Entry, entry{request{"DELETE", k}})
	}
	out, _ := marshal(b)
	return out
}

// warning is the line of the error file every export has: a warning, which clients must keep
// and not treat as a failure. It speaks of Medications only to an export that holds
// MedicationRequests (withMedRequests), the only one whose references they are.
func (s *Server) warning(withMedRequests bool) []byte {
	msg := "bulkpipe test server: synthetic data"
	if withMedRequests && len(s.data.medications) > 0 {
		msg = "Medication resources referenced by MedicationRequest are not part of this export; read them at Medication/{id}"
	}
	o := outcome("warning", "informational", msg)
	o.ID = "export-warning"
	b, _ := marshal(o)
	return b
}

// failure is the error file line of the error-count fault: the export of typ failed.
func failure(typ string) []byte {
	o := outcome("error", "exception", "injected fault: exporting "+typ+" failed; its file is incomplete")
	o.ID = "export-failure"
	b, _ := marshal(o)
	return b
}

// fileWriter writes the lines of one item type and resource type into files of at most maxLines
// lines and DefaultFileBytes bytes, with the dup-lines and no-final-newline faults applied.
type fileWriter struct {
	dir       string
	maxLines  int
	gzip      bool
	dupEvery  int
	noFinalNL bool
	files     []*exportFile

	item, typ string
	seq       int // lines seen of this type
	last      []byte
	cur       *openFile
	n         int // files written
}

type openFile struct {
	ef     *exportFile
	f, gzf *os.File
	bw     *bufio.Writer
	gw     *gzip.Writer
	sum    hash.Hash
	gzSum  hash.Hash
	w      io.Writer
	nl     bool // a newline is owed before the next line
}

// line writes one line (twice under dup-lines, every dupEvery-th line).
func (fw *fileWriter) line(b []byte) error {
	fw.seq++
	if err := fw.put(b); err != nil {
		return err
	}
	if fw.dupEvery > 0 && fw.seq%fw.dupEvery == 0 {
		return fw.put(b)
	}
	return nil
}

func (fw *fileWriter) put(b []byte) error {
	if fw.cur != nil && (fw.cur.ef.count >= fw.maxLines || fw.cur.ef.size+int64(len(b)) >= DefaultFileBytes) {
		if err := fw.end(); err != nil {
			return err
		}
		if fw.dupEvery > 0 && fw.last != nil {
			// dup-lines also repeats a resource across files: the last line of one file
			// opens the next.
			if err := fw.put(fw.last); err != nil {
				return err
			}
		}
	}
	if fw.cur == nil {
		if err := fw.open(); err != nil {
			return err
		}
	}
	o := fw.cur
	if o.nl {
		o.w.Write([]byte{'\n'})
		o.ef.size++
	}
	if _, err := o.w.Write(b); err != nil {
		return err
	}
	o.nl = true
	o.ef.size += int64(len(b))
	o.ef.count++
	fw.last = b
	return nil
}

func (fw *fileWriter) open() error {
	fw.n++
	path := filepath.Join(fw.dir, fmt.Sprintf("%s.%s.%03d.ndjson", fw.item, fw.typ, fw.n))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	o := &openFile{ef: &exportFile{item: fw.item, typ: fw.typ, path: path}, f: f, sum: sha256.New()}
	o.bw = bufio.NewWriterSize(f, 1<<20)
	ws := []io.Writer{o.bw, o.sum}
	if fw.gzip {
		o.ef.gzPath = path + ".gz"
		if o.gzf, err = os.Create(o.ef.gzPath); err != nil {
			f.Close()
			return err
		}
		o.gzSum = sha256.New()
		o.gw, _ = gzip.NewWriterLevel(io.MultiWriter(o.gzf, o.gzSum), gzip.BestSpeed)
		ws = append(ws, o.gw)
	}
	o.w = io.MultiWriter(ws...)
	fw.cur = o
	return nil
}

// end closes the current file, if any.
func (fw *fileWriter) end() error {
	o := fw.cur
	if o == nil {
		return nil
	}
	fw.cur = nil
	if !fw.noFinalNL {
		o.w.Write([]byte{'\n'})
		o.ef.size++
	}
	err := o.bw.Flush()
	if cerr := o.f.Close(); err == nil {
		err = cerr
	}
	o.ef.etag = etag(o.sum)
	if o.gw != nil {
		if cerr := o.gw.Close(); err == nil {
			err = cerr
		}
		if st, serr := o.gzf.Stat(); serr == nil {
			o.ef.gzSize = st.Size()
		}
		if cerr := o.gzf.Close(); err == nil {
			err = cerr
		}
		o.ef.gzETag = etag(o.gzSum)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", o.ef.path, err)
	}
	fw.files = append(fw.files, o.ef)
	return nil
}

// etag is a strong entity tag from the content's hash, so If-Range works across restarts of a
// download and differs between the identity and gzip variants.
func etag(h hash.Hash) string { return `"` + hex.EncodeToString(h.Sum(nil)[:16]) + `"` }

// modTime is the Last-Modified of every export file: fixed, so responses are deterministic.
var modTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
