package merge

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirjson"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/synth"
	"github.com/google/go-cmp/cmp"
	"github.com/tidwall/gjson"
)

// categories are the Observation slices of scripts/export-sliced.sh; "" is the remainder slice,
// Observation?category:missing=true.
var categories = []string{"laboratory", "vital-signs", "social-history", "survey", "exam", "imaging", "procedure", "therapy", "activity", ""}

func categoryFilter(c string) string {
	if c == "" {
		return "Observation?category:missing=true"
	}
	return "Observation?category=" + c
}

// byID reads every Observation of a merged folder (or an unsliced export), failing on a duplicate id.
func byID(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, err := exportdir.Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range files {
		if f.ItemType != exportdir.ItemOutput || f.ResourceType != "Observation" {
			continue
		}
		b, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(string(b)) {
			line = strings.TrimSuffix(line, "\n")
			id := fhirjson.ID([]byte(line))
			if _, dup := got[id]; dup {
				t.Errorf("%s: Observation/%s appears twice", dir, id)
			}
			got[id] = line
		}
	}
	return got
}

// TestSlicesEqualUnsliced (synthetic variant): the test data set's Observations, split by category
// into slice folders (each with a bulk-fetch-style log written through exportdir, later slices
// repeating some lines as servers do across files), merge to exactly the unsliced Observations, byte
// for byte per resource; the merged log gives the earliest slice time and the Group.
func TestSlicesEqualUnsliced(t *testing.T) {
	d := synth.Generate(synth.Options{Patients: 20, Seed: 7})
	want := map[string]string{}
	bySlice := map[string][]string{}
	for _, o := range d.Resources["Observation"] {
		want[fhirjson.ID(o)] = string(o)
		var cats []string
		for _, c := range gjson.GetBytes(o, "category.#.coding.#.code").Array() {
			for _, code := range c.Array() {
				if !slices.Contains(cats, code.Str) {
					cats = append(cats, code.Str)
				}
			}
		}
		if len(cats) == 0 {
			cats = []string{""}
		}
		for _, c := range cats { // an Observation of two categories is in both slices
			bySlice[c] = append(bySlice[c], string(o))
		}
	}
	if len(bySlice[""]) == 0 || len(bySlice) < 4 {
		t.Fatalf("synthetic data has slices %d, remainder %d: want several categories and some without", len(bySlice), len(bySlice[""]))
	}
	dir := t.TempDir()
	var srcs []string
	first := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	for i, c := range categories {
		ls := bySlice[c]
		if len(ls) == 0 {
			continue
		}
		half := len(ls) / 2
		files := map[string]string{"Observation.000.ndjson": lines(ls[:half]...) + "\n"} // a blank line, as some servers end
		if half < len(ls) {
			// the second file repeats a few lines of the first, as a server may across files
			files["Observation.001.ndjson"] = lines(append(slices.Clone(ls[half:]), ls[:min(3, half)]...)...)
		}
		name := "obs-" + c
		if c == "" {
			name = "obs-missing"
		}
		p := filepath.Join(dir, name)
		// slices finish minutes apart, in reverse category order: the last written is the earliest
		tx := first.Add(time.Duration(len(categories)-i) * time.Minute)
		writeSlice(t, p, slice{group: synth.GroupAll, time: tx.Format(time.RFC3339), files: files,
			params: map[string]any{"_type": "Observation", "_typeFilter": categoryFilter(c)}})
		srcs = append(srcs, p)
	}
	out := filepath.Join(dir, "merged")
	o, warnings := testOptions(t, out, srcs...)
	o.Mem = 256 << 10 // spill: the data set is a few MB
	if _, err := Run(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, byID(t, out)); diff != "" {
		t.Errorf("merged category slices differ from the unsliced Observations (-want +got):\n%s", diff)
	}
	if len(*warnings) != 0 {
		t.Errorf("warnings = %q", *warnings)
	}
	exp, err := exportdir.ReadLog(filepath.Join(out, exportdir.LogName))
	if err != nil {
		t.Fatal(err)
	}
	var earliest time.Time
	for _, s := range srcs {
		e, _ := exportdir.ReadLog(filepath.Join(s, exportdir.LogName))
		if earliest.IsZero() || e.TransactionTime.Before(earliest) {
			earliest = e.TransactionTime
		}
	}
	if exp.Group != synth.GroupAll || !exp.TransactionTime.Equal(earliest) {
		t.Errorf("merged log: Group %q at %v, want %q at %v", exp.Group, exp.TransactionTime, synth.GroupAll, earliest)
	}
	if f, _ := exp.RequestParameters["_typeFilter"].([]any); len(f) != len(srcs) {
		t.Errorf("merged _typeFilter = %v, want the %d slices' filters", exp.RequestParameters["_typeFilter"], len(srcs))
	}
}

// TestServerSlicesEqualUnsliced (test-server variant): the same against pkg/fhirtest over HTTP,
// so the slices are what a server returns for each category _typeFilter and for
// category:missing=true. The export steps are plain HTTP here (bulk-kickoff, bulk-poll and
// bulk-fetch are tested on their own); the folders get the log bulk-fetch would write.
func TestServerSlicesEqualUnsliced(t *testing.T) {
	var tick atomic.Int64
	start := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	srv, err := fhirtest.NewServer(fhirtest.Options{Patients: 20, Seed: 3,
		Now: func() time.Time { return start.Add(time.Duration(tick.Add(1)) * time.Second) }})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	export(t, srv.URL(), synth.GroupAll, "", full)
	var srcs []string
	var times []time.Time
	for _, c := range categories {
		p := filepath.Join(dir, "obs-"+c)
		times = append(times, export(t, srv.URL(), synth.GroupAll, categoryFilter(c), p))
		srcs = append(srcs, p)
	}
	out := filepath.Join(dir, "merged")
	o, warnings := testOptions(t, out, srcs...)
	res, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	// The server applied every filter, as the local check reads them: nothing to report.
	if len(res.FilterMismatches) > 0 || len(*warnings) > 0 {
		t.Errorf("merge of slices the server filtered: mismatches %v, warnings %q; want none", res.FilterMismatches, *warnings)
	}
	if mm, err := CheckFilters(t.Context(), o); err != nil || len(mm) > 0 {
		t.Errorf("CheckFilters(slices the server filtered) = %v, %v; want none", mm, err)
	}
	want := byID(t, full)
	if len(want) == 0 {
		t.Fatal("the unsliced export holds no Observations")
	}
	if diff := cmp.Diff(want, byID(t, out)); diff != "" {
		t.Errorf("merged category slices differ from one unsliced export (-want +got):\n%s", diff)
	}
	// the slices really are slices: the server applied each filter
	total := 0
	for _, s := range srcs {
		n := len(byID(t, s))
		if n == len(want) {
			t.Errorf("slice %s holds every Observation: the server ignored its _typeFilter", filepath.Base(s))
		}
		total += n
	}
	if total != len(want) {
		t.Errorf("the slices hold %d Observations, the unsliced export %d", total, len(want))
	}
	exp, err := exportdir.ReadLog(filepath.Join(out, exportdir.LogName))
	if err != nil {
		t.Fatal(err)
	}
	if exp.Group != synth.GroupAll || !exp.TransactionTime.Equal(slices.MinFunc(times, time.Time.Compare)) || exp.TransactionTime.Equal(times[len(times)-1]) {
		t.Errorf("merged log: Group %q at %v, want %q at the earliest of %v", exp.Group, exp.TransactionTime, synth.GroupAll, times)
	}
}

// export runs one Group export of Observations (with an optional _typeFilter) against base and
// saves it as bulk-fetch would: files, and a log with kickoff and status_complete. It returns the
// transactionTime.
func export(t *testing.T, base, group, filter, dir string) time.Time {
	t.Helper()
	q := url.Values{"_type": {"Observation"}}
	params := map[string]any{"_type": "Observation"}
	if filter != "" {
		q.Set("_typeFilter", filter)
		params["_typeFilter"] = filter
	}
	kick := base + "/Group/" + group + "/$export?" + q.Encode()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, kick, nil)
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("Prefer", "respond-async")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("GET %s: %s: %s", kick, resp.Status, body)
	}
	status := resp.Header.Get("Content-Location")
	var man struct {
		TransactionTime string `json:"transactionTime"`
		Output          []struct {
			Type, URL string
		} `json:"output"`
	}
	for i := 0; ; i++ {
		b, code := get(t, status, "application/json")
		if code == http.StatusOK {
			if err := json.Unmarshal(b, &man); err != nil {
				t.Fatalf("manifest %s: %v", b, err)
			}
			break
		}
		if code != http.StatusAccepted || i > 100 {
			t.Fatalf("GET %s: %d %s", status, code, b)
		}
	}
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, item := range man.Output {
		b, code := get(t, item.URL, "application/fhir+ndjson")
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d", item.URL, code)
		}
		os.WriteFile(filepath.Join(dir, exportdir.FileName(item.Type, n[item.Type])), b, 0o666)
		n[item.Type]++
	}
	lw, err := exportdir.OpenLog(filepath.Join(dir, exportdir.LogName))
	if err != nil {
		t.Fatal(err)
	}
	defer lw.Close()
	for _, ev := range []struct {
		id     string
		detail any
	}{{"kickoff", map[string]any{"exportUrl": kick, "requestParameters": params}}, {"status_complete", map[string]any{"transactionTime": man.TransactionTime}}} {
		e, _ := exportdir.NewEvent(status, ev.id, ev.detail, time.Now())
		if err := lw.Write(e, false); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := time.Parse(time.RFC3339Nano, man.TransactionTime)
	if err != nil {
		t.Fatalf("manifest transactionTime %q: %v", man.TransactionTime, err)
	}
	return tx
}

func get(t *testing.T, u, accept string) ([]byte, int) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	req.Header.Set("Accept", accept)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(fmt.Errorf("GET %s: %w", u, err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b, resp.StatusCode
}

// TestServerIgnoredTypeFilter: the test server's ignore-typefilter fault returns every
// Observation to each slice; the merge reports each slice (and still gives the unsliced result),
// and CheckFilters finds the same without merging.
func TestServerIgnoredTypeFilter(t *testing.T) {
	srv, err := fhirtest.NewServer(fhirtest.Options{Patients: 10, Seed: 3,
		Faults: []fhirtest.Fault{{Kind: fhirtest.FaultIgnoreFilter}}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	export(t, srv.URL(), synth.GroupAll, "", full)
	want := byID(t, full)
	lab := 0
	for _, r := range want {
		if strings.Contains(gjson.Get(r, "category.#.coding.#.code").Raw, `"laboratory"`) {
			lab++
		}
	}
	if lab == 0 || lab == len(want) {
		t.Fatalf("the data set has %d laboratory Observations of %d: the test proves nothing", lab, len(want))
	}
	var srcs []string
	for _, c := range []string{"laboratory", "vital-signs", ""} {
		p := filepath.Join(dir, "obs-"+c)
		export(t, srv.URL(), synth.GroupAll, categoryFilter(c), p)
		srcs = append(srcs, p)
	}
	out := filepath.Join(dir, "merged")
	o, warnings := testOptions(t, out, srcs...)
	res, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, byID(t, out)); diff != "" {
		t.Errorf("merged slices differ from the unsliced export (-want +got):\n%s", diff)
	}
	if len(res.FilterMismatches) != 3 || len(*warnings) != 3 {
		t.Fatalf("merge: mismatches %v, warnings %q; want one per slice", res.FilterMismatches, *warnings)
	}
	got := res.FilterMismatches[0]
	if got.Slice != srcs[0] || got.Type != "Observation" || got.Filter != "category=laboratory" ||
		got.Total != int64(len(want)) || got.Outside != int64(len(want)-lab) {
		t.Errorf("laboratory slice: %+v, want %d of %d Observations outside category=laboratory", got, len(want)-lab, len(want))
	}
	wantMsg := fmt.Sprintf("slice %s: %d of %d Observation resources do not match its filter category=laboratory (e.g. Observation/",
		srcs[0], len(want)-lab, len(want))
	if !strings.HasPrefix((*warnings)[0], wantMsg) || !strings.Contains((*warnings)[0], "the server ignored _typeFilter") {
		t.Errorf("warning = %q, want it to start %q", (*warnings)[0], wantMsg)
	}
	if f := res.FilterMismatches[2].Filter; f != "category:missing=true" {
		t.Errorf("remainder slice filter = %q, want category:missing=true", f)
	}
	mm, err := CheckFilters(t.Context(), o)
	if err != nil || !cmp.Equal(mm, res.FilterMismatches) {
		t.Errorf("CheckFilters = %v, %v; want what the merge found, %v", mm, err, res.FilterMismatches)
	}
}
