package tool

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// OldFlag keeps a renamed flag's earlier names working: a hidden flag that takes a value as the
// new one does (so Reorder keeps its value with it), read through Renamed. urfave/cli v2 has no
// hidden aliases, and scripts written before a rename must not break.
func OldFlag(newName, oldName string, oldAliases ...string) cli.Flag {
	return &cli.StringFlag{Name: oldName, Aliases: oldAliases, Hidden: true, Usage: "`VALUE`: old name of --" + newName}
}

// Renamed returns the value of the flag name, or of its old name (see OldFlag) with a warning on
// stderr that names the new one. Both at once is a usage error: which one wins would be a guess.
func Renamed(c *cli.Context, name, oldName string) (string, error) {
	if !c.IsSet(oldName) {
		return c.String(name), nil
	}
	if c.IsSet(name) {
		return "", UsageErrorf("%s is the old name of %s: give only %s", dashed(oldName), dashed(name), dashed(name))
	}
	fmt.Fprintf(c.App.ErrWriter, "%s: warning: %s is now %s\n", c.App.Name, dashed(oldName), dashed(name))
	return c.String(oldName), nil
}

// dashed spells a flag as it is typed: -o, --dir.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}
