// Package fhirtest is a FHIR Bulk Data server for tests, demos and benchmarks: it exports a
// deterministic generated data set (or a folder of the user's NDJSON) under a non-empty base path,
// speaks SMART Backend Services, and misbehaves on demand the way real servers do (DESIGN.md §8, §9).
//
// Start it inside a Go test with NewServer, or as a program with cmd/bulk-testserver. Export files
// are written once per distinct request and served from disk with http.ServeContent (Range,
// If-Range, ETag), so the server is never what a client benchmark measures. The generated data
// set is never held whole: each distinct export generates it again, patient by patient, as it
// writes its files, so an export of any size (Patients) takes bounded memory.
package fhirtest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/synth"
)

// Auth modes of Options.Auth.
const (
	AuthNone  = "none"
	AuthSMART = "smart"
)

// Profiles of Options.Profile: the Bulk Data IG version whose manifest the server writes.
const (
	ProfileV2 = "v2" // STU2: no partial manifests
	ProfileV3 = "v3" // STU3: allowPartialManifests pages the manifest with link next
	ProfileV4 = "v4" // v4 build: "outcome" instead of "error", no "request"
)

// Defaults of the Options fields whose zero value means "default".
const (
	DefaultPatients  = 20
	DefaultBasePath  = "/fhir"
	DefaultAddr      = "127.0.0.1:0"
	DefaultTokenTTL  = 5 * time.Minute
	DefaultFileLines = 10000
	// DefaultFileBytes is the size at which a type's output continues in another file.
	DefaultFileBytes = 50 << 20
	// ManifestLifetime is how long after completion the Expires header of a manifest points
	// (about an hour, as DESIGN.md §9 says real servers do).
	ManifestLifetime = time.Hour
	// StallCap bounds a stall fault, so a client without a read timeout still ends.
	StallCap = 60 * time.Second
)

// Options configures a Server. The zero value is a fast, fault-free server with no auth that
// generates DefaultPatients patients with seed 0.
type Options struct {
	Patients int            // synthetic patients (0 = DefaultPatients)
	Seed     int64          // data and fault RNG seed
	DataDir  string         // serve this folder's NDJSON instead of generated data
	Data     *synth.Dataset // serve this data set (wins over Patients and DataDir); shared read-only

	Addr     string // listen address (default 127.0.0.1:0: loopback, a free port)
	BasePath string // default "/fhir": relative-URL bugs hide at the root

	Auth          string        // AuthNone (default) or AuthSMART
	ClientID      string        // the registered client (AuthSMART)
	PublicKeys    [][]byte      // its public keys: JWKS or PEM, one key set per entry
	TokenTTL      time.Duration // access token lifetime, enforced to the millisecond (0 = 5 min)
	RequiresToken bool          // manifest says requiresAccessToken: files need the Bearer token
	// StrictScopes refuses a token request (400 invalid_scope) that asks for a system scope of a
	// type the data set does not hold, Binary and Medication included, as the SMART reference
	// server does.
	StrictScopes bool

	FilesOrigin     bool // files and absolute attachment URLs on a second listener (another origin)
	FilesRejectAuth bool // that origin answers 400 to any request with Authorization (presigned storage)

	Gzip       bool          // serve a precomputed gzip variant to Accept-Encoding: gzip without Range
	PageSize   int           // with allowPartialManifests (v3, v4): output items per manifest page
	Polls      int           // 202 answers before each job's manifest
	RetryAfter time.Duration // Retry-After of those 202s, in whole seconds (0 = fast mode)
	Profile    string        // ProfileV2, ProfileV3 (default) or ProfileV4
	FileLines  int           // lines at which a type's output continues in another file (0 = 10000)

	Faults []Fault

	// Vendor imitates a real server (VendorEpic, VendorOracle, VendorSMART, VendorHAPI; "" = the
	// spec). Epic's ids are longer than 64 characters and its files need the token under SMART
	// auth; the SMART reference server refuses scopes of types it lacks (StrictScopes) under
	// SMART auth. The flags' vendor defaults (VendorDefaults) are not applied here.
	Vendor        string
	EpicParams    string        // with VendorEpic: _since and _typeFilter ParamsSupported ("" too), ParamsRejected or ParamsIgnored
	RequestWindow time.Duration // a second kickoff for the same client and Group within it is refused (0 = none)
	RateLimit     int           // kickoff and status requests a minute per client before a 429 (0 = no limit)
	RateBlock     time.Duration // how long a client over RateLimit is refused (0 = 5 minutes)

	// Override answers a path under BasePath (such as "/status/job1") with a fixed response:
	// either a body (200; JSON gets application/json) or a raw HTTP response starting "HTTP/1.1 ".
	// fhirscript.ScriptParams fills it from a txtar's .fhirserver/ folder.
	Override map[string][]byte

	Now func() time.Time // clock for tokens, transactionTime and Expires (nil = time.Now)
}

// RequestRecord is one request the server saw, for tests of what a client sent (token safety:
// DESIGN.md §2).
type RequestRecord struct {
	Method        string
	URL           string // absolute, with the origin that received it
	Route         string // metadata, smart-configuration, token, kickoff, status, file, binary, medication, group, override, unknown
	Origin        string // "main" or "files"
	Authorization string // the header value as sent ("" when absent)
	Header        http.Header
}

// Server is a running Bulk Data test server. Its methods are safe for concurrent use.
type Server struct {
	opts      Options
	data      *dataset
	now       func() time.Time
	dir       string // job files
	base      *url.URL
	filesBase *url.URL // nil without FilesOrigin
	srv       *http.Server
	filesSrv  *http.Server
	keys      []jose.JSONWebKey
	builds    *buildCache
	prof      profile

	mu       sync.Mutex
	faults   []*faultState
	rng      *rand.Rand
	requests []RequestRecord
	jobs     map[string]*job
	tokens   map[string]token
	jtis     map[string]time.Time
	conns    map[net.Conn]struct{} // hijacked by a stall fault
	rates    map[string]*rateState // Options.RateLimit: per route and client
	// lastKickoff is each client and Group's last kickoff, for Options.RequestWindow.
	lastKickoff map[string]time.Time
	// registered are the clients registered at /auth/register (VendorSMART), by client id.
	registered map[string][]jose.JSONWebKey
	closed     bool
	done       chan struct{}
	wg         sync.WaitGroup
	sleep      func(ctx context.Context, d time.Duration) error // slow faults; tests replace it (under mu)
}

// NewServer checks opts, prepares the data set and starts listening; the server serves until Close.
func NewServer(opts Options) (*Server, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	s := &Server{opts: opts, now: opts.Now, jobs: map[string]*job{}, tokens: map[string]token{},
		jtis: map[string]time.Time{}, conns: map[net.Conn]struct{}{}, done: make(chan struct{}),
		rates: map[string]*rateState{}, lastKickoff: map[string]time.Time{}, registered: map[string][]jose.JSONWebKey{}, prof: profileOf(opts.Vendor, opts.EpicParams),
		rng: rand.New(rand.NewPCG(uint64(opts.Seed), 0x62756c6b)), sleep: sleepCtx}
	for _, f := range opts.Faults {
		s.faults = append(s.faults, newFaultState(f))
	}
	var err error
	if s.keys, err = parsePublicKeys(opts.PublicKeys); err != nil {
		return nil, err
	}
	if s.dir, err = os.MkdirTemp("", "bulk-testserver-"); err != nil {
		return nil, fmt.Errorf("create job folder: %w", err)
	}
	switch {
	case opts.Data != nil:
		s.data, err = fromSynth(opts.Data)
	case opts.DataDir != "":
		s.data, err = fromDir(opts.DataDir)
	default:
		s.data = fromStream(synth.NewStream(synth.Options{Patients: opts.Patients, Seed: opts.Seed,
			LongIDs: opts.Vendor == VendorEpic}), s.dir)
	}
	if err != nil {
		os.RemoveAll(s.dir)
		return nil, fmt.Errorf("prepare test data: %w", err)
	}
	s.builds = newBuildCache(s.dir)
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		os.RemoveAll(s.dir)
		return nil, fmt.Errorf("listen on %s: %w", opts.Addr, err)
	}
	s.base = &url.URL{Scheme: "http", Host: ln.Addr().String(), Path: opts.BasePath}
	var fln net.Listener
	if opts.FilesOrigin {
		host, _, _ := net.SplitHostPort(ln.Addr().String())
		if fln, err = net.Listen("tcp", net.JoinHostPort(host, "0")); err != nil {
			ln.Close()
			os.RemoveAll(s.dir)
			return nil, fmt.Errorf("listen for the files origin: %w", err)
		}
		s.filesBase = &url.URL{Scheme: "http", Host: fln.Addr().String(), Path: filesOriginPath}
	}
	s.srv = s.httpServer(http.HandlerFunc(s.serveMain))
	s.wg.Go(func() { s.srv.Serve(ln) })
	if fln != nil {
		s.filesSrv = s.httpServer(http.HandlerFunc(s.serveFiles))
		s.wg.Go(func() { s.filesSrv.Serve(fln) })
	}
	return s, nil
}

// sleepCtx waits d, or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// filesOriginPath is the base path of the files origin: not the FHIR base path, so a client that
// builds file URLs itself instead of taking them from the manifest fails.
const filesOriginPath = "/storage"

func (s *Server) httpServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second,
		BaseContext: func(net.Listener) context.Context { return s.ctx() }}
}

// ctx is cancelled by Close, which ends slow and stall faults still waiting.
func (s *Server) ctx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-s.done; cancel() }()
	return ctx
}

// setDefaults fills the fields whose zero value means a default, then checks the options.
func (o *Options) setDefaults() error {
	if o.Patients == 0 {
		o.Patients = DefaultPatients
	}
	if o.TokenTTL == 0 {
		o.TokenTTL = DefaultTokenTTL
	}
	if o.FileLines == 0 {
		o.FileLines = DefaultFileLines
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Addr = cmp.Or(o.Addr, DefaultAddr)
	o.BasePath = "/" + strings.Trim(cmp.Or(o.BasePath, DefaultBasePath), "/")
	o.Auth = cmp.Or(o.Auth, AuthNone)
	o.Profile = cmp.Or(o.Profile, ProfileV3)
	if o.RateLimit > 0 && o.RateBlock == 0 {
		o.RateBlock = 5 * time.Minute
	}
	if o.Auth == AuthSMART {
		o.RequiresToken = o.RequiresToken || o.Vendor == VendorEpic
		o.StrictScopes = o.StrictScopes || o.Vendor == VendorSMART
	}
	return o.check()
}

// check reports the first problem of options whose defaults are set.
func (o *Options) check() error {
	switch {
	case o.Patients < 0:
		return errors.New("patients must be >= 0")
	case o.Auth != AuthNone && o.Auth != AuthSMART:
		return fmt.Errorf("auth %q: want none or smart", o.Auth)
	case o.Auth == AuthSMART && o.ClientID == "":
		return errors.New("smart auth needs a client id")
	case o.Auth == AuthSMART && len(o.PublicKeys) == 0:
		return errors.New("smart auth needs the client's public key (JWKS or PEM)")
	case o.TokenTTL < 0:
		return errors.New("token ttl must be > 0")
	case o.Profile != ProfileV2 && o.Profile != ProfileV3 && o.Profile != ProfileV4:
		return fmt.Errorf("profile %q: want v2, v3 or v4", o.Profile)
	case o.PageSize < 0 || o.Polls < 0 || o.RetryAfter < 0 || o.FileLines < 0:
		return errors.New("page size, polls, retry-after and file lines must be >= 0")
	case o.FilesRejectAuth && !o.FilesOrigin:
		return errors.New("files-reject-auth needs files-origin")
	}
	if err := o.checkVendor(); err != nil {
		return err
	}
	for _, f := range o.Faults {
		if err := f.check(); err != nil {
			return fmt.Errorf("fault %s: %w", f, err)
		}
	}
	return nil
}

// URL returns the FHIR base URL, such as http://127.0.0.1:PORT/fhir.
func (s *Server) URL() string { return s.base.String() }

// FilesURL returns the base URL of the files origin, or "" without Options.FilesOrigin.
func (s *Server) FilesURL() string {
	if s.filesBase == nil {
		return ""
	}
	return s.filesBase.String()
}

func (s *Server) tokenURL() string { return s.URL() + "/auth/token" }

// AddFault adds a fault after those already set; it panics on a fault ParseFault would reject,
// as a test that builds one by hand has a bug.
func (s *Server) AddFault(f Fault) {
	if err := f.check(); err != nil {
		panic(fmt.Sprintf("fhirtest: AddFault(%s): %v", f, err))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, newFaultState(f))
}

// Requests returns a copy of every request seen so far (the last MaxRecords at most), in
// arrival order.
func (s *Server) Requests() []RequestRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]RequestRecord(nil), s.requests...)
}

// Close stops both listeners, ends stalled connections and removes the job files.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	err := s.srv.Close()
	if s.filesSrv != nil {
		err = errors.Join(err, s.filesSrv.Close())
	}
	s.wg.Wait()
	s.builds.wait()
	if s.data.bins != nil {
		s.data.bins.close()
	}
	return errors.Join(err, os.RemoveAll(s.dir))
}

// record keeps a request for Requests.
func (s *Server) record(r *http.Request, route, origin string) {
	u := *r.URL
	u.Scheme, u.Host = "http", r.Host
	rec := RequestRecord{Method: r.Method, URL: u.String(), Route: route, Origin: origin,
		Authorization: r.Header.Get("Authorization"), Header: r.Header.Clone()}
	s.mu.Lock()
	if len(s.requests) >= MaxRecords {
		// A long-running server (the CLI, a benchmark) keeps the most recent records only.
		s.requests = slices.Delete(s.requests, 0, MaxRecords/2)
	}
	s.requests = append(s.requests, rec)
	s.mu.Unlock()
}

// MaxRecords bounds what Requests remembers: past it, the oldest half is dropped.
const MaxRecords = 100000

// closing reports whether Close has begun (builds stop early).
func (s *Server) closing() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Route names of RequestRecord.Route beyond the fault routes.
const (
	routeMetadata   = "metadata"
	routeSMART      = "smart-configuration"
	routeMedication = "medication"
	routeGroup      = "group"
	routeOverride   = "override"
	routeRegister   = "register"
	routeUnknown    = "unknown"
)

// serveMain dispatches a request to the main origin.
func (s *Server) serveMain(w http.ResponseWriter, r *http.Request) {
	rel, ok := strings.CutPrefix(r.URL.Path, s.opts.BasePath)
	if !ok || (rel != "" && rel[0] != '/') {
		s.record(r, routeUnknown, "main")
		writeOutcome(w, http.StatusNotFound, "not-found", "no FHIR endpoint at "+r.URL.Path+" (the base is "+s.URL()+")")
		return
	}
	route, h := s.mainRoute(rel)
	s.record(r, route, "main")
	if h == nil {
		writeOutcome(w, http.StatusNotFound, "not-supported", "no route for "+r.Method+" "+r.URL.Path)
		return
	}
	s.serve(w, r, route, true, h)
}

// mainRoute returns the route and handler of a path below the FHIR base (nil: none).
func (s *Server) mainRoute(rel string) (string, http.HandlerFunc) {
	seg := strings.Split(strings.Trim(rel, "/"), "/")
	if s.opts.Override[rel] != nil {
		// Route faults as if the path were the real one, so a scripted status URL can fault too.
		if len(seg) == 2 && seg[0] == "status" {
			return RouteStatus, s.serveOverride(rel)
		}
		return routeOverride, s.serveOverride(rel)
	}
	switch rel {
	case "/metadata":
		return routeMetadata, s.handleMetadata
	case "/.well-known/smart-configuration":
		return routeSMART, s.handleSMARTConfig
	case "/auth/token":
		return RouteToken, s.handleToken
	case "/auth/register":
		if s.opts.Vendor == VendorSMART && s.opts.Auth == AuthSMART {
			return routeRegister, s.handleRegister
		}
	case "/$export":
		return RouteKickoff, s.kickoffHandler(levelSystem, "")
	case "/Patient/$export":
		return RouteKickoff, s.kickoffHandler(levelPatient, "")
	case "/$export-poll-status":
		if s.prof.hapi {
			return RouteStatus, s.hapiPollStatus
		}
	}
	return s.resourceRoute(seg)
}

// resourceRoute returns the route and handler of a path of two or three segments below the
// FHIR base: a Group's export, a status URL, a file, or a resource read.
func (s *Server) resourceRoute(seg []string) (string, http.HandlerFunc) {
	switch {
	case len(seg) == 3 && seg[0] == "Group" && seg[2] == "$export":
		return RouteKickoff, s.kickoffHandler(levelGroup, seg[1])
	case len(seg) == 3 && seg[0] == "files":
		return RouteFile, s.fileHandler(seg[1], seg[2], true)
	case len(seg) != 2:
		return routeUnknown, nil
	}
	switch seg[0] {
	case "status":
		return RouteStatus, s.statusHandler(seg[1])
	case "Binary":
		return RouteBinary, s.binaryHandler(seg[1])
	case "Medication":
		return routeMedication, s.medicationHandler(seg[1])
	case "Group":
		return routeGroup, s.groupHandler(seg[1])
	case "OperationDefinition":
		return routeMetadata, s.operationDefinitionHandler(seg[1])
	}
	return routeUnknown, nil
}

// serveFiles dispatches a request to the files origin, which holds what presigned storage would:
// export files and attachments, no FHIR API.
func (s *Server) serveFiles(w http.ResponseWriter, r *http.Request) {
	rel, _ := strings.CutPrefix(r.URL.Path, filesOriginPath)
	seg := strings.Split(strings.Trim(rel, "/"), "/")
	route, h := routeUnknown, http.HandlerFunc(nil)
	switch {
	case len(seg) == 3 && seg[0] == "files":
		route, h = RouteFile, s.fileHandler(seg[1], seg[2], false)
	case len(seg) == 2 && seg[0] == "Binary":
		route, h = RouteBinary, s.binaryHandler(seg[1])
	}
	s.record(r, route, "files")
	if s.opts.FilesRejectAuth && r.Header.Get("Authorization") != "" {
		// What S3 answers to a presigned URL that also carries an Authorization header.
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
			`<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified</Message></Error>`)
		return
	}
	if h == nil {
		http.NotFound(w, r)
		return
	}
	s.serve(w, r, route, false, h)
}

// serve runs the faults that fire on this request, then checks the token, then the handler.
// main is false on the files origin, which checks no token (presigned storage).
func (s *Server) serve(w http.ResponseWriter, r *http.Request, route string, main bool, h http.HandlerFunc) {
	if main && s.rateLimited(w, r, route) {
		return
	}
	delay, f := s.pick(route, r)
	if delay > 0 {
		s.mu.Lock()
		sleep := s.sleep
		s.mu.Unlock()
		if sleep(r.Context(), delay) != nil {
			return
		}
	}
	full := func(w http.ResponseWriter, r *http.Request) {
		if tok, ok := s.authorize(w, r, route, main); ok {
			h(w, r.WithContext(context.WithValue(r.Context(), tokenKey{}, tok)))
		}
	}
	if f != nil {
		s.answerFault(w, r, *f, full)
		return
	}
	full(w, r)
}

// TB is the part of testing.TB that Start needs, as *testing.T and *testing.B have it.
type TB interface {
	Helper()
	Fatal(args ...any)
	Cleanup(func())
}

// Start is NewServer for tests: a failure to start fails the test, and the server is closed
// when the test ends.
func Start(t TB, opts Options) *Server {
	t.Helper()
	srv, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}
