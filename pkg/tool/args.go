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
// into a folder named "--"). So is an unknown flag, named as the user typed it.
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
		name, _, _ = strings.Cut(name, "=")
		tv, known := takesValue[name]
		if !known {
			// Said here, with the dashes as typed: the parser would say "-typo-flag".
			return nil, UsageErrorf("unknown flag %s (see --help)", strings.SplitN(a, "=", 2)[0])
		}
		if tv && !strings.Contains(a, "=") {
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
