// Command benchtool supports scripts/bench/merge.sh: "gen" writes sliced export folders of a given
// size with a given share of duplicates, and "rusage" runs a command and reports its wall time and
// peak RSS where /usr/bin/time is missing.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirjson"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/synth"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchtool gen [flags] | benchtool rusage -o FILE CMD [ARG...]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "gen":
		err = gen(os.Args[2:])
	case "rusage":
		err = rusage(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}

// gen writes -slices folders under -out holding about -mb MB of Observations in all, a -dup share
// of the lines being copies (same id, sometimes a newer lastUpdated) of lines of other slices, each
// folder with a log like bulk-fetch writes. Lines are real synthetic Observations with new ids.
func gen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	mb := fs.Int("mb", 200, "total size in MB (1e6 bytes)")
	nslices := fs.Int("slices", 10, "number of slices")
	dup := fs.Float64("dup", 0.2, "share of lines that duplicate a line of another slice")
	out := fs.String("out", "", "output folder")
	seed := fs.Uint64("seed", 1, "random seed")
	fs.Parse(args)
	if *out == "" {
		return fmt.Errorf("gen: -out is required")
	}
	templates := synth.Generate(synth.Options{Patients: 10, Seed: 1}).Resources["Observation"]
	rng := rand.New(rand.NewPCG(*seed, 99))
	type rec struct{ id, tmpl, day int }
	var written []rec // a sample of written records to duplicate from
	ws := make([]*bufio.Writer, *nslices)
	fsz := make([]*os.File, *nslices)
	for i := range *nslices {
		dir := filepath.Join(*out, fmt.Sprintf("slice-%02d", i))
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return err
		}
		f, err := os.Create(filepath.Join(dir, exportdir.FileName("Observation", 0)))
		if err != nil {
			return err
		}
		fsz[i], ws[i] = f, bufio.NewWriterSize(f, 1<<20)
		if err := writeLog(dir, i); err != nil {
			return err
		}
	}
	target := int64(*mb) * 1e6
	var total int64
	var line []byte
	next := 0
	for total < target {
		s := rng.IntN(*nslices)
		var r rec
		if len(written) > 0 && rng.Float64() < *dup {
			r = written[rng.IntN(len(written))]
			if rng.IntN(2) == 0 {
				r.day++ // a newer version
			}
		} else {
			r = rec{id: next, tmpl: rng.IntN(len(templates)), day: rng.IntN(28)}
			next++
			if len(written) < 1<<20 {
				written = append(written, r)
			} else {
				written[rng.IntN(len(written))] = r
			}
		}
		line = render(line[:0], templates[r.tmpl], r.id, r.day)
		ws[s].Write(line)
		total += int64(len(line))
	}
	for i := range ws {
		if err := ws[i].Flush(); err != nil {
			return err
		}
		if err := fsz[i].Close(); err != nil {
			return err
		}
	}
	fmt.Printf("%d bytes, %d distinct ids\n", total, next)
	return nil
}

// render rewrites a template Observation's id and meta.lastUpdated.
func render(dst, tmpl []byte, id, day int) []byte {
	oldID := fhirjson.ID(tmpl)
	lu, _ := fhirjson.LastUpdated(tmpl)
	b := bytes.Replace(tmpl, []byte(`"id":"`+oldID+`"`), []byte(`"id":"obs-`+strconv.Itoa(id)+`"`), 1)
	b = bytes.Replace(b, []byte(`"lastUpdated":"`+lu+`"`), fmt.Appendf(nil, `"lastUpdated":"2024-02-%02dT10:00:00Z"`, 1+day), 1)
	dst = append(dst, b...)
	return append(dst, '\n')
}

func writeLog(dir string, i int) error {
	lw, err := exportdir.OpenLog(filepath.Join(dir, exportdir.LogName))
	if err != nil {
		return err
	}
	defer lw.Close()
	status := fmt.Sprintf("https://bench.example/fhir/status/%d", i)
	tx := time.Date(2024, 3, 1, 0, i, 0, 0, time.UTC).Format(time.RFC3339)
	for _, ev := range []struct {
		id     string
		detail any
	}{
		{"kickoff", map[string]any{"exportUrl": "https://bench.example/fhir/Group/bench/$export?_type=Observation",
			"requestParameters": map[string]any{"_type": "Observation", "_typeFilter": fmt.Sprintf("Observation?category=c%d", i)}}},
		{"status_complete", map[string]any{"transactionTime": tx}},
	} {
		e, err := exportdir.NewEvent(status, ev.id, ev.detail, time.Now())
		if err != nil {
			return err
		}
		if err := lw.Write(e, false); err != nil {
			return err
		}
	}
	return nil
}
