package fetch

import "sync"

// queue holds the files waiting for a download worker, in manifest order. It grows without
// bound as pages arrive (a page's files are already held in engine.files, so the queue adds a
// pointer each): the page reader never waits for downloads, while open files, goroutines and
// connections stay bounded by the fixed number of workers that take from it (STYLE.md §17).
type queue struct {
	mu     sync.Mutex
	ready  sync.Cond
	files  []*file
	closed bool // no more files will come: workers drain what is left, then stop
}

func newQueue() *queue {
	q := &queue{}
	q.ready.L = &q.mu
	return q
}

// push adds files at the end.
func (q *queue) push(fs []*file) {
	if len(fs) == 0 {
		return
	}
	q.mu.Lock()
	if !q.closed {
		q.files = append(q.files, fs...)
	}
	q.mu.Unlock()
	q.ready.Broadcast()
}

// close says the input has ended: pop returns what is queued, then false.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.ready.Broadcast()
}

// abort drops what is queued and stops the workers (the run was cancelled or failed).
func (q *queue) abort() {
	q.mu.Lock()
	clear(q.files)
	q.files, q.closed = nil, true
	q.mu.Unlock()
	q.ready.Broadcast()
}

// pop waits for the next file; false means the queue is closed and empty.
func (q *queue) pop() (*file, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.files) == 0 && !q.closed {
		q.ready.Wait()
	}
	if len(q.files) == 0 {
		return nil, false
	}
	f := q.files[0]
	q.files[0] = nil // let the file go once done, though the slice's array lives on
	q.files = q.files[1:]
	return f, true
}
