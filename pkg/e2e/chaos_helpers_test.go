package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2" // database/sql driver "duckdb": the chaos cases read etl-load's database as analysts do
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirjson"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
)

// The chaos matrix (issue 8, DESIGN.md §8). Plain `go test ./pkg/e2e` runs a short fixed subset;
// scripts/chaos.sh (make chaos) runs everything with -chaos.long. Each flag has an environment
// variable, so that a Makefile or CI job can set it without touching the go test command line.
var (
	chaosLong   = flag.Bool("chaos.long", envBool("CHAOS_LONG"), "run the whole chaos matrix: every fault kind, every failpoint, the seeded random mix (env CHAOS_LONG=1)")
	chaosSeed   = flag.Int64("chaos.seed", envInt("CHAOS_SEED"), "seed of the random fault mix; replays that one mix (env CHAOS_SEED; 0 = two new seeds, printed)")
	chaosReport = flag.String("chaos.report", os.Getenv("CHAOS_REPORT"), "write one TSV line per chaos case to this file (env CHAOS_REPORT)")
)

func envBool(name string) bool {
	b, _ := strconv.ParseBool(os.Getenv(name))
	return b
}

func envInt(name string) int64 {
	n, _ := strconv.ParseInt(os.Getenv(name), 10, 64)
	return n
}

// toolEnv is the environment of one tool run: this process's, without any BULK_* or BULKPIPE_*
// setting of the user's (an inherited BULK_FHIR_URL would make etl-load download Medications,
// an inherited BULKPIPE_CRASH would kill every step), plus extra.
func toolEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "BULK_") || strings.HasPrefix(kv, "BULKPIPE_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// outcome is how one tool run ended.
type outcome struct {
	Code           int            // exit status; -1 when a signal ended the process
	Signal         syscall.Signal // the signal that ended it, 0 when it exited
	Stdout, Stderr string
	Elapsed        time.Duration
}

// toolTimeout bounds one tool run: the slowest case (a status stall, which bulk-poll notices after
// a minute of silence) stays well under it, and a hung tool fails its case instead of the package.
const toolTimeout = 3 * time.Minute

// runTool runs a bulkpipe binary with exactly env and tells how it ended, signals included (the
// harness's run reports a kill as exit -1 without saying which signal).
func runTool(t *testing.T, env []string, name string, args ...string) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, name), args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	o := outcome{Stdout: out.String(), Stderr: errb.String(), Elapsed: time.Since(start)}
	if ctx.Err() != nil {
		t.Fatalf("%s %s: no end after %v (hung?); stderr:\n%s", name, strings.Join(args, " "), toolTimeout, o.Stderr)
	}
	if err != nil {
		ee, ok := errors.AsType[*exec.ExitError](err)
		if !ok {
			t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
		}
		o.Code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			o.Signal = ws.Signal()
		}
	}
	return o
}

// chaosServer is the server of one case: a bulk-testserver process (fault cases: the --fault
// grammar as users type it) or an in-process fhirtest.Server (crash cases and the random mix,
// which need its request log, or a fault seed apart from the data seed).
type chaosServer struct {
	base string           // the FHIR base URL
	srv  *fhirtest.Server // nil for a process
}

// requests returns what the server has seen so far; nil for a process, which does not say.
func (s chaosServer) requests() []fhirtest.RequestRecord {
	if s.srv == nil {
		return nil
	}
	return s.srv.Requests()
}

// origin is the scheme://host:port of the base URL. Absolute attachment URLs in the generated
// notes carry it, so two servers' files differ there and only there.
func (s chaosServer) origin() string {
	u, err := url.Parse(s.base)
	if err != nil {
		return s.base
	}
	return u.Scheme + "://" + u.Host
}

// chaosKeys writes a fresh EC P-256 key pair for SMART Backend Services: the private key as PKCS#8
// PEM readable by its owner only (anything wider gets a warning), the public one as PKIX PEM for
// bulk-testserver --public-key. Made in Go so the suite needs neither jose nor openssl.
func chaosKeys(t *testing.T, dir string) (private, public string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	private, public = filepath.Join(dir, "private.pem"), filepath.Join(dir, "public.pem")
	if err := os.WriteFile(private, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(public, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		t.Fatal(err)
	}
	return private, public
}

// decodeStd decodes standard base64, padded or not (attachment data).
func decodeStd(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:12])
}

// snapshot is what a pipeline run leaves that a user would look at: sum is compared between runs
// (key → value or digest); detail keeps, per key, the lines behind a digest, so that a mismatch
// can name the first rows that differ instead of two hashes.
type snapshot struct {
	sum    map[string]string
	detail map[string][]string
}

func newSnapshot() *snapshot {
	return &snapshot{sum: map[string]string{}, detail: map[string][]string{}}
}

// add records key as the digest of lines (or, when short, their text).
func (s *snapshot) add(key string, lines []string) {
	s.detail[key] = lines
	joined := strings.Join(lines, "\n")
	if len(joined) <= 200 && !strings.Contains(joined, "\n") {
		s.sum[key] = joined
		return
	}
	s.sum[key] = fmt.Sprintf("%d lines, sha256 %s", len(lines), digest([]byte(joined)))
}

// explain describes how got differs from want: missing and extra keys, and for each differing
// key the first few differing lines.
func explain(want, got *snapshot) string {
	var b strings.Builder
	keys := map[string]bool{}
	for k := range want.sum {
		keys[k] = true
	}
	for k := range got.sum {
		keys[k] = true
	}
	sorted := slices.Sorted(func(yield func(string) bool) {
		for k := range keys {
			if !yield(k) {
				return
			}
		}
	})
	for _, k := range sorted {
		w, wok := want.sum[k]
		g, gok := got.sum[k]
		switch {
		case !wok:
			fmt.Fprintf(&b, "  + %s = %s (not in the reference)\n", k, clip(g, 160))
		case !gok:
			fmt.Fprintf(&b, "  - %s = %s (missing)\n", k, clip(w, 160))
		case w != g:
			fmt.Fprintf(&b, "  ≠ %s: want %s, got %s\n", k, clip(w, 160), clip(g, 160))
			wl, gl := want.detail[k], got.detail[k]
			shown := 0
			for i := 0; i < max(len(wl), len(gl)) && shown < 3; i++ {
				var a, c string
				if i < len(wl) {
					a = wl[i]
				}
				if i < len(gl) {
					c = gl[i]
				}
				if a != c {
					at := firstDiff(a, c)
					fmt.Fprintf(&b, "      line %d, from byte %d: want %s\n              got  %s\n", i+1, at, around(a, at), around(c, at))
					shown++
				}
			}
		}
	}
	return b.String()
}

// firstDiff is the index of the first byte where a and b differ.
func firstDiff(a, b string) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

// around shows s near byte at: what a reader needs to see of a long line that differs there.
func around(s string, at int) string {
	from := max(at-80, 0)
	to := min(at+160, len(s))
	if from >= to {
		return fmt.Sprintf("(%d bytes)", len(s))
	}
	out := s[from:to]
	if from > 0 {
		out = "…" + out
	}
	if to < len(s) {
		out += "…"
	}
	return out
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// shape says how a data-shaping fault changes what the server sends, and so what "the same
// result" means for it (docs/reliability.md lists the promises behind each).
type shape int

const (
	shapeExact        shape = iota // files byte for byte, database rows exactly
	shapeDupLines                  // repeated lines: per type, the lines once each; DB exact but source_file
	shapeNoFinalNL                 // a missing last newline: files equal once it is added
	shapeB64Size                   // size of attachments ndjson-inline did not download is the server's
	shapeNoLastUpdate              // meta.lastUpdated absent: equal without it
	shapeNoTypeFilter              // _typeFilter ignored: slices differ, the merge and the DB do not
)

func (s shape) String() string {
	return [...]string{"exact", "dup-lines", "no-final-newline", "b64-size", "no-lastupdated", "ignore-typefilter"}[s]
}

// inlineMIME are ndjson-inline's default media types (its man page).
var inlineMIME = map[string]bool{"text/plain": true, "text/html": true, "application/xhtml+xml": true}

// untouchedAttachments lists the attachments of raw note files (as bulk-fetch saved them, before
// ndjson-inline) that ndjson-inline leaves alone: those that already carry data, have no url, or
// have a media type it does not inline. Keys are "Type/id|path".
func untouchedAttachments(t *testing.T, rawDir string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	files, _ := filepath.Glob(filepath.Join(rawDir, "*.ndjson"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for l := range bytes.Lines(b) {
			for _, a := range fhirjson.Attachments(l) {
				mt, _, _ := mime.ParseMediaType(a.ContentType)
				if a.HasData || a.URL == "" || !inlineMIME[mt] {
					out[fhirjson.Key(l)+"|"+a.Path] = true
				}
			}
		}
	}
	return out
}

// inlineable counts the attachments of an NDJSON file that ndjson-inline downloads.
func inlineable(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for l := range bytes.Lines(b) {
		for _, a := range fhirjson.Attachments(l) {
			mt, _, _ := mime.ParseMediaType(a.ContentType)
			if !a.HasData && a.URL != "" && inlineMIME[mt] {
				n++
			}
		}
	}
	return n
}

// lineNormalizer returns the per-resource normalization of a shape: the server's origin becomes
// ORIGIN (absolute attachment URLs), then what the fault is allowed to change is taken out.
func lineNormalizer(sh shape, origin string, untouched map[string]bool) func([]byte) []byte {
	o := []byte(origin)
	return func(line []byte) []byte {
		line = bytes.ReplaceAll(line, o, []byte("ORIGIN"))
		switch sh {
		case shapeNoLastUpdate:
			// As bulk-testserver drops it: meta.lastUpdated, and meta when nothing else is left.
			if gjson.GetBytes(line, "meta.lastUpdated").Exists() {
				line, _ = sjson.DeleteBytes(line, "meta.lastUpdated")
				if m := gjson.GetBytes(line, "meta"); m.IsObject() && len(m.Map()) == 0 {
					line, _ = sjson.DeleteBytes(line, "meta")
				}
			}
		case shapeB64Size:
			as := fhirjson.Attachments(line)
			if len(as) == 0 {
				break
			}
			key := fhirjson.Key(line)
			for _, a := range slices.Backward(as) {
				if untouched[key+"|"+a.Path] {
					line, _ = sjson.DeleteBytes(line, a.Path+".size")
				}
			}
			// ndjson-inline replaces a size where the server put it, so the members of an
			// inlined attachment may come in another order than in the reference: compare the
			// notes as JSON values.
			line = canonicalJSON(line)
		}
		return line
	}
}

// canonicalJSON re-encodes a JSON value with object members sorted and numbers as written.
func canonicalJSON(b []byte) []byte {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return b
	}
	out, err := json.Marshal(v)
	if err != nil {
		return b
	}
	return out
}

// folderSnapshot records an export folder's data: each data, deleted and error file (by file,
// or for dup-lines by type with repeats dropped), what state.json says of each, and what readers
// take from the log. Consistency problems (state.json against the files) are reported on t.
func folderSnapshot(t *testing.T, s *snapshot, dir, label string, sh shape, norm func([]byte) []byte) {
	t.Helper()
	files, err := exportdir.Discover(dir)
	if err != nil {
		t.Errorf("%s: %v", label, err)
		return
	}
	byType := map[string][]string{}
	seen := map[string]map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		if sh == shapeNoFinalNL && len(b) > 0 && b[len(b)-1] != '\n' {
			b = append(b, '\n')
		}
		var lines []string
		for l := range bytes.Lines(b) {
			lines = append(lines, string(norm(bytes.TrimSuffix(l, []byte("\n")))))
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			lines = append(lines, "(no final newline)")
		}
		if sh == shapeDupLines {
			k := string(f.ItemType) + "/" + f.ResourceType
			if seen[k] == nil {
				seen[k] = map[string]bool{}
			}
			for _, l := range lines {
				if !seen[k][l] {
					seen[k][l] = true
					byType[k] = append(byType[k], l)
				}
			}
			continue
		}
		s.add("file "+label+"/"+f.Rel, lines)
	}
	for k, lines := range byType {
		s.add("type "+label+"/"+k, lines)
	}

	st, err := exportdir.ReadState(dir)
	if err != nil {
		t.Errorf("%s: state.json: %v", label, err)
	} else {
		for _, fs := range st.Files {
			b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(fs.Name)))
			switch {
			case err != nil:
				t.Errorf("%s: state.json records %s, which is not there: %v", label, fs.Name, err)
			case int64(len(b)) != fs.Size || fmt.Sprintf("%x", sha256.Sum256(b)) != fs.SHA256:
				t.Errorf("%s: state.json records %s with size %d sha256 %.12s, the file has %d bytes sha256 %.12x",
					label, fs.Name, fs.Size, fs.SHA256, len(b), sha256.Sum256(b))
			}
			if sh != shapeDupLines {
				s.sum["state "+label+"/"+fs.Name] = fmt.Sprintf("%s %s #%d, %d lines, inlined %v", fs.ItemType, fs.ResourceType, fs.Ordinal, fs.Lines, fs.Inlined)
			}
		}
	}

	path, err := exportdir.FindLog(dir)
	if err != nil {
		t.Errorf("%s: %v", label, err)
		return
	}
	ex, err := exportdir.ReadLog(path)
	if err != nil {
		t.Errorf("%s: %v", label, err)
		return
	}
	s.sum["log "+label] = fmt.Sprintf("group %q, has time %v, _type %v, _typeFilter %v",
		ex.Group, ex.HasTime, ex.RequestParameters["_type"], ex.RequestParameters["_typeFilter"])
}

// labeler names the export times and URLs found in the database after the folder they came from,
// so that two runs against two servers (two transaction times, two ports) compare equal when
// each row came from the same folder.
type labeler struct {
	work   string
	origin string
	strip  []string // parts of export URLs that the case asked for and the reference did not
	times  []labeledTime
}

type labeledTime struct {
	at    time.Time
	label string
}

func newLabeler(t *testing.T, work, origin string, folders ...string) *labeler {
	t.Helper()
	l := &labeler{work: work, origin: origin}
	for _, f := range folders {
		ex, err := exportdir.ReadLog(filepath.Join(work, f, exportdir.LogName))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		l.times = append(l.times, labeledTime{ex.TransactionTime, "time(" + f + ")"})
	}
	return l
}

func (l *labeler) time(at time.Time) string {
	for _, lt := range l.times {
		if lt.at.Equal(at) {
			return lt.label
		}
	}
	return at.UTC().Format(time.RFC3339Nano)
}

func (l *labeler) url(u string) string {
	for _, s := range l.strip {
		u = strings.ReplaceAll(u, s, "")
	}
	return strings.ReplaceAll(u, l.origin, "ORIGIN")
}

func (l *labeler) file(p string) string {
	if rel, err := filepath.Rel(l.work, p); err == nil && !strings.HasPrefix(rel, "..") {
		return filepath.ToSlash(rel)
	}
	return p
}

// dbSnapshot records what etl-load left in the DuckDB file: per table the row count, the ids,
// the resources and where each row came from (Group, export, file); the completion tables
// without their wall-clock etl_time; the deletes; the encounter completion view. The file is
// copied first (with its WAL, after a kill), so reading it never changes what a rerun finds.
func dbSnapshot(t *testing.T, s *snapshot, dbPath string, l *labeler, norm func([]byte) []byte, withSource bool) {
	t.Helper()
	dir := t.TempDir()
	cp := filepath.Join(dir, "copy.duckdb")
	if err := copyFile(dbPath, cp); err != nil {
		t.Fatalf("copy the database: %v", err)
	}
	if err := copyFile(dbPath+".wal", cp+".wal"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("copy the database's WAL: %v", err)
	}
	db, err := sql.Open("duckdb", cp)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	query := func(q string, scan func(*sql.Rows) error) {
		rows, err := db.QueryContext(t.Context(), q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		defer rows.Close()
		for rows.Next() {
			if err := scan(rows); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var tables []string
	query(`SELECT table_name FROM information_schema.tables
		WHERE table_schema = 'main' AND table_type = 'BASE TABLE' ORDER BY table_name`, func(r *sql.Rows) error {
		var name string
		err := r.Scan(&name)
		tables = append(tables, name)
		return err
	})
	for _, tb := range tables {
		if strings.HasPrefix(tb, "etl__") {
			continue
		}
		var ids, res, from []string
		query(`SELECT id, resource::VARCHAR, export_group, export_time, source_file FROM "`+tb+`" ORDER BY id`, func(r *sql.Rows) error {
			var id, resource, group, source sql.NullString
			var at time.Time
			if err := r.Scan(&id, &resource, &group, &at, &source); err != nil {
				return err
			}
			ids = append(ids, id.String)
			res = append(res, id.String+" "+string(norm([]byte(resource.String))))
			f := id.String + " group " + group.String + " " + l.time(at)
			if withSource {
				f += " " + l.file(source.String)
			}
			from = append(from, f)
			return nil
		})
		s.sum["db "+tb+" rows"] = strconv.Itoa(len(ids))
		s.add("db "+tb+" ids", ids)
		s.add("db "+tb+" resources", res)
		s.add("db "+tb+" from", from)
	}
	var completion, encounters, deleted, view []string
	query(`SELECT table_name, group_name, export_time, coalesce(export_url, ''), coalesce(etl_version, ''), coalesce(excluded_resources, '')
		FROM etl__completion ORDER BY ALL`, func(r *sql.Rows) error {
		var tb, group, u, v, ex string
		var at time.Time
		err := r.Scan(&tb, &group, &at, &u, &v, &ex)
		completion = append(completion, strings.Join([]string{tb, group, l.time(at), l.url(u), v, ex}, " | "))
		return err
	})
	query(`SELECT encounter_id, group_name, export_time, coalesce(excluded_resources, '') FROM etl__completion_encounters ORDER BY ALL`, func(r *sql.Rows) error {
		var id, group, ex string
		var at time.Time
		err := r.Scan(&id, &group, &at, &ex)
		encounters = append(encounters, strings.Join([]string{id, group, l.time(at), ex}, " | "))
		return err
	})
	query(`SELECT table_name, id, export_group, export_time, coalesce(source_file, '') FROM etl__deleted ORDER BY ALL`, func(r *sql.Rows) error {
		var tb, id, group, src string
		var at time.Time
		err := r.Scan(&tb, &id, &group, &at, &src)
		deleted = append(deleted, strings.Join([]string{tb, id, group, l.time(at), l.file(src)}, " | "))
		return err
	})
	query(`SELECT encounter_id, export_time, is_complete, coalesce(missing_tables, '') FROM etl__encounter_completion ORDER BY ALL`, func(r *sql.Rows) error {
		var id, missing string
		var at time.Time
		var complete bool
		err := r.Scan(&id, &at, &complete, &missing)
		view = append(view, fmt.Sprintf("%s %s complete=%v missing=%s", id, l.time(at), complete, missing))
		return err
	})
	s.add("db etl__completion", completion)
	s.add("db etl__completion_encounters", encounters)
	s.add("db etl__deleted", deleted)
	s.add("db etl__encounter_completion", view)
}

// dbIsEmpty reports whether a (copied) database holds no resource and no completion row: the
// state before any folder was committed.
func dbIsEmpty(s *snapshot) (bool, string) {
	for k, v := range s.sum {
		if strings.HasSuffix(k, " rows") && v != "0" {
			return false, k + " = " + v
		}
	}
	if v := s.sum["db etl__completion"]; v != "" {
		return false, "etl__completion = " + v
	}
	return true, ""
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// leftovers lists what a finished pipeline must not leave under dir: partial downloads
// (*.part and the resume records under .bulkpipe/parts/), atomic-write temporaries
// (.NAME.tmp-*), ndjson-merge staging folders and sorted runs (.DIR.ndjson-merge-*,
// .ndjson-merge-runs-*), etl-load snapshot temporaries (.TABLE.tmp) and a DuckDB WAL left by a
// database that was not closed.
func leftovers(dir string) []string {
	var found []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return nil
		}
		name := d.Name()
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		bad := strings.HasSuffix(name, ".part") ||
			strings.Contains(name, ".tmp-") ||
			strings.Contains(name, ".ndjson-merge-") ||
			strings.HasPrefix(name, ".ndjson-merge-runs-") ||
			(strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".tmp")) ||
			strings.HasSuffix(name, ".duckdb.wal") ||
			(strings.Contains(rel, exportdir.MetaDir+"/parts/") && !d.IsDir())
		if bad {
			found = append(found, rel)
			if d.IsDir() {
				return fs.SkipDir
			}
		}
		return nil
	})
	return found
}

// chaosRecord is one line of the chaos report.
type chaosRecord struct {
	Group, Name, Outcome string
	Elapsed              time.Duration
	Notes                []string
}

// chaosRecords collects the cases' outcomes for -chaos.report and the closing summary.
type chaosRecords struct {
	mu   sync.Mutex
	list []chaosRecord
}

func (r *chaosRecords) add(rec chaosRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, rec)
}

// write writes the records as TSV (group, case, outcome, seconds, notes), sorted by group and case.
func (r *chaosRecords) write(path string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	slices.SortFunc(r.list, func(a, b chaosRecord) int {
		return strings.Compare(a.Group+"\x00"+a.Name, b.Group+"\x00"+b.Name)
	})
	var b strings.Builder
	b.WriteString("group\tcase\toutcome\tseconds\tnotes\n")
	for _, rec := range r.list {
		fmt.Fprintf(&b, "%s\t%s\t%s\t%.1f\t%s\n", rec.Group, rec.Name, rec.Outcome, rec.Elapsed.Seconds(),
			strings.ReplaceAll(strings.Join(rec.Notes, "; "), "\t", " "))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// summary counts outcomes per group.
func (r *chaosRecords) summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	type counts struct{ pass, fail int }
	per := map[string]*counts{}
	var groups []string
	for _, rec := range r.list {
		c := per[rec.Group]
		if c == nil {
			c = &counts{}
			per[rec.Group] = c
			groups = append(groups, rec.Group)
		}
		if rec.Outcome == "pass" {
			c.pass++
		} else {
			c.fail++
		}
	}
	slices.Sort(groups)
	var b strings.Builder
	for _, g := range groups {
		fmt.Fprintf(&b, "%s: %d cases, %d pass, %d fail\n", g, per[g].pass+per[g].fail, per[g].pass, per[g].fail)
	}
	return b.String()
}
