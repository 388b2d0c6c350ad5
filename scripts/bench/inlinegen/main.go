// Command inlinegen supports scripts/bench/inline.sh: "passthrough" writes NDJSON of resources
// ndjson-inline does not touch, "notes" writes DocumentReference lines whose attachments
// bulk-testserver serves (same --patients and --seed) plus curl config files fetching the same
// URLs, and "time" runs a command with stdin and stdout redirected and prints its wall time.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"mime"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/fhirjson"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/synth"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: inlinegen passthrough|notes|time [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "passthrough":
		err = passthrough(os.Args[2:])
	case "notes":
		err = notes(os.Args[2:])
	case "time":
		err = timeCmd(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "inlinegen:", err)
		os.Exit(1)
	}
}

// passthrough writes about -mb MB (1e6 bytes) of Observation lines: the bulk of an export, which
// ndjson-inline must copy at disk speed.
func passthrough(args []string) error {
	fs := flag.NewFlagSet("passthrough", flag.ExitOnError)
	mb := fs.Int("mb", 1024, "size in MB (1e6 bytes)")
	out := fs.String("out", "", "output file")
	fs.Parse(args)
	lines := synth.Generate(synth.Options{Patients: 20, Seed: 1}).Resources["Observation"]
	return repeat(*out, int64(*mb)*1e6, lines)
}

func repeat(path string, size int64, lines [][]byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var n int64
	for n < size {
		for _, l := range lines {
			w.Write(l)
			w.WriteByte('\n')
			n += int64(len(l)) + 1
			if n >= size {
				break
			}
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

var textTypes = map[string]bool{"text/plain": true, "text/html": true, "application/xhtml+xml": true}

// notes writes about -mb MB of the data set's DocumentReference lines that have attachments to
// fetch (repeated as needed), with absolute URLs on -base, and curl config files that fetch the
// same attachments; it prints their number.
func notes(args []string) error {
	fs := flag.NewFlagSet("notes", flag.ExitOnError)
	mb := fs.Int("mb", 1024, "size in MB (1e6 bytes)")
	out := fs.String("out", "", "output file")
	base := fs.String("base", "", "the server's FHIR base URL")
	patients := fs.Int("patients", 200, "bulk-testserver --patients")
	seed := fs.Int64("seed", 0, "bulk-testserver --seed")
	curlDir := fs.String("curl", "", "write curl config files into this folder")
	fs.Parse(args)
	ds := synth.Generate(synth.Options{Patients: *patients, Seed: *seed})
	var lines [][]byte
	for _, l := range ds.Resources["DocumentReference"] {
		l = bytes.ReplaceAll(l, []byte(synth.FilesBasePlaceholder), []byte(*base))
		for _, a := range fhirjson.Attachments(l) {
			if mt, _, _ := mime.ParseMediaType(a.ContentType); textTypes[mt] && !a.HasData && a.URL != "" {
				lines = append(lines, l)
				break
			}
		}
	}
	if len(lines) == 0 {
		return fmt.Errorf("no DocumentReference with an attachment to fetch in %d patients", *patients)
	}
	if err := repeat(*out, int64(*mb)*1e6, lines); err != nil {
		return err
	}
	if *curlDir == "" {
		return nil
	}
	// The same URLs as the file holds, in order, in config files of at most curlBatch URLs:
	// curl -K is quadratic in the number of URLs of one config, so each curl gets a batch and
	// the script runs -parallel curls at once over the batches (xargs -P).
	f, err := os.Open(*out)
	if err != nil {
		return err
	}
	defer f.Close()
	var cfg *os.File
	var w *bufio.Writer
	flush := func() error {
		if cfg == nil {
			return nil
		}
		if err := w.Flush(); err != nil {
			return err
		}
		return cfg.Close()
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	n := 0
	for sc.Scan() {
		for _, a := range fhirjson.Attachments(sc.Bytes()) {
			mt, _, _ := mime.ParseMediaType(a.ContentType)
			if !textTypes[mt] || a.HasData || a.URL == "" {
				continue
			}
			if n%curlBatch == 0 {
				if err := flush(); err != nil {
					return err
				}
				if cfg, err = os.Create(filepath.Join(*curlDir, fmt.Sprintf("%06d.cfg", n/curlBatch))); err != nil {
					return err
				}
				w = bufio.NewWriter(cfg)
			}
			u := a.URL
			if !strings.Contains(u, "://") {
				u = strings.TrimSuffix(*base, "/") + "/" + u
			}
			fmt.Fprintf(w, "url = %q\noutput = \"/dev/null\"\nheader = \"Accept: %s\"\n", u, mt)
			n++
		}
	}
	if err := flush(); err != nil {
		return err
	}
	fmt.Println(n)
	return sc.Err()
}

// curlBatch is the number of URLs per curl config file.
const curlBatch = 200

// timeCmd runs CMD with stdin from -in and stdout to -out and prints its wall time in seconds.
func timeCmd(args []string) error {
	fs := flag.NewFlagSet("time", flag.ExitOnError)
	in := fs.String("in", "", "stdin file (default: none)")
	out := fs.String("out", os.DevNull, "stdout file")
	fs.Parse(args)
	if fs.NArg() == 0 {
		return fmt.Errorf("time: no command")
	}
	cmd := exec.Command(fs.Arg(0), fs.Args()[1:]...)
	cmd.Stderr = os.Stderr
	if *in != "" {
		f, err := os.Open(*in)
		if err != nil {
			return err
		}
		defer f.Close()
		cmd.Stdin = f
	}
	o, err := os.Create(*out)
	if err != nil {
		return err
	}
	defer o.Close()
	cmd.Stdout = o
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", strings.Join(fs.Args(), " "), err)
	}
	fmt.Printf("%.3f\n", time.Since(start).Seconds())
	return nil
}
