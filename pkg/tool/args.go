package tool

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// Reorder moves flags ahead of positional arguments, GNU style, because urfave/cli v2 (like the
// flag package) stops parsing flags at the first positional argument, and users write
// `bulk-poll URL --quiet` as often as `bulk-poll --quiet URL`. A flag that takes a value keeps the
// next argument with it; "--" ends the flags; "-" is a positional argument (stdin). The result
// puts "--" before the positionals so that one starting with a dash is never read as a flag.
//
// A flag that takes a value but ends the command line is a usage error here: left to the parser,
// it would take the "--" inserted above as its value (`bulk-fetch m.ndjson --dir` downloading
// into a folder named "--").
func Reorder(flags []cli.Flag, args []string) ([]string, error) {
	if len(args) == 0 {
		return args, nil
	}
	takesValue := map[string]bool{"help": false, "h": false, "version": false, "v": false}
	for _, f := range flags {
		tv := true
		if v, ok := f.(interface{ TakesValue() bool }); ok {
			tv = v.TakesValue()
		}
		for _, n := range f.Names() {
			takesValue[n] = tv
		}
	}
	var opts, pos []string
	rest := args[1:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			pos = append(pos, rest[i+1:]...)
			break
		}
		if a == "-" || !strings.HasPrefix(a, "-") {
			pos = append(pos, a)
			continue
		}
		opts = append(opts, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		// An unknown flag is passed on alone, so the parser reports it by name.
		if takesValue[name] {
			if i+1 == len(rest) {
				return nil, UsageErrorf("flag needs an argument: %s", a)
			}
			i++
			opts = append(opts, rest[i])
		}
	}
	out := append([]string{args[0]}, opts...)
	if len(pos) > 0 {
		out = append(out, "--")
		out = append(out, pos...)
	}
	return out, nil
}
