package tool

import "github.com/urfave/cli/v2"

// Flag categories group --help output.
const (
	CategoryServer = "Server and authentication"
)

// ServerFlags are the FHIR server and auth flags shared by every tool that talks to a server
// (DESIGN.md §1–2). Each has an environment variable so that a shell or Makefile sets
// credentials once; secrets are only ever taken from files or the environment, never argv.
func ServerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "fhir-url", EnvVars: []string{"BULK_FHIR_URL"}, Category: CategoryServer,
			Usage: "FHIR base `URL` (used to find the token endpoint and to resolve relative URLs)"},
		&cli.StringFlag{Name: "token-url", EnvVars: []string{"BULK_TOKEN_URL"}, Category: CategoryServer,
			Usage: "OAuth token endpoint `URL` (default: from FHIR_URL/.well-known/smart-configuration)"},
		&cli.StringFlag{Name: "smart-client-id", EnvVars: []string{"BULK_SMART_CLIENT_ID"}, Category: CategoryServer,
			Usage: "SMART Backend Services client `ID`, or a path to a file holding it"},
		&cli.PathFlag{Name: "smart-key", EnvVars: []string{"BULK_SMART_KEY"}, Category: CategoryServer,
			Usage: "private JWKS or PEM `FILE` for SMART Backend Services"},
		&cli.StringFlag{Name: "scope", EnvVars: []string{"BULK_SCOPE"}, Category: CategoryServer,
			Usage: "OAuth `SCOPES` to request, space-separated (default: system/TYPE.read for the requested types)"},
		&cli.PathFlag{Name: "bearer-token", EnvVars: []string{"BULK_BEARER_TOKEN_FILE"}, Category: CategoryServer,
			Usage: "`FILE` holding a bearer token (or set BULK_BEARER_TOKEN to the token itself)"},
		&cli.StringFlag{Name: "basic-user", EnvVars: []string{"BULK_BASIC_USER"}, Category: CategoryServer,
			Usage: "user `NAME` for HTTP basic auth"},
		&cli.PathFlag{Name: "basic-password", EnvVars: []string{"BULK_BASIC_PASSWORD_FILE"}, Category: CategoryServer,
			Usage: "`FILE` holding the basic-auth password (or set BULK_BASIC_PASSWORD)"},
		&cli.StringSliceFlag{Name: "header", EnvVars: []string{"BULK_HEADER"}, Category: CategoryServer,
			Usage: "extra request `HEADER` 'Name: value', or @FILE of such lines (repeatable; never logged)"},
		&cli.StringSliceFlag{Name: "token-origin", EnvVars: []string{"BULK_TOKEN_ORIGIN"}, Category: CategoryServer,
			Usage: "also send the token to this `ORIGIN` (scheme://host:port; repeatable)"},
		&cli.IntFlag{Name: "retries", EnvVars: []string{"BULK_RETRIES"}, Value: DefaultRetries, Category: CategoryServer,
			Usage: "retry a request `N` times after its first attempt on 408, 425, 429, 5xx and network errors (0: none)"},
	}
}

// DefaultRetries is the --retries default: with the backoff's doubling waits, about two minutes
// of outage before giving up.
const DefaultRetries = 7

// maxRetries bounds --retries: a request that failed a hundred times is not going to succeed,
// and a huge count would keep a script waiting for days.
const maxRetries = 100

// maxAttempts turns --retries N, the retries after the first attempt, into the tries per request
// that fhirclient counts.
func maxAttempts(c *cli.Context) (int, error) {
	n := c.Int("retries")
	if n < 0 || n > maxRetries {
		return 0, UsageErrorf("--retries %d: want 0 to %d retries after the first attempt", n, maxRetries)
	}
	return n + 1, nil
}

// Flags concatenates flag lists, so a tool's own flags can follow the shared ones.
func Flags(lists ...[]cli.Flag) []cli.Flag {
	var all []cli.Flag
	for _, l := range lists {
		all = append(all, l...)
	}
	return all
}

// QuietFlag is --quiet, one meaning in every tool (Status): no progress and no summary lines;
// warnings and errors are still printed.
func QuietFlag() cli.Flag {
	return &cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress and no summary on stderr (warnings and errors still shown)"}
}

// OutputFlag is -o/--output for a tool whose result is one file: written atomically, stdout when
// absent. what says what the file holds ("the status URL").
func OutputFlag(what string) cli.Flag {
	return &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write " + what + " to `FILE` (atomically) instead of stdout"}
}
