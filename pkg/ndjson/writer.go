package ndjson

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// Writer writes records one a line through a buffer. Every tool's stdout and every rewritten file
// goes through one, so a record is never split and the final Flush error is never lost (STYLE.md §4).
type Writer struct {
	w     *bufio.Writer
	count int64
}

// NewWriter returns a Writer with a 64 KiB buffer over w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: bufio.NewWriterSize(w, bufferSize)}
}

// WriteRecord writes rec followed by '\n'. A trailing line end in rec is dropped so records from
// any source come out one a line; a record with a newline inside would corrupt the stream and is
// refused.
func (w *Writer) WriteRecord(rec []byte) error {
	rec = bytes.TrimSuffix(bytes.TrimSuffix(rec, []byte("\n")), []byte("\r"))
	if bytes.IndexByte(rec, '\n') >= 0 {
		return fmt.Errorf("record %d: contains a newline", w.count+1)
	}
	if _, err := w.w.Write(rec); err != nil {
		return err
	}
	w.count++
	return w.w.WriteByte('\n')
}

// Flush writes buffered records to the underlying writer; its error is the run's error.
func (w *Writer) Flush() error { return w.w.Flush() }
