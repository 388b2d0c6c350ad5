// Command bulk-kickoff starts a FHIR Bulk Data export and prints its status URL, the first step
// of `bulk-kickoff URL | bulk-poll | bulk-fetch --dir DIR` (DESIGN.md §1, §2).
package main

import (
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/incremental"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
)

func main() { os.Exit(tool.Main(newApp(tool.Deps{}))) }

const description = `Starts a Bulk Data export (system, Patient or Group level) and prints its status URL on
stdout, one line, for bulk-poll. FHIR_URL is a FHIR base URL (system level), BASE/Patient,
BASE/Group/ID, or a complete .../$export?... URL whose parameters are kept; "-" reads it from
the first line of stdin; without it, --fhir-url is used.

The request is a GET, with repeated values joined in one comma list (some servers reject
repeated parameters); --post, or any --patient, sends a FHIR Parameters body instead. A kickoff
is not idempotent: it is retried only after 429 (see --wait), 503 with Retry-After, or a
failure before the request was sent. A refusal because of the client's earlier exports (Epic:
"The Client requested this Group too recently", one export at a time) is not retried: the
error line says what to do.

Examples:
   bulk-kickoff https://ehr.example/fhir/Group/abc --type Patient,Condition --since 2024-01-01
   bulk-kickoff "$BULK_FHIR_URL/Group/abc" \
       --type-filter 'Observation?category=laboratory,vital-signs' | bulk-poll > manifest.ndjson
   bulk-kickoff "$BULK_FHIR_URL/Group/abc" --type Patient,Condition \
       --since auto --since-from bulkpipe.duckdb      # what changed since the last load
   bulk-kickoff https://ehr.example/fhir/Patient --patient 123 --patient 456 \
       --log log.ndjson -o status-url.txt
   bulk-kickoff 'https://ehr.example/fhir/$export?_type=Patient&_elements=id' \
       --param organizeOutputBy=Patient`

// newApp is bulk-kickoff's command line, run with d (tests pass their clock and sleeps).
func newApp(d tool.Deps) *cli.App {
	return tool.Command{Name: "bulk-kickoff", Usage: "start a FHIR Bulk Data export and print its status URL",
		ArgsUsage: "[FHIR_URL|-]", Description: description, Flags: tool.Flags(kickoffFlags(), tool.ServerFlags()), Run: run}.App(d)
}

func kickoffFlags() []cli.Flag {
	return []cli.Flag{
		tool.OutputFlag("the status URL"),
		&cli.StringSliceFlag{Name: "type", Aliases: []string{"t"}, Usage: "resource `TYPE`s to export (repeatable; comma lists ok)"},
		&cli.BoolFlag{Name: "allow-unknown-types", Usage: "send --type and --type-filter types that FHIR R4 and R5 do not define (custom types)"},
		&cli.StringFlag{Name: "since", Usage: "only resources changed after `TIME` (a FHIR date or dateTime; sent as an instant), or auto (see --since-from)"},
		&cli.StringFlag{Name: "since-from", Usage: "with --since auto: the earlier export to follow, an export `FOLDER` or etl-load's DATABASE (its transactionTime becomes _since)"},
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
		&cli.BoolFlag{Name: "ignore-capabilities", Usage: "send the kickoff whatever the server's CapabilityStatement declares (no check of its export levels and parameters)"},
		&cli.DurationFlag{Name: "wait", Value: time.Hour, Usage: "keep retrying 429 and 503 (not a refusal because of earlier exports) for up to `DURATION`"},
		&cli.StringFlag{Name: "log", EnvVars: []string{"BULK_LOG"}, Usage: "append the kickoff event to the export log `FILE` (log.ndjson format)"},
		tool.QuietFlag(),
	}
}

func run(c *cli.Context, d tool.Deps) error {
	ctx := c.Context
	// bulk-kickoff draws no progress: its lines are diagnostics (the instants and request sent,
	// retries), shown on or off a terminal unless --quiet, and the resume line is its summary.
	st := d.Status(c)
	req, err := kickoffRequest(c, d)
	if err != nil {
		return err
	}
	if err := chooseSince(c, st, &req); err != nil {
		return err
	}
	pk, err := prepare(st, req)
	if err != nil {
		return err
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
	client, err := tool.NewClientWith(c, tool.ClientConfig{Base: pk.Base, Types: req.Types, Now: d.Now, Sleep: d.Sleep,
		FailFast: true, Status: st, OnTokenURL: func(u string) { tokenURL = u }})
	if err != nil {
		return err
	}
	capa, err := metadata(ctx, st, client)
	if err != nil {
		return err
	}
	if !c.Bool("ignore-capabilities") {
		if err := checkCapabilities(ctx, st, client, capa, pk); err != nil {
			return err
		}
	}
	st.Line("%s %s", pk.Method, fhirclient.Redact(pk.URL))
	res, kerr := pk.Send(ctx, client)
	if log != nil && ctx.Err() == nil {
		if err := log.Write(exportdir.SentKickoff(pk, res, kerr, capa, tool.Version(), d.Now()), true); err != nil {
			return errors.Join(kerr, err)
		}
	}
	if kerr != nil {
		return refused(incremental.ExplainSince(kerr, req.Since), pk)
	}
	reportStart(st, pk, res)
	// The record lets bulk-poll and bulk-fetch find the FHIR base and token endpoint from the
	// status URL alone, in this shell or another (DESIGN.md §1). The export works without it.
	if dir := tool.RecordDir(); dir != "" {
		rec := bulk.Record{StatusURL: res.StatusURL, FHIRBase: pk.Base, TokenURL: tokenURL, ExportURL: pk.URL, Types: req.Types}
		if err := bulk.SaveRecord(dir, rec, d.Now()); err != nil {
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

// kickoffRequest is the kickoff the argument and flags describe, not yet checked.
func kickoffRequest(c *cli.Context, d tool.Deps) (bulk.KickoffRequest, error) {
	target, err := fhirURL(c)
	if err != nil {
		return bulk.KickoffRequest{}, err
	}
	req := bulk.KickoffRequest{URL: target, Types: bulk.SplitList(c.StringSlice("type")...),
		Elements: bulk.SplitList(c.StringSlice("elements")...), TypeFilters: nonEmpty(c.StringSlice("type-filter")),
		Patients: nonEmpty(c.StringSlice("patient")), IncludeAssociatedData: bulk.SplitList(c.StringSlice("include-associated-data")...),
		OutputFormat: c.String("output-format"), AllowPartialManifests: c.Bool("allow-partial-manifests"),
		Lenient: c.Bool("lenient"), Post: c.Bool("post"), Wait: c.Duration("wait"), ReadTimeout: d.ReadTimeout,
		AllowUnknownTypes: c.Bool("allow-unknown-types")}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"since", &req.Since}, {"until", &req.Until}} {
		if v := c.String(f.name); f.name == "since" && v == sinceAuto {
			*f.dst = v // chooseSince replaces it
		} else if v != "" {
			if *f.dst, err = bulk.NormalizeTime(v); err != nil {
				return req, tool.UsageErrorf("--%s: %v", f.name, err)
			}
		}
	}
	for _, p := range c.StringSlice("param") {
		name, value, ok := strings.Cut(p, "=")
		if !ok || strings.TrimSpace(name) == "" {
			return req, tool.UsageErrorf("--param %q: want NAME=VALUE", p)
		}
		req.Params = append(req.Params, [2]string{strings.TrimSpace(name), value})
	}
	return req, nil
}

// prepare checks the kickoff and shows the instants --since and --until were normalized to.
func prepare(st *tool.Status, req bulk.KickoffRequest) (*bulk.PreparedKickoff, error) {
	pk, err := req.Prepare()
	if _, ok := errors.AsType[*bulk.UnknownTypeError](err); ok {
		return nil, tool.UsageErrorf("%v (--allow-unknown-types sends it anyway)", err)
	} else if err != nil {
		return nil, tool.UsageErrorf("%v", err)
	}
	for _, name := range []string{bulk.ParamSince, bulk.ParamUntil} {
		if v, ok := pk.Parameters[name].(string); ok {
			st.Line("%s=%s", name, v)
		}
	}
	return pk, nil
}

// metadata is the server's CapabilityStatement, which fills the log's software fields and tells
// whether the server is Epic (Epic-Client-ID). An export works without it, so only a server
// never reached (or an interrupt) ends the run.
func metadata(ctx context.Context, st *tool.Status, client *fhirclient.Client) (*fhirclient.Capability, error) {
	capa, err := client.Metadata(ctx)
	if err != nil {
		if _, unreachable := errors.AsType[*fhirclient.UnreachableError](err); unreachable || ctx.Err() != nil {
			return nil, err
		}
		st.Warn("%v (continuing without the server's CapabilityStatement)", err)
	}
	return capa, nil
}

// reportStart shows what the server said about the export it started.
func reportStart(st *tool.Status, pk *bulk.PreparedKickoff, res *bulk.KickoffResult) {
	if o := res.Outcome; o != nil {
		// Warnings (parameters ignored under --lenient) matter even with --quiet; the usual
		// "export started" information does not.
		if slices.ContainsFunc(o.Issues, func(i fhirclient.Issue) bool { return i.Severity != "information" }) {
			st.Warn("the server says: %v", o)
		} else {
			st.Line("the server says: %v", o)
		}
	}
	if strings.HasPrefix(strings.ToLower(pk.URL), "https:") && strings.HasPrefix(strings.ToLower(res.StatusURL), "http:") {
		st.Warn("the export was started over https but its status URL is plain http: " +
			"bulk-poll and bulk-fetch will not send credentials to it")
	}
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
