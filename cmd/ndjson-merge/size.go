package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// parseSize reads a byte count as GNU coreutils (sort -S, dd) do: a number, optionally with a
// fraction, then a unit. "K", "M", "G", "T" and "KiB" … "TiB" are powers of 1024; "KB" … "TB" are
// powers of 1000; "B" or nothing is bytes. Units are case-insensitive: 512MB, 1GiB, 64k, 1.5G.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	if num == "" {
		return 0, fmt.Errorf("size %q: want a number of bytes such as 512MB, 1GiB or 64K", s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: want a number of bytes such as 512MB, 1GiB or 64K", s)
	}
	mult := 1.0
	if unit != "" && unit != "b" {
		p := strings.IndexByte("kmgt", unit[0])
		if p < 0 {
			return 0, fmt.Errorf("size %q: unknown unit %q (use K, M, G, T with B or iB)", s, t[i:])
		}
		switch unit[1:] {
		case "", "ib":
			mult = math.Pow(1024, float64(p+1))
		case "b":
			mult = math.Pow(1000, float64(p+1))
		default:
			return 0, fmt.Errorf("size %q: unknown unit %q (use K, M, G, T with B or iB)", s, t[i:])
		}
	}
	b := v * mult
	if b >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(b), nil
}
