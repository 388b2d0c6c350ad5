package tool

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/smartauth"
	"github.com/urfave/cli/v2"
)

// ClientConfig is what a tool adds to the shared flags when it builds its client.
type ClientConfig struct {
	// Base is the FHIR base: a trusted origin, where SMART discovery looks, and what relative
	// URLs resolve against. "" means the --fhir-url value.
	Base string
	// Origin stands in as the client's base when no FHIR base is known (bulk-poll given only a
	// status URL): requests still work, but SMART auth then needs --token-url.
	Origin string
	// Types are the resource types of the run, for SMART scopes when --scope is not given.
	Types []string
	// Linked are the types the step reads beyond Types, for the same scopes: Binary where it
	// fetches attachments, Medication where it fetches referenced Medications. Only those steps
	// ask for them, as servers refuse a token for a type they do not hold.
	Linked []string
	// MaxWait caps single waits per route (e.g. bulk-poll's --max-wait); nil keeps the defaults.
	MaxWait map[fhirclient.Route]time.Duration
	// Now and Sleep replace the clock and sleeps of every retry and token refresh (tests).
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	// OnRetry reports retries; nil prints one line per retry through Status (not with --quiet).
	OnRetry func(fhirclient.RetryEvent)
	// Status prints the client's warnings and retries, between the tool's own lines and
	// progress; nil is a Status of the client's own.
	Status *Status
	// TokenURL is the SMART token endpoint when --token-url is not given (an export record's).
	TokenURL string
	// OnTokenURL is told the SMART token endpoint once it is known (bulk-kickoff records it).
	OnTokenURL func(string)
	// FailFast ends at once on a server never reached (fhirclient.Options.FailFast): for a
	// tool's first contact with a server, not for a status URL that may be in an outage.
	FailFast bool
}

// NewClientWith builds the FHIR client of a tool from the shared server flags (credentials,
// extra headers, trusted origins and the retry count) and the tool's own settings.
func NewClientWith(c *cli.Context, cfg ClientConfig) (*fhirclient.Client, error) {
	base := cfg.Base
	if base == "" {
		base = c.String("fhir-url")
	}
	// One variable for extra headers: BULK_HEADER (several lines allowed). The old second one is
	// refused rather than ignored, since a header it held would silently go missing.
	if os.Getenv("BULK_HEADERS") != "" {
		return nil, UsageErrorf("BULK_HEADERS is no longer read: put its lines in BULK_HEADER")
	}
	header, err := parseHeaders(c.StringSlice("header"), "")
	if err != nil {
		return nil, err
	}
	clientBase := base
	if clientBase == "" {
		clientBase = cfg.Origin
	}
	attempts, err := maxAttempts(c)
	if err != nil {
		return nil, err
	}
	opts := fhirclient.Options{
		FHIRBase:       clientBase,
		Header:         header,
		TrustedOrigins: c.StringSlice("token-origin"),
		MaxAttempts:    attempts,
		MaxWait:        cfg.MaxWait,
		Now:            cfg.Now,
		Sleep:          cfg.Sleep,
		Version:        Version(),
		OnRetry:        cfg.OnRetry,
		FailFast:       cfg.FailFast,
	}
	st := cfg.Status
	if st == nil {
		st = NewStatus(c)
	}
	// A scheme downgrade is a warning: it shows even with --quiet.
	opts.OnWarn = func(msg string) { st.Warn("%s", msg) }
	if opts.OnRetry == nil {
		opts.OnRetry = func(e fhirclient.RetryEvent) {
			st.Line("%s %s: %s; retrying in %s (attempt %d)", e.Method, e.URL, e.Reason, e.Wait.Round(100*time.Millisecond), e.Attempt+1)
		}
	}
	// Auth flags are checked before the base URL, so a half-given SMART setup is reported as such.
	creds, clientID, err := credentials(c, base, cfg.TokenURL, cfg.Types)
	if err != nil {
		return nil, err
	}
	if clientBase == "" {
		return nil, UsageErrorf("no FHIR base URL: give --fhir-url or set BULK_FHIR_URL")
	}
	// Discovery and token requests go through a client of their own: same retry table, no
	// credentials.
	plain, err := fhirclient.New(opts)
	if err != nil {
		return nil, UsageErrorf("--fhir-url: %v", err)
	}
	if creds == nil {
		return plain, nil
	}
	if l, ok := creds.(*lazySMART); ok {
		l.doer, l.metaDoer = plain.Doer(fhirclient.RouteToken), plain.Doer(fhirclient.RouteMetadata)
		l.now, l.sleep, l.onTokenURL = cfg.Now, cfg.Sleep, cfg.OnTokenURL
		l.linked = cfg.Linked
	}
	opts.Credentials, opts.ClientID = creds, clientID
	return fhirclient.New(opts)
}

func quiet(c *cli.Context) bool {
	for _, f := range c.App.Flags {
		for _, n := range f.Names() {
			if n == "quiet" {
				return c.Bool("quiet")
			}
		}
	}
	return false
}

// credentials picks the one auth method the flags and environment describe.
func credentials(c *cli.Context, base, recordTokenURL string, types []string) (fhirclient.Credentials, string, error) {
	methods := authMethods(c)
	if len(methods) > 1 {
		return nil, "", UsageErrorf("choose one way to authenticate, not %s", strings.Join(methods, " and "))
	}
	switch {
	case c.String("smart-client-id") != "" || c.Path("smart-key") != "":
		return smartCredentials(c, base, recordTokenURL, types)
	case c.Path("bearer-token") != "" || os.Getenv("BULK_BEARER_TOKEN") != "":
		return bearerCredentials(c)
	case c.String("basic-user") != "":
		return basicCredentials(c)
	}
	if c.Path("basic-password") != "" {
		return nil, "", UsageErrorf("--basic-password needs --basic-user")
	}
	return nil, "", nil
}

// authMethods names the auth methods the flags and environment ask for: more than one is a
// usage error, none means requests go without credentials.
func authMethods(c *cli.Context) []string {
	var methods []string
	if c.String("smart-client-id") != "" || c.Path("smart-key") != "" {
		methods = append(methods, "SMART")
	}
	if c.Path("bearer-token") != "" || os.Getenv("BULK_BEARER_TOKEN") != "" {
		methods = append(methods, "bearer")
	}
	if c.String("basic-user") != "" {
		methods = append(methods, "basic")
	}
	return methods
}

// HasCredentials reports whether the flags or environment give a way to authenticate, so a
// tool can explain a 401 it could not have avoided without them.
func HasCredentials(c *cli.Context) bool { return len(authMethods(c)) > 0 }

// smartCredentials reads the SMART Backend Services flags; the token endpoint is --token-url,
// else the one an export record holds, else discovered under base on first use.
func smartCredentials(c *cli.Context, base, recordTokenURL string, types []string) (fhirclient.Credentials, string, error) {
	smartID, smartKey := c.String("smart-client-id"), c.Path("smart-key")
	if smartID == "" || smartKey == "" {
		return nil, "", UsageErrorf("SMART auth needs both --smart-client-id and --smart-key")
	}
	id, err := smartauth.ClientID(smartID)
	if err != nil {
		return nil, "", UsageErrorf("--smart-client-id: %v", err)
	}
	key, err := smartauth.LoadKey(smartKey)
	if err != nil {
		return nil, "", UsageErrorf("--smart-key: %v", err)
	}
	if w := smartauth.KeyFileWarning(smartKey); w != "" {
		fmt.Fprintf(c.App.ErrWriter, "%s: %s\n", c.App.Name, w)
	}
	tokenURL := c.String("token-url")
	if tokenURL != "" {
		if _, err := fhirclient.ParseHTTPURL(tokenURL); err != nil {
			return nil, "", UsageErrorf("--token-url %v", err)
		}
	}
	if tokenURL == "" {
		tokenURL = recordTokenURL
	}
	if tokenURL == "" && base == "" {
		return nil, "", UsageErrorf("SMART auth cannot find the token endpoint: give --fhir-url (or BULK_FHIR_URL) or --token-url")
	}
	var scopes []string
	if s := c.String("scope"); s != "" {
		scopes = strings.Fields(s)
	}
	return &lazySMART{
		base: base, tokenURL: tokenURL,
		clientID: id, key: key, scopes: scopes, types: types,
	}, id, nil
}

// bearerCredentials reads the token from --bearer-token's file, else from BULK_BEARER_TOKEN.
func bearerCredentials(c *cli.Context) (fhirclient.Credentials, string, error) {
	bearerFile := c.Path("bearer-token")
	if bearerFile == "" {
		return smartauth.Bearer(strings.TrimSpace(os.Getenv("BULK_BEARER_TOKEN"))), "", nil
	}
	b, err := os.ReadFile(bearerFile)
	if err != nil {
		return nil, "", UsageErrorf("--bearer-token: %v", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return nil, "", UsageErrorf("--bearer-token: %s is empty", bearerFile)
	}
	return smartauth.Bearer(tok), "", nil
}

// basicCredentials reads --basic-user with the password from --basic-password's file, else from
// BULK_BASIC_PASSWORD.
func basicCredentials(c *cli.Context) (fhirclient.Credentials, string, error) {
	pw := os.Getenv("BULK_BASIC_PASSWORD")
	if f := c.Path("basic-password"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, "", UsageErrorf("--basic-password: %v", err)
		}
		pw = strings.TrimRight(string(b), "\r\n")
	}
	if pw == "" {
		return nil, "", UsageErrorf("basic auth needs a password: --basic-password FILE or BULK_BASIC_PASSWORD")
	}
	return smartauth.Basic(c.String("basic-user"), pw), "", nil
}

// lazySMART discovers the token endpoint on first use, so runs that never need a token (a
// server without auth, --help) never touch .well-known.
type lazySMART struct {
	doer, metaDoer smartauth.Doer
	now            func() time.Time
	sleep          func(context.Context, time.Duration) error
	base, tokenURL string
	clientID       string
	key            *smartauth.Key
	scopes, types  []string
	linked         []string
	onTokenURL     func(string)
	mu             sync.Mutex
	src            *smartauth.Source
}

func (l *lazySMART) source(ctx context.Context) (*smartauth.Source, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.src != nil {
		return l.src, nil
	}
	tokenURL, scopes := l.tokenURL, l.scopes
	if tokenURL == "" || scopes == nil {
		d, err := smartauth.Discover(ctx, l.metaDoer, l.base)
		if err != nil {
			if tokenURL == "" {
				return nil, fmt.Errorf("find the token endpoint (or give --token-url): %w", err)
			}
			d = &smartauth.Discovery{}
		}
		if tokenURL == "" {
			tokenURL = d.TokenEndpoint
		}
		if scopes == nil {
			scopes = smartauth.Scopes(l.types, l.linked, d.V2)
		}
	}
	if l.onTokenURL != nil {
		l.onTokenURL(tokenURL)
	}
	l.src = smartauth.NewSource(smartauth.Config{ClientID: l.clientID, Key: l.key, TokenURL: tokenURL, Scopes: scopes,
		HTTP: l.doer, Now: l.now, Sleep: l.sleep})
	return l.src, nil
}

func (l *lazySMART) Authorization(ctx context.Context) (string, error) {
	s, err := l.source(ctx)
	if err != nil {
		return "", err
	}
	a, err := s.Authorization(ctx)
	return a, scopeHint(err)
}

func (l *lazySMART) Reauthorize(ctx context.Context) error {
	s, err := l.source(ctx)
	if err != nil {
		return err
	}
	return scopeHint(s.Reauthorize(ctx))
}

// parseHeaders reads --header values ("Name: value", or @FILE holding such lines; BULK_HEADER
// may hold several lines) and the newline-separated lines of env. Values are secrets as often as not (API keys), so
// errors name the header, never its value.
func parseHeaders(flags []string, env string) (http.Header, error) {
	h := http.Header{}
	var lines []string
	for _, f := range flags {
		if file, ok := strings.CutPrefix(f, "@"); ok {
			b, err := os.ReadFile(file)
			if err != nil {
				return nil, UsageErrorf("--header: %v", err)
			}
			sc := bufio.NewScanner(strings.NewReader(string(b)))
			for sc.Scan() {
				lines = append(lines, sc.Text())
			}
			continue
		}
		lines = append(lines, strings.Split(f, "\n")...)
	}
	lines = append(lines, strings.Split(env, "\n")...)
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		name, value, ok := strings.Cut(l, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, UsageErrorf("--header: want 'Name: value', got a line starting %q", firstWord(l))
		}
		switch strings.ToLower(name) {
		case "authorization":
			return nil, UsageErrorf("--header: use --bearer-token or --basic-user for Authorization, so it is only sent to trusted origins")
		}
		h.Add(textproto.CanonicalMIMEHeaderKey(name), strings.TrimSpace(value))
	}
	return h, nil
}

func firstWord(s string) string {
	if i := strings.IndexAny(s, ": \t"); i >= 0 {
		return s[:i]
	}
	return s
}
