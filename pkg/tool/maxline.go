package tool

import (
	"github.com/bulkpipe/bulkpipe/pkg/attachment"
	"github.com/urfave/cli/v2"
)

// maxMaxLine bounds --max-line below what a bufio buffer of an int on every platform can hold.
const maxMaxLine = 1<<31 - 1<<20

// MaxLineFlag is --max-line, one flag with one size syntax (256MiB) in every tool that reads
// NDJSON.
func MaxLineFlag() cli.Flag {
	return &cli.StringFlag{Name: "max-line", Value: "256MiB", Usage: "refuse input lines longer than `SIZE` (such as 64MiB or 1GiB)"}
}

// MaxLine reads --max-line, as attachment.ParseSize reads sizes; a bad one is a usage error.
func MaxLine(c *cli.Context) (int, error) {
	n, err := attachment.ParseSize(c.String("max-line"))
	if err != nil || n < 1 || n > maxMaxLine {
		return 0, UsageErrorf("--max-line %q: want a size from 1 byte to 2047MiB", c.String("max-line"))
	}
	return int(n), nil
}
