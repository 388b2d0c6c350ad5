package fhirscript

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

var update = flag.Bool("update", false, "rewrite golden files of the scripts")

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		// exitwith N prints a line on each stream and exits N.
		"exitwith": func() {
			n, _ := strconv.Atoi(os.Args[1])
			fmt.Println("out")
			fmt.Fprintln(os.Stderr, "err")
			os.Exit(n)
		},
		// fhirget URL prints the status code, then the body.
		"fhirget": func() {
			resp, err := http.Get(os.Args[1])
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			defer resp.Body.Close()
			fmt.Println(resp.StatusCode, resp.Header.Get("Retry-After"))
			io.Copy(os.Stdout, resp.Body)
		},
	})
}

func TestScripts(t *testing.T) { testscript.Run(t, ScriptParams("testdata/script", *update)) }
