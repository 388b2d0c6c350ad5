package fetch

import (
	"path/filepath"
	"sync"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/atomicfile"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/failpoint"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
)

// groupWindow is how long the committer gathers files after the first of a group. The workers
// do not wait for it, so it delays only reports; without it, groups were whatever finished during
// the previous commit, about two tiny files, and tiny files took two syncs each rather than one
// (a manifest of 5,339 one-line files: 11,365 syncs in all without, 7,555 with 10 ms).
const groupWindow = 10 * time.Millisecond

// maxGroup is the most files one commit records. It bounds what waits for the committer (the
// queue holds as many), and keeps a group's journal line well within the journal's line cap.
const maxGroup = 128

// verifiedFile is a download whose data is synced and which has its final name, but whose
// rename is not yet durable and which state.json does not know yet.
type verifiedFile struct {
	f    *file
	fs   exportdir.FileState
	size int64 // decoded bytes, for download_complete
}

// committer makes verified files durable and records them in groups (a group commit): a worker
// hands a file over once its data is synced and it has its name, and goes on to the next
// download; the committer syncs each folder that received files once for the group, appends one
// synced journal line for the group, and only then reports the files (download_complete,
// Callbacks.Done, Callbacks.Written). So a file is reported only once a crash can no longer lose
// it, as when each file had its own syncs, but the files of a group share the sync of their
// folder and of the journal. A group is what finishes within groupWindow of its first file, or
// maxGroup files.
type committer struct {
	e    *engine
	in   chan verifiedFile
	done chan struct{}
	once sync.Once
	dirs map[string]*atomicfile.Dir // folders that received files, kept open for their syncs
}

func newCommitter(e *engine) *committer {
	return &committer{e: e, in: make(chan verifiedFile, maxGroup), done: make(chan struct{}), dirs: map[string]*atomicfile.Dir{}}
}

func (e *engine) startCommitter() *committer {
	c := newCommitter(e)
	go c.run()
	return c
}

// add queues a verified file, waiting while maxGroup files wait already.
func (c *committer) add(v verifiedFile) { c.in <- v }

// close commits what is queued and stops the committer; nothing may be added after.
func (c *committer) close() {
	c.once.Do(func() { close(c.in) })
	<-c.done
}

func (c *committer) run() {
	defer close(c.done)
	defer func() {
		for _, d := range c.dirs {
			d.Close()
		}
	}()
	group := make([]verifiedFile, 0, maxGroup)
	window := time.NewTimer(groupWindow)
	window.Stop()
	for v := range c.in {
		group = append(group[:0], v)
		window.Reset(groupWindow)
	more:
		for len(group) < maxGroup {
			select {
			case v, ok := <-c.in:
				if !ok {
					break more
				}
				group = append(group, v)
			case <-window.C:
				break more
			}
		}
		window.Stop()
		c.commit(group)
	}
}

// commit makes the renames of a group durable, records its files, and then reports them. A
// failure fails every file of the group: none is reported, and a rerun finds each at its final
// name, checks it and records it.
func (c *committer) commit(group []verifiedFile) {
	e := c.e
	err := c.syncDirs(group)
	if err == nil {
		err = e.putStates(group)
	}
	if err != nil {
		for _, v := range group {
			e.fail(v.f.id.rel(), err)
		}
		return
	}
	for _, v := range group {
		failpoint.Hit(FailAfterState)
		rel := v.f.id.rel()
		u, _, _ := v.f.link()
		if err := e.logEvent(exportdir.EventDownloadComplete, exportdir.DownloadComplete{FileURL: fhirclient.Redact(u),
			FileSize: v.size, ResourceCount: v.fs.Lines}, false); err != nil {
			e.fail(rel, err)
			continue
		}
		if e.o.On.Done != nil {
			e.o.On.Done(rel, nil)
		}
		e.written(filepath.Join(e.o.Dir, filepath.FromSlash(v.fs.Name)))
	}
}

// syncDirs syncs each folder the group's files were renamed into, once.
func (c *committer) syncDirs(group []verifiedFile) error {
	synced := map[string]bool{}
	for _, v := range group {
		dir := filepath.Dir(filepath.Join(c.e.o.Dir, filepath.FromSlash(v.fs.Name)))
		if synced[dir] {
			continue
		}
		d, ok := c.dirs[dir]
		if !ok {
			var err error
			if d, err = atomicfile.OpenDir(dir); err != nil {
				return localError{err}
			}
			c.dirs[dir] = d
		}
		if err := d.Sync(); err != nil {
			return localError{err}
		}
		synced[dir] = true
	}
	return nil
}

// putStates records the files of a group with one synced journal line. An entry of the same
// identity under another name (the file was kept with --gzip before) is dropped.
func (e *engine) putStates(group []verifiedFile) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	files := make([]exportdir.FileState, 0, len(group))
	for _, v := range group {
		if err := e.claimName(v.fs); err != nil {
			return err
		}
		files = append(files, v.fs)
	}
	if err := e.state.PutAll(files); err != nil {
		return err
	}
	e.downloaded += len(group)
	return nil
}
