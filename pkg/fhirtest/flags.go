package fhirtest

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FlagSpec describes one command-line flag of the server. cmd/bulk-testserver builds its
// urfave/cli flags from these and reads their values with OptionsFrom; the testscript harness
// reads a txtar's .fhirserver/flags with ParseFlags, which ends in OptionsFrom too, so the
// program and the harness accept exactly the same flags.
type FlagSpec struct {
	Name       string
	Usage      string
	Default    string // "" = none
	Bool       bool
	Repeatable bool
}

// Flags returns the server's flags, in the order --help lists them.
func Flags() []FlagSpec {
	return []FlagSpec{
		{Name: "addr", Default: DefaultAddr, Usage: "listen `ADDRESS` (host:port; port 0 picks a free one)"},
		{Name: "base-path", Default: DefaultBasePath, Usage: "`PATH` of the FHIR base URL"},
		{Name: "patients", Default: strconv.Itoa(DefaultPatients), Usage: "generate `N` synthetic patients (about 145 KB each: 7000 make about 1 GB)"},
		{Name: "seed", Default: "0", Usage: "`SEED` of the generated data and of fault rates"},
		{Name: "data", Usage: "serve the NDJSON files of `DIR` (Patient.ndjson, 1.Patient.ndjson, Patient.000.ndjson.gz; deletions in DIR/deleted.ndjson) instead, read again at a kickoff when they changed"},
		{Name: "auth", Default: AuthNone, Usage: "`MODE`: none, or smart (SMART Backend Services)"},
		{Name: "client-id", Usage: "registered SMART client `ID` (a value, or a file holding it)"},
		{Name: "public-key", Repeatable: true, Usage: "the client's public key `FILE` (JWKS or PEM; repeatable)"},
		{Name: "token-ttl", Default: "5m", Usage: "access token lifetime `DURATION` (such as 90s or 500ms)"},
		{Name: "requires-token", Bool: true, Usage: "manifest says requiresAccessToken: files need the Bearer token"},
		{Name: "strict-scopes", Bool: true, Usage: "refuse token requests whose scopes name a type the data set lacks (invalid_scope), as the SMART reference server does"},
		{Name: "files-origin", Bool: true, Usage: "serve files and absolute attachment URLs from a second origin"},
		{Name: "files-reject-auth", Bool: true, Usage: "that origin answers 400 to requests with Authorization (presigned storage)"},
		{Name: "gzip", Bool: true, Usage: "send files gzipped to clients that accept it (without Range)"},
		{Name: "page-size", Default: "0", Usage: "with allowPartialManifests, `N` output items per manifest page (0: one page)"},
		{Name: "polls", Default: "2", Usage: "answer `K` status requests with 202 before the manifest"},
		{Name: "retry-after", Default: "1s", Usage: "Retry-After `DURATION` of those 202s (0: fast mode)"},
		{Name: "profile", Default: ProfileV3, Usage: "Bulk Data IG `VERSION` of the manifest: v2, v3 or v4"},
		{Name: "file-lines", Default: strconv.Itoa(DefaultFileLines), Usage: "continue a type's output in a new file after `N` lines"},
		{Name: "vendor", Usage: "imitate a real server's habits: `NAME` epic, oracle, smart or hapi (see docs/servers.md; default: the spec)"},
		{Name: "epic-params", Default: ParamsSupported, Usage: "with --vendor epic, how _since and _typeFilter are treated, as by older Epic versions: `MODE` supported, rejected or ignored"},
		{Name: "request-window", Default: "0s", Usage: "refuse a second kickoff for the same client and Group within `DURATION` (epic default 24h; 0: no window)"},
		{Name: "rate-limit", Default: "0", Usage: "answer 429 after `N` kickoff or status requests a minute from one client (smart default 60; 0: no limit)"},
		{Name: "rate-limit-block", Default: "5m", Usage: "how long a client over --rate-limit is refused (`DURATION`)"},
		{Name: "fault", Repeatable: true, Usage: "inject a fault `SPEC` KIND[:ARG][@ROUTE][*COUNT|%RATE] (repeatable; see FAULTS)"},
	}
}

// repeated collects the values of a repeatable flag.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, " ") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

// FlagValues gives the parsed values of the flags of Flags: a string flag's value or its
// default, a bool flag's value, a repeatable flag's values in order. urfave/cli's *cli.Context
// satisfies it, so cmd/bulk-testserver parses its argv once.
type FlagValues interface {
	String(name string) string
	Bool(name string) bool
	StringSlice(name string) []string
	IsSet(name string) bool
}

// flagSetValues reads the values of a flag.FlagSet that ParseFlags filled.
type flagSetValues struct {
	str   map[string]*string
	bools map[string]*bool
	reps  map[string]*repeated
	set   map[string]bool
}

func (v flagSetValues) String(name string) string        { return *v.str[name] }
func (v flagSetValues) Bool(name string) bool            { return *v.bools[name] }
func (v flagSetValues) StringSlice(name string) []string { return *v.reps[name] }
func (v flagSetValues) IsSet(name string) bool           { return v.set[name] }

// ParseFlags reads server flags (--name=value or --name value) into Options, as OptionsFrom
// does.
func ParseFlags(args []string, dir string) (Options, error) {
	fs := flag.NewFlagSet("bulk-testserver", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	str := map[string]*string{}
	bools := map[string]*bool{}
	reps := map[string]*repeated{}
	for _, f := range Flags() {
		switch {
		case f.Bool:
			bools[f.Name] = fs.Bool(f.Name, false, f.Usage)
		case f.Repeatable:
			reps[f.Name] = &repeated{}
			fs.Var(reps[f.Name], f.Name, f.Usage)
		default:
			str[f.Name] = fs.String(f.Name, f.Default, f.Usage)
		}
	}
	if err := fs.Parse(args); err != nil {
		return Options{}, err
	}
	if fs.NArg() > 0 {
		return Options{}, fmt.Errorf("unexpected argument %q (the server takes only flags)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return OptionsFrom(flagSetValues{str, bools, reps, set}, dir)
}

// OptionsFrom turns the values of the server's flags into Options. Relative paths (--data,
// --public-key, a --client-id file) are resolved against dir ("" = the working directory).
// Errors name the flag and say what was expected.
func OptionsFrom(v FlagValues, dir string) (Options, error) {
	v = vendorValues{v, VendorDefaults(v.String("vendor"))}
	fr := &flagReader{v: v, dir: dir}
	o := Options{
		Addr:            v.String("addr"),
		BasePath:        v.String("base-path"),
		Patients:        fr.num("patients"),
		DataDir:         fr.path(v.String("data")),
		Auth:            v.String("auth"),
		ClientID:        v.String("client-id"),
		TokenTTL:        fr.dur("token-ttl"),
		RequiresToken:   v.Bool("requires-token"),
		StrictScopes:    v.Bool("strict-scopes"),
		FilesOrigin:     v.Bool("files-origin"),
		FilesRejectAuth: v.Bool("files-reject-auth"),
		Gzip:            v.Bool("gzip"),
		PageSize:        fr.num("page-size"),
		Polls:           fr.num("polls"),
		RetryAfter:      fr.dur("retry-after"),
		Profile:         v.String("profile"),
		FileLines:       fr.num("file-lines"),
		Vendor:          v.String("vendor"),
		EpicParams:      v.String("epic-params"),
		RequestWindow:   fr.dur("request-window"),
		RateLimit:       fr.num("rate-limit"),
		RateBlock:       fr.dur("rate-limit-block"),
	}
	seed, err := strconv.ParseInt(v.String("seed"), 10, 64)
	if err != nil {
		fr.bad("seed", "want a whole number")
	}
	o.Seed = seed
	fr.checkValues(&o)
	fr.readFiles(&o)
	if len(fr.errs) == 0 {
		if err := checkCombination(&o); err != nil {
			return Options{}, err
		}
	}
	if len(fr.errs) > 0 {
		return Options{}, fr.errs[0] // one line: the first problem
	}
	return o, nil
}

// vendorValues gives a vendor's defaults (VendorDefaults) to the flags the user did not set.
type vendorValues struct {
	FlagValues
	defaults map[string]string
}

func (v vendorValues) String(name string) string {
	if d, ok := v.defaults[name]; ok && !v.IsSet(name) {
		return d
	}
	return v.FlagValues.String(name)
}

// flagReader reads flag values, collecting a problem per bad value.
type flagReader struct {
	v    FlagValues
	dir  string
	errs []error
}

func (fr *flagReader) path(p string) string {
	if p == "" || filepath.IsAbs(p) || fr.dir == "" {
		return p
	}
	return filepath.Join(fr.dir, p)
}

func (fr *flagReader) bad(name string, format string, a ...any) {
	fr.errs = append(fr.errs, fmt.Errorf("--%s %s: %s", name, fr.v.String(name), fmt.Sprintf(format, a...)))
}

func (fr *flagReader) num(name string) int {
	n, err := strconv.Atoi(fr.v.String(name))
	if err != nil || n < 0 {
		fr.bad(name, "want a whole number >= 0")
	}
	return n
}

func (fr *flagReader) dur(name string) time.Duration {
	d, err := time.ParseDuration(fr.v.String(name))
	if err != nil || d < 0 {
		fr.bad(name, "want a duration such as 1s, 90s or 500ms")
	}
	return d
}

// checkValues checks the values that have a range or a set of choices.
func (fr *flagReader) checkValues(o *Options) {
	if o.TokenTTL == 0 {
		fr.bad("token-ttl", "must be more than 0")
	}
	if o.FileLines == 0 {
		fr.bad("file-lines", "must be at least 1")
	}
	if o.Auth != AuthNone && o.Auth != AuthSMART {
		fr.bad("auth", "want none or smart")
	}
	if o.Profile != ProfileV2 && o.Profile != ProfileV3 && o.Profile != ProfileV4 {
		fr.bad("profile", "want v2, v3 or v4")
	}
	if o.Vendor != "" && !slices.Contains(Vendors, o.Vendor) {
		fr.bad("vendor", "want epic, oracle, smart or hapi")
	}
	if o.EpicParams != ParamsSupported && o.EpicParams != ParamsRejected && o.EpicParams != ParamsIgnored {
		fr.bad("epic-params", "want supported, rejected or ignored")
	}
}

// readFiles reads what flags name by path: the client id's file, public keys, and parses faults.
func (fr *flagReader) readFiles(o *Options) {
	if id := o.ClientID; id != "" {
		// A value, or a path to a file holding it (as bulk-kickoff's --smart-client-id).
		if b, err := os.ReadFile(fr.path(id)); err == nil {
			o.ClientID = strings.TrimSpace(string(b))
		}
	}
	for _, p := range fr.v.StringSlice("public-key") {
		b, err := os.ReadFile(fr.path(p))
		if err != nil {
			fr.errs = append(fr.errs, fmt.Errorf("--public-key: %w", err))
			continue
		}
		o.PublicKeys = append(o.PublicKeys, b)
	}
	for _, spec := range fr.v.StringSlice("fault") {
		f, err := ParseFault(spec)
		if err != nil {
			fr.errs = append(fr.errs, fmt.Errorf("--fault: %w", err))
			continue
		}
		o.Faults = append(o.Faults, f)
	}
}

// checkCombination checks the flags that need or exclude others.
func checkCombination(o *Options) error {
	switch {
	case o.Auth == AuthSMART && o.ClientID == "":
		return errors.New("--auth smart needs --client-id")
	case o.Auth == AuthSMART && len(o.PublicKeys) == 0:
		return errors.New("--auth smart needs --public-key (the client's JWKS or PEM public key)")
	case o.Auth != AuthSMART && o.StrictScopes:
		return errors.New("--strict-scopes needs --auth smart")
	case o.Auth != AuthSMART && (o.ClientID != "" || len(o.PublicKeys) > 0):
		return errors.New("--client-id and --public-key need --auth smart")
	case o.FilesRejectAuth && !o.FilesOrigin:
		return errors.New("--files-reject-auth needs --files-origin")
	case o.EpicParams != ParamsSupported && o.Vendor != VendorEpic:
		return errors.New("--epic-params needs --vendor epic")
	}
	return nil
}
