package document

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
)

// ErrBrokenHistory means a document's retained history does not lead to
// its current state: seqs that jump, a version whose ETag is not that of
// the document it names, ops that do not undo.
var ErrBrokenHistory = errors.New("history does not lead to the document")

// CheckHistory checks that a document's retained history, oldest first,
// leads to its current state: the seqs follow one another, the last
// version has the document's ETag (none when it does not exist), and
// undoing each version's ops gives the ETag of the version before it; when
// the history starts at seq 1, undoing the first version leaves nothing.
// body is the document's value (nil and exists false after a delete); ops,
// when not nil, are the versions' ops already decoded (one slice per
// version), else they are decoded from the versions. Each undone version
// is then applied again to what undoing it gave, which must give back the
// version: undoing reads only what ops overwrote, redoing what they wrote.
// Errors wrap ErrBrokenHistory and name the seq. Imports and patchd check
// use it.
func CheckHistory(body any, exists bool, hist []store.Version, ops [][]patch.Op) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBrokenHistory}, args...)...)
	}
	if len(hist) == 0 {
		return bad("no versions")
	}
	for i := 1; i < len(hist); i++ {
		if hist[i].Seq != hist[i-1].Seq+1 {
			return bad("history seq %d follows %d", hist[i].Seq, hist[i-1].Seq)
		}
	}
	opsOf := func(i int) ([]patch.Op, error) {
		if ops != nil {
			return ops[i], nil
		}
		o, err := patch.DecodeOps(hist[i].Ops)
		if err != nil {
			return nil, bad("history seq %d: its ops do not decode: %v", hist[i].Seq, err)
		}
		return o, nil
	}
	state := patch.Clone(body)
	for i := len(hist) - 1; i >= 0; i-- {
		v := hist[i]
		got := ""
		var canon []byte
		if exists {
			var err error
			if canon, err = patch.CheckDocument(state, patch.Limits{}); err != nil {
				return bad("history seq %d: the document before seq %d is not an object", v.Seq, v.Seq+1)
			}
			got = store.ETagOf(canon)
		}
		if got != v.ETag {
			if i == len(hist)-1 {
				return bad("history seq %d: etag %s, but the body's is %s", v.Seq, orNull(v.ETag), orNull(got))
			}
			return bad("history seq %d: etag %s, but undoing seq %d gives %s", v.Seq, orNull(v.ETag), v.Seq+1, orNull(got))
		}
		if i == 0 && v.Seq != 1 {
			break // older versions were pruned: nothing to undo them to
		}
		o, err := opsOf(i)
		if err != nil {
			return err
		}
		if !exists && (len(o) == 0 || o[0].Kind != patch.OpDel) {
			return bad("history seq %d: the document does not exist after it, but it is no delete", v.Seq)
		}
		after := exists
		if state, exists, err = patch.Revert(state, o); err != nil {
			return bad("history seq %d: its ops do not undo: %v", v.Seq, err)
		}
		redo, redoExists, err := patch.Redo(patch.Clone(state), exists, o)
		var again []byte
		if err == nil && redoExists {
			again, err = patch.CheckDocument(redo, patch.Limits{})
		}
		if err != nil || redoExists != after || !bytes.Equal(again, canon) {
			return bad("history seq %d: its ops, applied to the version before it, do not give it", v.Seq)
		}
	}
	if hist[0].Seq == 1 && exists {
		return bad("history seq 1: undoing it leaves %s, not nothing", patch.Canonical(state))
	}
	return nil
}

func orNull(etag string) string {
	if etag == "" {
		return "null"
	}
	return etag
}
