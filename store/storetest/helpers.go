package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/patchd/patchd/store"
)

// The collection and id that most tests use.
const (
	testC  = "notes"
	testID = "doc-1"
)

// Commit commits ch to a document of s unconditionally and returns the
// result of Update; it fails the test on an error. Backends' own tests use
// it too.
func Commit(tb testing.TB, s store.Store, c, id string, ch *store.Change) *store.Document {
	tb.Helper()
	doc, err := s.Update(context.Background(), c, id, func(context.Context, *store.Document, store.History) (*store.Change, error) {
		return ch, nil
	})
	if err != nil {
		tb.Fatalf("Update(%s/%s): %v", c, id, err)
	}
	return doc
}

// write commits ch to a document and returns the result.
func (e *env) write(t *testing.T, c, id string, ch *store.Change) *store.Document {
	t.Helper()
	return Commit(t, e.s, c, id, ch)
}

// put creates or replaces a document with body.
func (e *env) put(t *testing.T, c, id, body string) *store.Document {
	t.Helper()
	doc := e.write(t, c, id, &store.Change{Body: []byte(body), Kind: store.KindPut})
	if doc == nil {
		t.Fatalf("Update(%s/%s) put: nil document", c, id)
	}
	return doc
}

// del deletes a document.
func (e *env) del(t *testing.T, c, id string) {
	t.Helper()
	if doc := e.write(t, c, id, &store.Change{Kind: store.KindDelete}); doc != nil {
		t.Fatalf("Update(%s/%s) delete: document %+v, want nil", c, id, doc)
	}
}

// get returns the current document, which must exist.
func (e *env) get(t *testing.T, c, id string) *store.Document {
	t.Helper()
	doc, err := e.s.Get(t.Context(), c, id)
	if err != nil {
		t.Fatalf("Get(%s/%s): %v", c, id, err)
	}
	return doc
}

// wantNotFound checks that a document does not exist.
func (e *env) wantNotFound(t *testing.T, c, id string) {
	t.Helper()
	doc, err := e.s.Get(t.Context(), c, id)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(%s/%s) = %+v, %v; want ErrNotFound", c, id, doc, err)
	}
}

// history returns every retained version of a document, read in pages.
func (e *env) history(t *testing.T, c, id string) []store.Version {
	t.Helper()
	var all []store.Version
	var after uint64
	for {
		vs, more, err := e.s.History(t.Context(), c, id, after, 100, 0)
		if err != nil {
			t.Fatalf("History(%s/%s, %d, 100): %v", c, id, after, err)
		}
		if len(vs) > 100 {
			t.Fatalf("History(%s/%s, %d, 100): %d versions", c, id, after, len(vs))
		}
		all = append(all, vs...)
		if !more {
			return all
		}
		if len(vs) == 0 {
			t.Fatalf("History(%s/%s, %d, 100): no versions but more", c, id, after)
		}
		after = vs[len(vs)-1].Seq
	}
}

// since calls History.Since from inside an UpdateFunc that commits nothing.
func (e *env) since(t *testing.T, c, id string, etags ...string) (base store.Version, later []store.Version, err error) {
	t.Helper()
	_, uerr := e.s.Update(t.Context(), c, id, func(ctx context.Context, _ *store.Document, h store.History) (*store.Change, error) {
		base, later, err = h.Since(ctx, etags)
		return nil, nil
	})
	if uerr != nil {
		t.Fatalf("Update(%s/%s) for Since: %v", c, id, uerr)
	}
	return base, later, err
}

// wantDoc compares two documents field by field.
func wantDoc(t *testing.T, what string, got, want *store.Document) {
	t.Helper()
	switch {
	case got == nil && want == nil:
		return
	case got == nil || want == nil:
		t.Fatalf("%s = %+v, want %+v", what, got, want)
	}
	if got.Collection != want.Collection || got.ID != want.ID {
		t.Errorf("%s: name %s/%s, want %s/%s", what, got.Collection, got.ID, want.Collection, want.ID)
	}
	if !bytes.Equal(got.Body, want.Body) {
		t.Errorf("%s: Body %q, want %q", what, got.Body, want.Body)
	}
	if got.ETag != want.ETag {
		t.Errorf("%s: ETag %s, want %s", what, got.ETag, want.ETag)
	}
	if got.Seq != want.Seq {
		t.Errorf("%s: Seq %d, want %d", what, got.Seq, want.Seq)
	}
	if !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Errorf("%s: UpdatedAt %v, want %v", what, got.UpdatedAt, want.UpdatedAt)
	}
}

// wantVersion compares two versions field by field.
func wantVersion(t *testing.T, what string, got, want store.Version) {
	t.Helper()
	if got.Seq != want.Seq {
		t.Errorf("%s: Seq %d, want %d", what, got.Seq, want.Seq)
	}
	if got.ETag != want.ETag {
		t.Errorf("%s: ETag %q, want %q", what, got.ETag, want.ETag)
	}
	if !got.At.Equal(want.At) {
		t.Errorf("%s: At %v, want %v", what, got.At, want.At)
	}
	if got.Kind != want.Kind {
		t.Errorf("%s: Kind %q, want %q", what, got.Kind, want.Kind)
	}
	if !bytes.Equal(got.Ops, want.Ops) {
		t.Errorf("%s: Ops %q, want %q", what, got.Ops, want.Ops)
	}
	if got.RebasedFrom != want.RebasedFrom {
		t.Errorf("%s: RebasedFrom %q, want %q", what, got.RebasedFrom, want.RebasedFrom)
	}
	if got.Actor != want.Actor || got.RequestID != want.RequestID || got.Reverts != want.Reverts {
		t.Errorf("%s: Actor %q, RequestID %q, Reverts %d; want %q, %q, %d", what,
			got.Actor, got.RequestID, got.Reverts, want.Actor, want.RequestID, want.Reverts)
	}
}

// wantVersions compares two lists of versions.
func wantVersions(t *testing.T, what string, got, want []store.Version) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: seqs %v, want %v", what, seqs(got), seqs(want))
	}
	for i := range got {
		wantVersion(t, fmt.Sprintf("%s[%d]", what, i), got[i], want[i]) // #nosec G602 -- len(got) == len(want) was checked above
	}
}

// wantSeqs checks the seqs of a list of versions.
func wantSeqs(t *testing.T, what string, got []store.Version, want ...uint64) {
	t.Helper()
	if s := seqs(got); !slices.Equal(s, want) {
		t.Fatalf("%s: seqs %v, want %v", what, s, want)
	}
}

// seqs returns the seqs of versions.
func seqs(vs []store.Version) []uint64 {
	out := make([]uint64, len(vs))
	for i, v := range vs {
		out[i] = v.Seq
	}
	return out
}

// ids returns the ids of list entries.
func ids(es []store.ListEntry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

// body returns the JSON body {"v":n}.
func body(n int) string {
	return fmt.Sprintf(`{"v":%d}`, n)
}
