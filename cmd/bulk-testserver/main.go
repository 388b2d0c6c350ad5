// Command bulk-testserver runs the bulkpipe FHIR Bulk Data test server: a deterministic generated
// data set (or a folder of NDJSON) behind $export, SMART Backend Services and injected faults, for
// demos, scripts and benchmarks. It prints its FHIR base URL as the first line of stdout, then
// serves until SIGINT or SIGTERM.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
)

func main() { os.Exit(tool.Main(newApp())) }

const description = `Serves FHIR Bulk Data export (system, Patient and Group level; GET and POST
kickoff; status, manifest, files, DELETE), /metadata, SMART discovery and a token endpoint,
Binary/{id}, Medication/{id} and Group/{id} under a non-empty base path. The first line of
stdout is the FHIR base URL (such as http://127.0.0.1:PORT/fhir); it then serves until SIGINT
or SIGTERM and exits 0. Diagnostics go to stderr.

Groups of the generated data: all, cohort-a, cohort-b, empty.

` + fhirtest.FaultGrammar + `
EXAMPLES
  bulk-testserver --patients 50 > server.url &
  until base=$(head -n 1 server.url) && [ -n "$base" ]; do sleep 0.1; done
  curl -si -H 'Accept: application/fhir+json' -H 'Prefer: respond-async' \
    "$base/Group/all/\$export"
  bulk-testserver --auth smart --client-id demo --public-key public.jwks --token-ttl 500ms
  bulk-testserver --polls 5 --retry-after 2s --fault 503:1@status --fault reset@file*3
  bulk-testserver --vendor epic --request-window 10m --retry-after 0`

func newApp() *cli.App {
	var flags []cli.Flag
	for _, f := range fhirtest.Flags() {
		switch {
		case f.Bool:
			flags = append(flags, &cli.BoolFlag{Name: f.Name, Usage: f.Usage})
		case f.Repeatable:
			flags = append(flags, &cli.StringSliceFlag{Name: f.Name, Usage: f.Usage})
		default:
			flags = append(flags, &cli.StringFlag{Name: f.Name, Usage: f.Usage, Value: f.Default})
		}
	}
	return &cli.App{
		Name:            "bulk-testserver",
		Usage:           "run a FHIR Bulk Data test server with generated data and injected faults",
		UsageText:       "bulk-testserver [--patients N] [--auth smart --client-id ID --public-key FILE] [--fault SPEC]...",
		Description:     description,
		HideHelpCommand: true,
		Flags:           flags,
		Action:          run,
	}
}

// options reads the flags urfave/cli parsed through fhirtest.OptionsFrom, where the test
// harness's parser of .fhirserver/flags ends too: argv is parsed once.
func options(c *cli.Context) (fhirtest.Options, error) {
	if c.NArg() > 0 {
		return fhirtest.Options{}, tool.UsageErrorf("unexpected argument %q (the server takes only flags)", c.Args().First())
	}
	opts, err := fhirtest.OptionsFrom(c, "")
	if err != nil {
		return fhirtest.Options{}, tool.UsageErrorf("%v", err)
	}
	return opts, nil
}

// run starts the server, prints its base URL and serves until the context ends.
func run(c *cli.Context) error {
	opts, err := options(c)
	if err != nil {
		return err
	}
	srv, err := fhirtest.NewServer(opts)
	if err != nil {
		return err
	}
	defer srv.Close()
	// The base URL is the contract scripts rely on: first line, flushed at once.
	fmt.Fprintln(c.App.Writer, srv.URL())
	if f, ok := c.App.Writer.(interface{ Flush() error }); ok {
		if err := f.Flush(); err != nil {
			return fmt.Errorf("write stdout: %w", err)
		}
	}
	stderr := c.App.ErrWriter
	fmt.Fprintf(stderr, "bulk-testserver: serving %s (auth %s, profile %s)\n", srv.URL(), opts.Auth, opts.Profile)
	if opts.Vendor != "" {
		fmt.Fprintf(stderr, "bulk-testserver: imitating %s\n", opts.Vendor)
	}
	if u := srv.FilesURL(); u != "" {
		fmt.Fprintf(stderr, "bulk-testserver: files origin %s\n", u)
	}
	for _, f := range opts.Faults {
		fmt.Fprintf(stderr, "bulk-testserver: fault %s\n", f)
	}
	<-c.Context.Done()
	fmt.Fprintln(stderr, "bulk-testserver: stopping")
	// A signal is how this server is meant to end: exit 0, not 130.
	return srv.Close()
}
