package fhirtest

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Fault kinds. The transport kinds answer (or spoil) one HTTP request; the data kinds change the
// files of an export when it is kicked off (DESIGN.md §8 and §9 list the habits they imitate).
const (
	Fault500          = "500"               // 500 with an OperationOutcome
	Fault503          = "503"               // 503, ARG = Retry-After seconds (optional)
	Fault429          = "429"               // 429 with Retry-After: ARG = N (seconds), date, epoch-ms or epoch-s
	FaultReset        = "reset"             // headers and some body bytes, then a TCP reset
	FaultTruncate     = "truncate"          // Content-Length larger than the body, then a clean close
	FaultStall        = "stall"             // headers and ARG body bytes, then silence
	FaultSlow         = "slow"              // ARG ms of delay before the answer (which may still fault)
	Fault401          = "401"               // the presented token is revoked and the request answered 401
	FaultExpireLinks  = "expire-links"      // file links answer 410 until the manifest is fetched again
	FaultDupLines     = "dup-lines"         // ARG = N: every Nth line twice, and lines repeated across files
	FaultNoFinalNL    = "no-final-newline"  // the last line of every file lacks its newline
	FaultIgnoreFilter = "ignore-typefilter" // _typeFilter silently ignored
	FaultB64Size      = "b64-size"          // attachment size = length of the base64 text, not of the bytes
	FaultNoLastUpd    = "no-lastupdated"    // meta.lastUpdated dropped (Epic habit)
	FaultErrorCount   = "error-count"       // an error item carries a failed output file's count
	FaultFailJob      = "fail-job"          // the export job fails: its status URL answers 500 (HAPI's answer with --vendor hapi)
)

// Routes a fault can be limited to with @ROUTE. Binary covers Binary reads on both origins.
const (
	RouteKickoff = "kickoff"
	RouteStatus  = "status"
	RouteFile    = "file"
	RouteToken   = "token"
	RouteBinary  = "binary"
)

// faultRoutes are the routes ParseFault accepts after "@".
var faultRoutes = []string{RouteKickoff, RouteStatus, RouteFile, RouteToken, RouteBinary}

// transportKinds act on one request each; their default is "once" because a client is expected to
// recover from them, and a test wants to see it recover.
var transportKinds = []string{Fault500, Fault503, Fault429, FaultReset, FaultTruncate, FaultStall,
	FaultSlow, Fault401, FaultExpireLinks}

// dataKinds change what an export contains; their default is "every export" because they imitate
// a server's lasting habit, not a hiccup.
var dataKinds = []string{FaultDupLines, FaultNoFinalNL, FaultIgnoreFilter, FaultB64Size, FaultNoLastUpd, FaultErrorCount, FaultFailJob}

// FaultKinds lists every fault kind, transport kinds first.
func FaultKinds() []string { return slices.Concat(transportKinds, dataKinds) }

// Fault is one misbehaviour of the server: KIND[:ARG][@ROUTE][*COUNT|%RATE].
//
// Count > 0 fires the fault on the first Count matching requests (kickoffs for data kinds);
// Rate > 0 fires it on each matching request with that probability, drawn from an RNG seeded
// with Options.Seed. With neither, transport kinds fire once and data kinds on every export.
// Faults are tried in the order given; the first that fires answers the request, except slow,
// which only delays it.
type Fault struct {
	Kind  string
	Arg   string
	Route string // "" = any route
	Count int
	Rate  float64
}

// String returns the fault in the grammar ParseFault reads.
func (f Fault) String() string {
	var b strings.Builder
	b.WriteString(f.Kind)
	if f.Arg != "" {
		b.WriteString(":" + f.Arg)
	}
	if f.Route != "" {
		b.WriteString("@" + f.Route)
	}
	switch {
	case f.Count > 0:
		b.WriteString("*" + strconv.Itoa(f.Count))
	case f.Rate > 0:
		b.WriteString("%" + strconv.FormatFloat(f.Rate, 'g', -1, 64))
	}
	return b.String()
}

// IsData reports whether the fault changes export data rather than one request.
func (f Fault) IsData() bool { return slices.Contains(dataKinds, f.Kind) }

// ErrFaultSyntax is wrapped by every error of ParseFault.
var ErrFaultSyntax = errors.New("bad fault spec")

// FaultGrammar is the --help text of --fault: the grammar, the defaults and an example of each kind.
const FaultGrammar = `FAULTS (--fault KIND[:ARG][@ROUTE][*COUNT|%RATE], repeatable)
  ROUTE is kickoff, status, file, token or binary (absent: any route).
  *COUNT fires on the first COUNT matching requests; %RATE on each with probability
  RATE (0 < RATE <= 1, seeded by --seed). Default: transport kinds fire once, data
  kinds (which act when an export is kicked off) on every export. Faults are tried in
  order; the first that fires answers the request (slow only delays it).
  --fault 500@status*2         500 with an OperationOutcome, twice
  --fault 503:5@kickoff        503 with Retry-After: 5
  --fault 429:2@file           429 with Retry-After: 2 (seconds)
  --fault 429:date@status      429 with Retry-After as an HTTP-date
  --fault 429:epoch-ms@status  429 with Retry-After as epoch milliseconds
  --fault 429:epoch-s@status   429 with Retry-After as epoch seconds
  --fault reset@file           headers and half the body (ARG bytes), then a TCP reset
  --fault truncate@file        Content-Length larger than the body, then close
  --fault stall:1000@file      headers and 1000 body bytes, then silence (60 s cap)
  --fault slow:250%0.5         250 ms delay before half of all answers
  --fault 401@status           the presented token is revoked: 401, re-authorize
  --fault expire-links         file links answer 410 until the manifest is fetched again
  --fault dup-lines:5          every 5th line twice, and across split files (default 10)
  --fault no-final-newline     the last line of each file lacks its newline
  --fault ignore-typefilter    _typeFilter is silently ignored
  --fault b64-size             attachment size is the base64 length of the content
  --fault no-lastupdated       meta.lastUpdated is dropped from every resource
  --fault error-count          the error file reports a failed output file, and its manifest
                               item keeps that file's count (a reference server's habit)
  --fault fail-job             the export job fails: its status URL answers 500 with an
                               OperationOutcome
`

// ParseFault reads KIND[:ARG][@ROUTE][*COUNT|%RATE] (see FaultGrammar).
func ParseFault(spec string) (Fault, error) {
	bad := func(format string, a ...any) (Fault, error) {
		return Fault{}, fmt.Errorf("%w %q: %s", ErrFaultSyntax, spec, fmt.Sprintf(format, a...))
	}
	var f Fault
	rest := spec
	if i := strings.IndexAny(rest, "*%"); i >= 0 {
		n := rest[i+1:]
		if rest[i] == '*' {
			c, err := strconv.Atoi(n)
			if err != nil || c < 1 {
				return bad("COUNT must be a whole number >= 1")
			}
			f.Count = c
		} else {
			r, err := strconv.ParseFloat(n, 64)
			if err != nil || !(r > 0 && r <= 1) {
				return bad("RATE must be a probability, 0 < RATE <= 1")
			}
			f.Rate = r
		}
		rest = rest[:i]
	}
	if i := strings.IndexByte(rest, '@'); i >= 0 {
		f.Route = rest[i+1:]
		rest = rest[:i]
		if !slices.Contains(faultRoutes, f.Route) {
			return bad("unknown route %q (want one of %s)", f.Route, strings.Join(faultRoutes, ", "))
		}
	}
	f.Kind, f.Arg, _ = strings.Cut(rest, ":")
	if !slices.Contains(FaultKinds(), f.Kind) {
		return bad("unknown kind %q (want one of %s)", f.Kind, strings.Join(FaultKinds(), ", "))
	}
	if err := f.check(); err != nil {
		return bad("%v", err)
	}
	return f, nil
}

// check validates ARG and ROUTE for the kind; AddFault and NewServer use it too.
func (f Fault) check() error {
	if !slices.Contains(FaultKinds(), f.Kind) {
		return fmt.Errorf("unknown kind %q", f.Kind)
	}
	if f.Route != "" && !slices.Contains(faultRoutes, f.Route) {
		return fmt.Errorf("unknown route %q", f.Route)
	}
	if f.Count < 0 || f.Rate < 0 || f.Rate > 1 || (f.Count > 0 && f.Rate > 0) {
		return errors.New("give COUNT or RATE, not both")
	}
	if err := f.checkRoute(); err != nil {
		return err
	}
	return f.checkArg()
}

// checkRoute checks that the kind can act on the route.
func (f Fault) checkRoute() error {
	switch {
	case f.IsData() && f.Route != "" && f.Route != RouteKickoff:
		return fmt.Errorf("%s acts when an export is kicked off: route must be kickoff or absent", f.Kind)
	case f.Kind == FaultExpireLinks && f.Route != "" && f.Route != RouteFile:
		return errors.New("expire-links acts on file links: route must be file or absent")
	}
	return nil
}

// checkArg checks ARG against what the kind takes.
func (f Fault) checkArg() error {
	switch f.Kind {
	case Fault503:
		return f.checkNum("Retry-After seconds")
	case Fault429:
		switch f.Arg {
		case "", "date", "epoch-ms", "epoch-s":
			return nil
		}
		return f.checkNum("Retry-After seconds, date, epoch-ms or epoch-s")
	case FaultReset, FaultTruncate, FaultStall:
		return f.checkNum("a byte count")
	case FaultSlow:
		return f.checkNum("milliseconds")
	case FaultDupLines:
		if f.Arg == "" {
			return nil
		}
		if n, err := strconv.Atoi(f.Arg); err != nil || n < 1 {
			return errors.New("ARG of dup-lines must be N >= 1 (every Nth line is repeated)")
		}
		return nil
	}
	if f.Arg != "" {
		return fmt.Errorf("%s takes no ARG", f.Kind)
	}
	return nil
}

// checkNum checks an ARG that is absent or a whole number >= 0 (what it means: what).
func (f Fault) checkNum(what string) error {
	if f.Arg == "" {
		return nil
	}
	if n, err := strconv.Atoi(f.Arg); err != nil || n < 0 {
		return fmt.Errorf("ARG of %s must be %s (a whole number >= 0)", f.Kind, what)
	}
	return nil
}

// argInt returns ARG as a number, or def when absent.
func (f Fault) argInt(def int) int {
	if n, err := strconv.Atoi(f.Arg); err == nil {
		return n
	}
	return def
}
