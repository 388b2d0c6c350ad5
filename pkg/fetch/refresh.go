package fetch

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/ndjson"
)

// generation is the current link generation: it grows each time the manifest is fetched again.
func (e *engine) generation() int {
	e.rmu.Lock()
	defer e.rmu.Unlock()
	return e.gen
}

// refreshIfExpired fetches new links before a request when the manifest's Expires has passed
// (DESIGN.md §9: about an hour after completion), rather than waiting for a 403 on every file.
func (e *engine) refreshIfExpired(ctx context.Context) error {
	e.mu.Lock()
	exp := e.expires
	e.mu.Unlock()
	if exp.IsZero() || e.now().Before(exp) || e.statusURL == "" {
		return nil
	}
	return e.refresh(ctx, e.generation(), "the file links expired at "+exp.UTC().Format(http.TimeFormat))
}

// refresh fetches the manifest again from the status URL (bulk.Poll, every page) and gives each
// file the new link of the same identity: array, resource type and ordinal. Only one refresh runs
// at a time, and a download that saw generation seen skips it when another already refreshed.
func (e *engine) refresh(ctx context.Context, seen int, why string) error {
	e.rmu.Lock()
	defer e.rmu.Unlock()
	if e.gen != seen {
		return nil
	}
	if e.statusURL == "" {
		return fmt.Errorf("%s, and there is no status URL to fetch new links from (give --status-url)", why)
	}
	e.warn(fmt.Sprintf("%s: fetching the manifest again from %s", why, fhirclient.Redact(e.statusURL)))
	var pages []bulk.Page
	err := bulk.Poll(ctx, e.c, e.statusURL, e.o.Poll, func(p bulk.Page) error {
		pages = append(pages, p)
		return nil
	})
	if err != nil {
		return fmt.Errorf("fetching the manifest again: %w", err)
	}
	num := numberer{}
	links := map[identity]string{}
	var expires time.Time
	requires := false
	for _, p := range pages {
		m, err := bulk.ParseManifest(p.Raw)
		if err != nil {
			return fmt.Errorf("the manifest fetched again from %s: %w", fhirclient.Redact(e.statusURL), err)
		}
		if m.TransactionTime != e.txTime {
			return fmt.Errorf("the manifest fetched again from %s has transactionTime %q, not %q: the export changed", fhirclient.Redact(e.statusURL), m.TransactionTime, e.txTime)
		}
		requires = requires || m.RequiresAccessToken
		entries, err := num.entries(m, e.base, nil)
		if err != nil {
			return err
		}
		for _, en := range entries {
			links[en.id] = en.url
		}
		if t, err := http.ParseTime(p.Expires); err == nil && (expires.IsZero() || t.Before(expires)) {
			expires = t
		}
	}
	e.mu.Lock()
	e.gen++
	for _, f := range e.files {
		f.mu.Lock()
		if u, ok := links[f.id]; ok {
			f.url = u
		} else {
			f.missing = true
		}
		f.gen = e.gen
		f.mu.Unlock()
	}
	e.requiresToken = e.requiresToken || requires
	// New links that are already past their Expires (a skewed clock) must not trigger another
	// refresh before every request.
	if !expires.After(e.now()) {
		expires = time.Time{}
	}
	e.expires = expires
	e.mu.Unlock()
	return nil
}

// readIssues collects the OperationOutcome issues of the export's error files (DESIGN.md §3).
func readIssues(paths []string, maxLine int) ([]Issue, error) {
	var issues []Issue
	for _, p := range paths {
		r, err := exportdir.OpenFile(p)
		if err != nil {
			return nil, err
		}
		sc := ndjson.NewScanner(r, maxLine)
		for sc.Scan() {
			o, ok := fhirclient.ParseOperationOutcome(sc.Bytes())
			if !ok {
				continue
			}
			for _, is := range o.Issues {
				issues = append(issues, Issue{File: p, Issue: is})
			}
		}
		err = sc.Err()
		r.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	return issues, nil
}
