package tool

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
)

// maxMaxLine bounds --max-line below what a bufio buffer of an int on every platform can hold.
const maxMaxLine = 1<<31 - 1<<20

// MaxLineFlag is --max-line, one flag with one size syntax (256MiB) in every tool that reads
// NDJSON.
func MaxLineFlag() cli.Flag {
	return &cli.StringFlag{Name: "max-line", Value: "256MiB", Usage: "refuse input lines longer than `SIZE` (such as 64MiB or 1GiB)"}
}

// MaxLine reads --max-line with ParseSize; a bad one is a usage error.
func MaxLine(c *cli.Context) (int, error) {
	n, err := ParseSize(c.String("max-line"))
	if err != nil || n < 1 || n > maxMaxLine {
		return 0, UsageErrorf("--max-line %q: want a size from 1 byte to 2047MiB", c.String("max-line"))
	}
	return int(n), nil
}

// ParseSize reads a byte count from a size flag (--max-line, --max-size, --inline-max-size,
// --mem, --max-file-size) as GNU coreutils (sort -S, dd) do: a number, optionally with a fraction, then a unit; "K", "M", "G", "T" and
// "KiB" … "TiB" are powers of 1024, "KB" … "TB" powers of 1000, "B" or nothing bytes, case
// ignored: 64MiB, 10MB, 512k, 0 (no limit).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	bad := fmt.Errorf("size %q: want a number of bytes such as 64MiB, 10MB or 512K", s)
	v, err := strconv.ParseFloat(t[:i], 64)
	if err != nil || t[:i] == "" {
		return 0, bad
	}
	unit := strings.ToLower(strings.TrimSpace(t[i:]))
	mult := 1.0
	if unit != "" && unit != "b" {
		p := strings.IndexByte("kmgt", unit[0])
		switch {
		case p < 0:
			return 0, bad
		case unit[1:] == "" || unit[1:] == "ib":
			mult = math.Pow(1024, float64(p+1))
		case unit[1:] == "b":
			mult = math.Pow(1000, float64(p+1))
		default:
			return 0, bad
		}
	}
	if n := v * mult; n < math.MaxInt64 {
		return int64(n), nil
	}
	return 0, fmt.Errorf("size %q is too large", s)
}
