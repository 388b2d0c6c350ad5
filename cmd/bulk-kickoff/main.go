// Command bulk-kickoff starts a FHIR Bulk Data export and prints its status URL, the first step
// of `bulk-kickoff URL | bulk-poll | bulk-fetch --dir DIR` (DESIGN.md §1, §2).
package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
)

func main() { os.Exit(tool.Main(newApp())) }

const description = `Starts a Bulk Data export (system, Patient or Group level) and prints its status URL on
stdout, one line, for bulk-poll. FHIR_URL is a FHIR base URL (system level), BASE/Patient,
BASE/Group/ID, or a complete .../$export?... URL whose parameters are kept; "-" reads it from
the first line of stdin; without it, --fhir-url is used.

The request is a GET, with repeated values joined in one comma list (some servers reject
repeated parameters); --post, or any --patient, sends a FHIR Parameters body instead. A kickoff
is not idempotent: it is retried only after 429 (another export still running; see --wait),
503 with Retry-After, or a failure before the request was sent.

Examples:
   bulk-kickoff https://ehr.example/fhir/Group/abc --type Patient,Condition --since 2024-01-01
   bulk-kickoff "$BULK_FHIR_URL/Group/abc" \
       --type-filter 'Observation?category=laboratory,vital-signs' | bulk-poll > manifest.ndjson
   bulk-kickoff https://ehr.example/fhir/Patient --patient 123 --patient 456 \
       --log log.ndjson -o status-url.txt
   bulk-kickoff 'https://ehr.example/fhir/$export?_type=Patient&_elements=id' \
       --param organizeOutputBy=Patient`

func newApp() *cli.App { return newAppWith(deps{}) }

func newAppWith(d deps) *cli.App {
	return &cli.App{
		Name:        "bulk-kickoff",
		Usage:       "start a FHIR Bulk Data export and print its status URL",
		UsageText:   "bulk-kickoff [options] [FHIR_URL|-]",
		ArgsUsage:   "[FHIR_URL|-]",
		Description: description,
		Flags:       tool.Flags(kickoffFlags(), tool.ServerFlags()),
		Action:      func(c *cli.Context) error { return run(c, d.withDefaults()) },
	}
}

func kickoffFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the status URL to `FILE` (atomically) instead of stdout"},
		&cli.StringSliceFlag{Name: "type", Aliases: []string{"t"}, Usage: "resource `TYPE`s to export (repeatable; comma lists ok)"},
		&cli.BoolFlag{Name: "allow-unknown-types", Usage: "send --type and --type-filter types that FHIR R4 and R5 do not define (custom types)"},
		&cli.StringFlag{Name: "since", Usage: "only resources changed after `TIME` (a FHIR date or dateTime; sent as an instant)"},
		&cli.StringFlag{Name: "until", Usage: "only resources changed before `TIME` (a FHIR date or dateTime; sent as an instant)"},
		&cli.StringSliceFlag{Name: "elements", Usage: "only these `ELEMENTS` of each resource (repeatable; comma lists ok)"},
		&cli.StringSliceFlag{Name: "type-filter", Usage: "a FHIR search `QUERY` such as 'Observation?category=laboratory' (repeatable; never split on commas)"},
		&cli.StringSliceFlag{Name: "patient", Usage: "only this patient `ID` (repeatable; implies --post)"},
		&cli.StringSliceFlag{Name: "include-associated-data", Usage: "includeAssociatedData `VALUE`s such as LatestProvenanceResources (repeatable; comma lists ok)"},
		&cli.StringFlag{Name: "output-format", Usage: "_outputFormat `MIME` type (default: the server's, application/fhir+ndjson)"},
		&cli.BoolFlag{Name: "allow-partial-manifests", Usage: "let the server hand out the manifest in pages while the export runs (STU3)"},
		&cli.BoolFlag{Name: "lenient", Usage: "send Prefer: handling=lenient (ignore unsupported parameters instead of failing)"},
		&cli.StringSliceFlag{Name: "param", Usage: "any other kickoff parameter, `NAME=VALUE` (repeatable; never split on commas)"},
		&cli.BoolFlag{Name: "post", Usage: "POST a FHIR Parameters body instead of a GET"},
		&cli.DurationFlag{Name: "wait", Value: time.Hour, Usage: "keep retrying 429 (another export running) and 503 for up to `DURATION`"},
		&cli.StringFlag{Name: "log", EnvVars: []string{"BULK_LOG"}, Usage: "append the kickoff event to the export log `FILE` (log.ndjson format)"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only errors and warnings on stderr"},
	}
}

func run(c *cli.Context, d deps) error {
	ctx := c.Context
	// bulk-kickoff draws no progress: its lines are diagnostics (the instants and request sent,
	// retries), shown on or off a terminal unless --quiet, and the resume line is its summary.
	st := tool.NewStatus(c)
	say := st.Line
	target, err := fhirURL(c)
	if err != nil {
		return err
	}
	req := bulk.KickoffRequest{URL: target, Types: bulk.SplitList(c.StringSlice("type")...),
		Elements: bulk.SplitList(c.StringSlice("elements")...), TypeFilters: nonEmpty(c.StringSlice("type-filter")),
		Patients: nonEmpty(c.StringSlice("patient")), IncludeAssociatedData: bulk.SplitList(c.StringSlice("include-associated-data")...),
		OutputFormat: c.String("output-format"), AllowPartialManifests: c.Bool("allow-partial-manifests"),
		Lenient: c.Bool("lenient"), Post: c.Bool("post"), Wait: c.Duration("wait"), ReadTimeout: d.readTimeout,
		AllowUnknownTypes: c.Bool("allow-unknown-types")}
	for _, name := range []string{"since", "until"} {
		v := c.String(name)
		if v == "" {
			continue
		}
		n, err := bulk.NormalizeTime(v)
		if err != nil {
			return tool.UsageErrorf("--%s: %v", name, err)
		}
		if name == "since" {
			req.Since = n
		} else {
			req.Until = n
		}
	}
	for _, p := range c.StringSlice("param") {
		name, value, ok := strings.Cut(p, "=")
		if !ok || strings.TrimSpace(name) == "" {
			return tool.UsageErrorf("--param %q: want NAME=VALUE", p)
		}
		req.Params = append(req.Params, [2]string{strings.TrimSpace(name), value})
	}
	pk, err := req.Prepare()
	if _, ok := errors.AsType[*bulk.UnknownTypeError](err); ok {
		return tool.UsageErrorf("%v (--allow-unknown-types sends it anyway)", err)
	} else if err != nil {
		return tool.UsageErrorf("%v", err)
	}
	for _, name := range []string{bulk.ParamSince, bulk.ParamUntil} {
		if v, ok := pk.Parameters[name].(string); ok {
			say("%s=%s", name, v)
		}
	}

	var log *exportdir.LogWriter
	if path := c.String("log"); path != "" {
		if log, err = exportdir.OpenLog(path); err != nil {
			return err
		}
		defer log.Close()
	}
	out, err := tool.CreateOutput(c, c.String("output"))
	if err != nil {
		return err
	}
	defer out.Abort()

	var tokenURL string
	// FailFast: a server that never answered is a wrong URL, not an outage worth minutes of retries.
	client, err := tool.NewClientWith(c, tool.ClientConfig{Base: pk.Base, Types: req.Types, Now: d.now, Sleep: d.sleep, FailFast: true, Status: st,
		OnTokenURL: func(u string) { tokenURL = u },
		OnRetry: func(e fhirclient.RetryEvent) {
			say("%s %s: %s; retrying in %v (attempt %d)", e.Method, e.URL, e.Reason, e.Wait.Round(100*time.Millisecond), e.Attempt+1)
		}})
	if err != nil {
		return err
	}
	// The CapabilityStatement fills the log's software fields and tells whether the server is
	// Epic (Epic-Client-ID); an export works without it.
	capa, merr := client.Metadata(ctx)
	if merr != nil {
		if _, unreachable := errors.AsType[*fhirclient.UnreachableError](merr); unreachable || ctx.Err() != nil {
			return merr
		}
		st.Warn("%v (continuing without the server's CapabilityStatement)", merr)
	}

	say("%s %s", pk.Method, fhirclient.Redact(pk.URL))
	res, kerr := pk.Send(ctx, client)
	if log != nil && ctx.Err() == nil {
		id := "urn:uuid:" + randomUUID()
		if kerr == nil {
			id = res.StatusURL
		}
		if err := log.Write(kickoffEvent(id, pk, res, kerr, capa, d.now()), true); err != nil {
			return errors.Join(kerr, err)
		}
	}
	if kerr != nil {
		return kerr
	}
	if o := res.Outcome; o != nil {
		// Warnings (parameters ignored under --lenient) matter even with --quiet; the usual
		// "export started" information does not.
		if slices.ContainsFunc(o.Issues, func(i fhirclient.Issue) bool { return i.Severity != "information" }) {
			st.Warn("the server says: %v", o)
		} else {
			say("the server says: %v", o)
		}
	}
	if strings.HasPrefix(strings.ToLower(pk.URL), "https:") && strings.HasPrefix(strings.ToLower(res.StatusURL), "http:") {
		st.Warn("the export was started over https but its status URL is plain http: " +
			"bulk-poll and bulk-fetch will not send credentials to it")
	}
	// The record lets bulk-poll and bulk-fetch find the FHIR base and token endpoint from the
	// status URL alone, in this shell or another (DESIGN.md §1). The export works without it.
	if dir := tool.RecordDir(); dir != "" {
		rec := bulk.Record{StatusURL: res.StatusURL, FHIRBase: pk.Base, TokenURL: tokenURL, ExportURL: pk.URL, Types: req.Types}
		if err := bulk.SaveRecord(dir, rec, d.now()); err != nil {
			st.Warn("%v (bulk-poll and bulk-fetch will need --fhir-url for SMART auth)", err)
		}
	}
	if err := writeStatusURL(out, res.StatusURL); err != nil {
		// The export is running on the server: losing its URL would orphan it (Epic allows one
		// export per client and Group), so it goes to stderr whatever --quiet says.
		st.Print("the export was started; its status URL is %s", res.StatusURL)
		st.Print("to resume: bulk-poll %s", shellQuote(res.StatusURL))
		return err
	}
	st.Summary("to resume: bulk-poll %s", shellQuote(res.StatusURL))
	return nil
}

// writeStatusURL writes the status URL line to out and commits it.
func writeStatusURL(out *tool.Output, statusURL string) error {
	if _, err := io.WriteString(out, statusURL+"\n"); err != nil {
		return err
	}
	return out.Commit()
}

// fhirURL is the FHIR_URL argument, the first line of stdin for "-", or --fhir-url.
func fhirURL(c *cli.Context) (string, error) {
	switch n := c.NArg(); {
	case n > 1:
		return "", tool.UsageErrorf("too many arguments (want one FHIR_URL): %q", c.Args().Slice())
	case n == 1 && c.Args().First() != "-":
		return c.Args().First(), nil
	case n == 1:
		in, err := tool.Input(c, "-")
		if err != nil {
			return "", err
		}
		defer in.Close()
		return tool.FirstLine(in)
	}
	if u := c.String("fhir-url"); u != "" {
		return u, nil
	}
	return "", tool.UsageErrorf("no FHIR_URL: give a FHIR base, BASE/Patient, BASE/Group/ID or $export URL (or set --fhir-url)")
}

// kickoffEvent is the kickoff event of DESIGN.md §4 (bulk-data-client's logVersion 2 fields).
func kickoffEvent(exportID string, pk *bulk.PreparedKickoff, res *bulk.KickoffResult, kerr error,
	capa *fhirclient.Capability, now time.Time) exportdir.Event {
	detail := exportdir.NewKickoff(pk.URL, pk.Parameters)
	if capa != nil {
		// Unknown fields stay null, as bulk-data-client writes them.
		for dst, v := range map[*any]string{&detail.SoftwareName: capa.SoftwareName, &detail.SoftwareVersion: capa.SoftwareVersion,
			&detail.SoftwareReleaseDate: capa.SoftwareReleaseDate, &detail.FHIRVersion: capa.FHIRVersion} {
			if v != "" {
				*dst = v
			}
		}
	}
	if res != nil {
		detail.ResponseHeaders = exportdir.ResponseHeaders(res.Header)
	}
	if kerr != nil {
		detail.ErrorBody = kerr.Error()
		if se, ok := errors.AsType[*fhirclient.StatusError](kerr); ok {
			detail.ErrorCode = se.StatusCode
			detail.ResponseHeaders = exportdir.ResponseHeaders(se.Header)
			if len(se.Body) > 0 {
				detail.ErrorBody = string(se.Body)
			}
		}
	}
	e, _ := exportdir.NewEvent(exportID, exportdir.EventKickoff, detail, now) // strings and numbers always marshal
	e.Client, e.ClientVersion = "bulkpipe", tool.Version()
	return e
}

// randomUUID names a kickoff that failed: there is no status URL to serve as its exportId.
func randomUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// shellQuote quotes s for a POSIX shell, so the resume hint can be pasted as is.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// nonEmpty drops blank values of a repeatable flag that is not split on commas.
func nonEmpty(vs []string) []string {
	var out []string
	for _, v := range vs {
		if strings.TrimSpace(v) != "" {
			out = append(out, v)
		}
	}
	return out
}
