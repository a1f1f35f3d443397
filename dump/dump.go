// Package dump writes a patchd store as NDJSON and reads it back: the
// export and import commands.
//
// Each line is one document:
//
//	{"collection":"c","id":"d","seq":3,"updatedAt":"2026-01-02T03:04:05.123456789Z",
//	 "etag":"\"…\"","body":{…}}
//
// Bodies are canonical JSON, numbers exactly as stored. With history, a line
// also has "history": the retained versions, oldest first, as
// {"seq","at","etag","kind","rebasedFrom","ops"}, where ops are patchd's
// normalized operations as stored (typed paths, and the values they
// overwrote, which rebase needs), not the RFC 6902 form the HTTP history
// shows. A deleted document whose history is retained has "body": null and
// no etag, seq or updatedAt.
//
// Import checks every line as the HTTP API checks a body (canonical JSON,
// the depth and size limits, names) and, with history, that the versions
// are contiguous and that undoing each version's ops from the body gives
// the ETag of the version before. A line that fails is reported with its
// number and skipped; the others are loaded.
package dump

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
)

// Counts says how much an export or import moved.
type Counts struct {
	Documents int64 // records with a current document
	Deleted   int64 // records of deleted documents (history only)
	Versions  int64 // history versions
	Rejected  int64 // import lines refused
	Bytes     int64 // bytes written or read
}

// ExportOptions configure Export.
type ExportOptions struct {
	// History adds every retained version to each line, and lines for
	// deleted documents whose history is retained.
	History bool
	// Progress, when not nil, is told of every record written.
	Progress *Progress
}

// Export writes every document of src to w as NDJSON, in collection and id
// order, from one consistent snapshot.
func Export(ctx context.Context, src store.Dumper, w io.Writer, opts ExportOptions) (Counts, error) {
	var c Counts
	bw := bufio.NewWriterSize(w, 1<<16)
	var line []byte
	err := src.Dump(ctx, opts.History, func(r *store.Record) error {
		line = appendRecord(line[:0], r, opts.History)
		n, err := bw.Write(line)
		c.Bytes += int64(n)
		if err != nil {
			return err
		}
		if r.Doc != nil {
			c.Documents++
		} else {
			c.Deleted++
		}
		c.Versions += int64(len(r.History))
		if opts.Progress != nil {
			if opts.History {
				opts.Progress.Add(int64(len(r.History)))
			} else {
				opts.Progress.Add(1)
			}
		}
		return nil
	})
	if err != nil {
		return c, fmt.Errorf("export: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return c, fmt.Errorf("export: %w", err)
	}
	return c, nil
}

// appendRecord appends the NDJSON line of r.
func appendRecord(b []byte, r *store.Record, withHistory bool) []byte {
	b = append(b, `{"collection":`...)
	b = strconv.AppendQuote(b, r.Collection) // names are plain ASCII
	b = append(b, `,"id":`...)
	b = strconv.AppendQuote(b, r.ID)
	if d := r.Doc; d != nil {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, d.Seq, 10)
		b = append(b, `,"updatedAt":"`...)
		b = d.UpdatedAt.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","etag":`...)
		b = appendString(b, d.ETag)
		b = append(b, `,"body":`...)
		b = append(b, d.Body...)
	} else {
		b = append(b, `,"body":null`...)
	}
	if withHistory {
		b = append(b, `,"history":[`...)
		for i, v := range r.History {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"seq":`...)
			b = strconv.AppendUint(b, v.Seq, 10)
			b = append(b, `,"at":"`...)
			b = v.At.UTC().AppendFormat(b, time.RFC3339Nano)
			b = append(b, `","etag":`...)
			b = appendNullable(b, v.ETag)
			b = append(b, `,"kind":`...)
			b = appendString(b, v.Kind)
			b = append(b, `,"rebasedFrom":`...)
			b = appendNullable(b, v.RebasedFrom)
			b = append(b, `,"actor":`...)
			b = appendNullable(b, v.Actor)
			b = append(b, `,"requestId":`...)
			b = appendNullable(b, v.RequestID)
			if v.Reverts != 0 {
				b = append(b, `,"reverts":`...)
				b = strconv.AppendUint(b, v.Reverts, 10)
			}
			b = append(b, `,"ops":`...)
			if len(v.Ops) == 0 {
				b = append(b, `[]`...)
			} else {
				b = append(b, v.Ops...)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, "}\n"...)
}

func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}

func appendNullable(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return appendString(b, s)
}

// LineError is an import line that was refused.
type LineError struct {
	Line int // 1-based line number
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// ErrInvalidLine is wrapped by every LineError about the content of a line
// (as opposed to the store refusing it, as with store.ErrExists).
var ErrInvalidLine = errors.New("invalid line")

// ImportOptions configure Import.
type ImportOptions struct {
	// Limits are the API's limits (--max-depth, --max-doc); bodies are
	// checked against them.
	Limits patch.Limits
	// MaxLine is the longest line read; a longer one is refused. Zero
	// means 256 MiB.
	MaxLine int
	// BatchBytes is how many bytes of records are committed in one
	// transaction. Zero means 4 MiB.
	BatchBytes int
	// Now is the time given to documents whose line has no updatedAt. Nil
	// means time.Now.
	Now func() time.Time
	// Report, when not nil, is called for every refused line, in order.
	Report func(*LineError)
	// Progress, when not nil, is told of the bytes read.
	Progress *Progress
	// CheckSchema, when not nil, checks the body of every document of
	// store.SchemaCollection (a collection's schema, id the collection):
	// a line it refuses is reported and skipped.
	CheckSchema func(collection string, body []byte) error
}

// Import reads NDJSON from r into dst. A line that fails its checks, or
// that dst refuses (store.ErrExists), is reported and skipped; the others
// are loaded, in batches. The error result is for failures of reading or
// of the store; the refused lines are counted in Counts.Rejected.
func Import(ctx context.Context, dst store.Loader, r io.Reader, opts ImportOptions) (Counts, error) {
	if opts.MaxLine <= 0 {
		opts.MaxLine = 256 << 20
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = 4 << 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	var c Counts
	report := func(le *LineError) {
		c.Rejected++
		if opts.Report != nil {
			opts.Report(le)
		}
	}
	var (
		batch      []*store.Record
		lines      []int
		batchBytes int
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		errs, err := dst.Load(ctx, batch)
		if err != nil {
			return err
		}
		for i, e := range errs {
			if e != nil {
				report(&LineError{Line: lines[i], Err: e})
				continue
			}
			if batch[i].Doc != nil {
				c.Documents++
			} else {
				c.Deleted++
			}
			c.Versions += int64(len(batch[i].History))
		}
		batch, lines, batchBytes = batch[:0], lines[:0], 0
		return nil
	}
	lr := &lineReader{r: bufio.NewReaderSize(r, 1<<16), max: opts.MaxLine}
	for n := 1; ; n++ {
		if err := ctx.Err(); err != nil {
			return c, err
		}
		line, read, err := lr.next()
		c.Bytes += int64(read)
		if opts.Progress != nil {
			opts.Progress.Add(int64(read))
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, errLongLine) {
			report(&LineError{Line: n, Err: fmt.Errorf("%w: longer than %d bytes", ErrInvalidLine, opts.MaxLine)})
			continue
		}
		if err != nil {
			return c, fmt.Errorf("import: read line %d: %w", n, err)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue // blank lines, a final newline included
		}
		rec, err := parseLine(line, opts)
		if err == nil && opts.CheckSchema != nil && rec.Collection == store.SchemaCollection && rec.Doc != nil {
			if serr := opts.CheckSchema(rec.ID, rec.Doc.Body); serr != nil {
				err = fmt.Errorf("the schema of collection %s: %w", rec.ID, serr)
			}
		}
		if err != nil {
			report(&LineError{Line: n, Err: fmt.Errorf("%w: %w", ErrInvalidLine, err)})
			continue
		}
		batch = append(batch, rec)
		lines = append(lines, n)
		batchBytes += len(line)
		if batchBytes >= opts.BatchBytes || len(batch) >= 10000 {
			if err := flush(); err != nil {
				return c, fmt.Errorf("import: %w", err)
			}
		}
	}
	if err := flush(); err != nil {
		return c, fmt.Errorf("import: %w", err)
	}
	return c, nil
}

// errLongLine is returned by lineReader.next for a line over its limit,
// which it skips.
var errLongLine = errors.New("line too long")

// lineReader reads lines of at most max bytes.
type lineReader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

// next returns the next line without its newline, and how many bytes it
// consumed. A line over the limit is read to its end and dropped.
func (l *lineReader) next() (line []byte, read int, err error) {
	l.buf = l.buf[:0]
	long := false
	for {
		frag, err := l.r.ReadSlice('\n')
		read += len(frag)
		if !long {
			if len(l.buf)+len(frag) > l.max+1 { // +1: the newline
				long = true
				l.buf = l.buf[:0]
			} else {
				l.buf = append(l.buf, frag...)
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err != nil && !errors.Is(err, io.EOF):
			return nil, read, err
		case errors.Is(err, io.EOF) && read == 0:
			return nil, 0, io.EOF
		}
		if long {
			return nil, read, errLongLine
		}
		return bytes.TrimSuffix(l.buf, []byte("\n")), read, nil
	}
}
