package exportdir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtime"

	"github.com/bulkpipe/bulkpipe/pkg/ndjson"
)

// Event is one line of an export log: the SMART bulk-data-client format (logVersion 2) that Cumulus
// ETL reads (DESIGN.md §4).
type Event struct {
	ExportID    string          `json:"exportId"`
	Timestamp   string          `json:"timestamp"`
	EventID     string          `json:"eventId"`
	EventDetail json.RawMessage `json:"eventDetail"`
	// Client and ClientVersion are the top-level _client and _clientVersion that bulk-data-client
	// puts on its kickoff event.
	Client        string `json:"_client,omitempty"`
	ClientVersion string `json:"_clientVersion,omitempty"`
}

// LogName is the log bulk-fetch writes and the name readers prefer (DESIGN.md §4).
const LogName = "log.ndjson"

// ErrNoLog means an export folder has neither log.ndjson nor a log.*.ndjson.
var ErrNoLog = errors.New("no export log")

// ErrNoKickoff means a log holds no kickoff event, so it names no export.
var ErrNoKickoff = errors.New("no kickoff event")

// FindLog returns the export log of dir, by the rules Cumulus ETL follows: log.ndjson wins; else
// exactly one log.*.ndjson (users rename logs to keep several exports apart). None wraps ErrNoLog;
// several is an error naming them.
func FindLog(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("find export log: %w", err)
	}
	var others []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() {
			continue
		}
		if name == LogName {
			return filepath.Join(dir, name), nil
		}
		if mid, ok := strings.CutPrefix(name, "log."); ok && strings.HasSuffix(mid, ".ndjson") && len(mid) > len(".ndjson") {
			others = append(others, name)
		}
	}
	switch len(others) {
	case 0:
		return "", fmt.Errorf("%w: no %s or log.*.ndjson in %s", ErrNoLog, LogName, dir)
	case 1:
		return filepath.Join(dir, others[0]), nil
	}
	slices.Sort(others)
	return "", fmt.Errorf("several export logs in %s (%s): keep one, or name the right one %s", dir, strings.Join(others, ", "), LogName)
}

// Export is what a log says about the export a folder holds.
type Export struct {
	ExportID  string
	ExportURL string // the kickoff URL
	// Group is the path segment after /Group/ in ExportURL, URL-decoded; "" for system or Patient level.
	Group string
	// TransactionTime is the export's status_complete transactionTime (else its manifest_complete's);
	// HasTime is false when the log has neither, e.g. an export still running.
	TransactionTime time.Time
	HasTime         bool
	// RequestParameters are the kickoff's requestParameters as logged (_type, _since, _until,
	// _typeFilter, _patientCount, …), decoded with encoding/json.
	RequestParameters map[string]any
	Events            []Event // every event of this export, in log order
}

// ReadLog reads the export a log describes (DESIGN.md §4): the last kickoff's exportId names it, the
// kickoff's exportUrl gives the Group, and that export's status_complete gives the time. A kickoff
// that failed (non-null errorCode) started no export and is passed over unless it is the only kind
// there is. Logs may hold several exports, timestamps in whole seconds or microseconds, with Z or an
// offset. A malformed line or time is an error "PATH:LINE: ...".
func ReadLog(path string) (*Export, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read export log: %w", err)
	}
	defer f.Close()
	return ReadLogFrom(f, path)
}

// ReadLogFrom is ReadLog on a stream; name prefixes errors.
func ReadLogFrom(r io.Reader, name string) (*Export, error) {
	lines, err := readEvents(r, name)
	if err != nil {
		return nil, err
	}
	kick := -1
	for i, l := range lines {
		if l.EventID != "kickoff" {
			continue
		}
		if kick < 0 || !failedKickoff(l.EventDetail) || failedKickoff(lines[kick].EventDetail) {
			kick = i
		}
	}
	if kick < 0 {
		return nil, fmt.Errorf("%s: %w", name, ErrNoKickoff)
	}
	k := lines[kick]
	var detail struct {
		ExportURL         *string        `json:"exportUrl"`
		RequestParameters map[string]any `json:"requestParameters"`
	}
	if err := json.Unmarshal(k.EventDetail, &detail); err != nil || detail.ExportURL == nil {
		return nil, fmt.Errorf("%s:%d: kickoff eventDetail has no exportUrl string", name, k.line)
	}
	exp := &Export{
		ExportID:          k.ExportID,
		ExportURL:         *detail.ExportURL,
		Group:             GroupFromURL(*detail.ExportURL),
		RequestParameters: detail.RequestParameters,
	}
	var complete, manifest *eventLine
	for i := range lines {
		l := &lines[i]
		if l.ExportID != exp.ExportID {
			continue
		}
		exp.Events = append(exp.Events, l.Event)
		switch l.EventID {
		case "status_complete":
			complete = l
		case "manifest_complete":
			if hasTransactionTime(l.EventDetail) {
				manifest = l
			}
		}
	}
	if complete == nil {
		complete = manifest
	}
	if complete != nil {
		var d struct {
			TransactionTime any `json:"transactionTime"`
		}
		json.Unmarshal(complete.EventDetail, &d)
		s, _ := d.TransactionTime.(string)
		t, err := ParseInstant(s)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %s transactionTime: %w", name, complete.line, complete.EventID, err)
		}
		exp.TransactionTime, exp.HasTime = t, true
	}
	return exp, nil
}

func failedKickoff(detail json.RawMessage) bool {
	var d struct {
		ErrorCode any `json:"errorCode"`
	}
	json.Unmarshal(detail, &d)
	return d.ErrorCode != nil && d.ErrorCode != float64(0) && d.ErrorCode != ""
}

func hasTransactionTime(detail json.RawMessage) bool {
	var d struct {
		TransactionTime *string `json:"transactionTime"`
	}
	json.Unmarshal(detail, &d)
	return d.TransactionTime != nil && *d.TransactionTime != ""
}

// ParseInstant parses a logged time (transactionTime) by the one rule of fhirtime.Parse: a FHIR
// date, or a dateTime with a zone offset, whole seconds or any fraction (servers write whole
// seconds, Python writes microseconds). A time without an offset is refused: it names no instant,
// and completion tracking compares instants (DESIGN.md §7).
func ParseInstant(s string) (time.Time, error) { return fhirtime.Parse(s) }

// GroupFromURL returns the Group id of a kickoff URL, read as bulk-kickoff reads the URL it is
// given (bulk.SplitExportPath): the path segment after /Group/, URL-decoded, with the query
// ignored; "" for system and Patient level. Logs hold relative URLs too (ndjson-merge writes
// "/Group/ID/$export" when no slice had a log) and URLs Go cannot parse: their path is read as is.
func GroupFromURL(raw string) string {
	p, _, _ := strings.Cut(raw, "?")
	p, _, _ = strings.Cut(p, "#")
	if u, err := url.Parse(raw); err == nil {
		p = u.EscapedPath()
	}
	ep := bulk.SplitExportPath(p)
	if ep.Level == bulk.LevelGroup {
		return ep.Group
	}
	// A Group's Patient-level URL (…/Group/ID/Patient/$export, which some clients log) still
	// names the Group.
	segs := strings.Split(ep.Base, "/")
	if i := slices.Index(segs, "Group"); i >= 0 && i+1 < len(segs) {
		if id, err := url.PathUnescape(segs[i+1]); err == nil {
			return id
		}
		return segs[i+1]
	}
	return ""
}

// LogEvents returns every event of a log in order, for tools that copy an export's events
// (bulk-fetch from --log, DESIGN.md §4). A malformed line is an error "PATH:LINE: ...".
func LogEvents(path string) ([]Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read export log: %w", err)
	}
	defer f.Close()
	lines, err := readEvents(f, path)
	if err != nil {
		return nil, err
	}
	events := make([]Event, len(lines))
	for i, l := range lines {
		events[i] = l.Event
	}
	return events, nil
}

type eventLine struct {
	Event
	line int
}

func readEvents(r io.Reader, name string) ([]eventLine, error) {
	var lines []eventLine
	sc := ndjson.NewScanner(r, ndjson.DefaultMaxLine)
	for sc.Scan() {
		b := sc.Bytes()
		if len(bytes.TrimSpace(b)) == 0 || bytes.TrimSpace(b)[0] != '{' {
			return nil, fmt.Errorf("%s:%d: not a JSON object", name, sc.Line())
		}
		var e Event
		if err := json.Unmarshal(b, &e); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, sc.Line(), err)
		}
		lines = append(lines, eventLine{e, sc.Line()})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return lines, nil
}

// NewEvent builds an event stamped with now as RFC 3339 with offset and milliseconds, as
// bulk-data-client writes them. detail is marshalled with encoding/json (pass a json.RawMessage to
// keep bytes as they are); nil becomes {}.
func NewEvent(exportID, eventID string, detail any, now time.Time) (Event, error) {
	raw := json.RawMessage("{}")
	if detail != nil {
		b, err := marshal(detail)
		if err != nil {
			return Event{}, fmt.Errorf("log event %s: %w", eventID, err)
		}
		raw = b
	}
	return Event{ExportID: exportID, Timestamp: now.Format("2006-01-02T15:04:05.000Z07:00"), EventID: eventID, EventDetail: raw}, nil
}

// marshal is json.Marshal without HTML escaping, so URLs in the log keep their & and read as written.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// LogWriter appends events to a log. Each event is one write on an O_APPEND file, so processes
// sharing a --log file never interleave within a line, and a crash leaves whole lines. It is safe
// for concurrent use.
type LogWriter struct {
	mu   sync.Mutex
	f    *os.File
	path string
}

// OpenLog opens path for appending, creating it. If a crash left a last line without its newline,
// one is added first so the next event starts on a line of its own. path is a log the user named
// (--log FILE), which may be a symbolic link; the log inside an export folder is opened with
// OpenFolderLog.
func OpenLog(path string) (*LogWriter, error) {
	return openLog(path, os.OpenFile)
}

// OpenFolderLog opens DIR/log.ndjson as OpenLog does, but refuses a symbolic link there (a
// *SymlinkError): appending through it would write to whatever file it names.
func OpenFolderLog(dir string) (*LogWriter, error) {
	return openLog(filepath.Join(dir, LogName), OpenNoFollow)
}

func openLog(path string, open func(string, int, os.FileMode) (*os.File, error)) (*LogWriter, error) {
	f, err := open(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open export log: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() > 0 {
		last := make([]byte, 1)
		if _, err = f.ReadAt(last, fi.Size()-1); err == nil && last[0] != '\n' {
			_, err = f.Write([]byte("\n"))
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open export log %s: %w", path, err)
	}
	return &LogWriter{f: f, path: path}, nil
}

// Write appends e as one line. sync makes it durable before returning: DESIGN.md §4 syncs kickoff,
// status_complete and export_complete, the events a resume depends on.
func (w *LogWriter) Write(e Event, sync bool) error {
	if e.EventDetail == nil {
		e.EventDetail = json.RawMessage("{}")
	}
	b, err := marshal(e)
	if err != nil {
		return fmt.Errorf("log event %s: %w", e.EventID, err)
	}
	b = append(b, '\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	before, serr := w.f.Seek(0, io.SeekEnd)
	if _, err := w.f.Write(b); err != nil {
		// A full disk takes part of a line: cut it off again, so that readers (the next run's
		// first of all) never meet half an event. Another process appending to the same --log
		// at this very moment could lose its line too; the folder's log has no other writer.
		if serr == nil {
			w.f.Truncate(before)
		}
		return fmt.Errorf("append to %s: %w", w.path, err)
	}
	if sync {
		if err := w.f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", w.path, err)
		}
	}
	return nil
}

// Close closes the log file.
func (w *LogWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.f.Close()
}
