package tool

import (
	"regexp"
	"strings"

	"github.com/urfave/cli/v2"
)

// helpWidth is the widest line --help prints: it fits a 100-column terminal.
const helpWidth = 100

// helpTemplate is urfave/cli's app help with the options laid out as the flag package does, the
// name and placeholder on one line and the usage below it, wrapped: urfave/cli's two aligned
// columns grow as wide as the longest flag and its usage together (180 columns and more).
const helpTemplate = `NAME:
   {{template "helpNameTemplate" .}}

USAGE:
   {{if .UsageText}}{{wrap .UsageText 3}}{{else}}{{.HelpName}} [options]{{if .ArgsUsage}} {{.ArgsUsage}}{{end}}{{end}}{{if .Version}}{{if not .HideVersion}}

VERSION:
   {{.Version}}{{end}}{{end}}{{if .Description}}

DESCRIPTION:
   {{template "descriptionTemplate" .}}{{end}}{{if .VisibleFlags}}

OPTIONS:
{{index ExtraInfo "options"}}{{end}}
`

// helpOptions renders the OPTIONS section of helpTemplate.
func helpOptions(app *cli.App) string {
	type group struct {
		name  string
		flags []cli.Flag
	}
	// Without categories urfave/cli has none to give, not one holding every flag.
	groups := []group{{flags: app.VisibleFlags()}}
	if cats := app.VisibleFlagCategories(); len(cats) > 0 {
		groups = nil
		for _, cat := range cats {
			g := group{name: cat.Name()}
			for _, f := range cat.Flags() {
				g.flags = append(g.flags, f)
			}
			groups = append(groups, g)
		}
	}
	var b strings.Builder
	for i, g := range groups {
		if i > 0 {
			b.WriteString("\n")
		}
		if g.name != "" {
			b.WriteString("   " + g.name + ":\n\n")
		}
		for _, f := range g.flags {
			head, usage, _ := strings.Cut(cli.FlagStringer(f), "\t")
			// urfave/cli quotes a string flag's default; a size or a count reads as one unquoted.
			usage = quotedNumber.ReplaceAllString(usage, "(default: $1)")
			b.WriteString("   " + head + "\n")
			for _, l := range wrapWords(usage, helpWidth-9) {
				b.WriteString("         " + l + "\n")
			}
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// quotedNumber is a quoted default that starts with a digit: "256MiB", "5m", "10000".
var quotedNumber = regexp.MustCompile(`\(default: "(\d[^"]*)"\)`)

// wrapWords breaks s into lines of at most width bytes at spaces (a longer word gets a line).
func wrapWords(s string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		switch {
		case line == "":
			line = w
		case len(line)+1+len(w) <= width:
			line += " " + w
		default:
			lines = append(lines, line)
			line = w
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}
