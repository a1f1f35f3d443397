package dump

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/patchd/patchd/document"
	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/store"
)

// lineMembers are the members a line may have.
var lineMembers = map[string]bool{"collection": true, "id": true, "seq": true, "updatedAt": true, "etag": true, "body": true, "history": true}

// versionMembers are the members a history version may have.
var versionMembers = map[string]bool{"seq": true, "at": true, "etag": true, "kind": true, "rebasedFrom": true, "ops": true,
	"actor": true, "requestId": true, "reverts": true}

// maxWho bounds the actor and request id a version may carry, in bytes.
const maxWho = 256

// parseLine checks one line and turns it into a record for store.Load.
func parseLine(line []byte, opts ImportOptions) (*store.Record, error) {
	lim := opts.Limits
	// The line nests the body two levels down and history values five.
	outer := patch.Limits{}
	if lim.MaxDepth > 0 {
		outer.MaxDepth = lim.MaxDepth + 5
	}
	v, err := patch.Parse(line, outer)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("a line must be a JSON object")
	}
	for k := range m {
		if !lineMembers[k] {
			return nil, fmt.Errorf("unknown member %q", k)
		}
	}
	rec := &store.Record{}
	if rec.Collection, err = name(m, "collection"); err != nil {
		return nil, err
	}
	if rec.ID, err = name(m, "id"); err != nil {
		return nil, err
	}

	var doc *store.Document
	var body any
	switch b := m["body"].(type) {
	case nil:
		if _, ok := m["body"]; !ok {
			return nil, errors.New(`missing "body"`)
		}
		for _, k := range []string{"etag", "seq", "updatedAt"} {
			if _, ok := m[k]; ok {
				return nil, fmt.Errorf("a deleted document (body null) has no %q", k)
			}
		}
	case map[string]any:
		canon, err := patch.CheckDocument(b, lim)
		if err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
		body = b
		doc = &store.Document{Collection: rec.Collection, ID: rec.ID, Body: canon, ETag: store.ETagOf(canon), Seq: 1}
		if e, ok := m["etag"]; ok {
			if s, _ := e.(string); s != doc.ETag {
				return nil, fmt.Errorf("etag %v is not that of the body (%s)", e, doc.ETag)
			}
		}
		if _, ok := m["seq"]; ok {
			if doc.Seq, err = seq(m["seq"]); err != nil {
				return nil, fmt.Errorf("seq: %w", err)
			}
		}
		doc.UpdatedAt = opts.Now().UTC()
		if _, ok := m["updatedAt"]; ok {
			if doc.UpdatedAt, err = timestamp(m["updatedAt"]); err != nil {
				return nil, fmt.Errorf("updatedAt: %w", err)
			}
		}
	default:
		return nil, errors.New(`"body" must be a JSON object, or null for a deleted document`)
	}
	rec.Doc = doc

	h, ok := m["history"]
	if !ok {
		if doc == nil {
			return nil, errors.New(`a deleted document (body null) needs its "history"`)
		}
		// Without history, the document gets one version: itself.
		rec.History = []store.Version{{Seq: doc.Seq, ETag: doc.ETag, At: doc.UpdatedAt, Kind: store.KindPut,
			Ops: patch.EncodeOps([]patch.Op{{Kind: patch.OpRoot, Value: body}})}}
		return rec, nil
	}
	arr, ok := h.([]any)
	if !ok || len(arr) == 0 {
		return nil, errors.New(`"history" must be a non-empty array`)
	}
	ops := make([][]patch.Op, len(arr))
	for i, e := range arr {
		v, o, err := version(e, lim)
		if err != nil {
			return nil, fmt.Errorf("history[%d]: %w", i, err)
		}
		if i > 0 && v.Seq != rec.History[i-1].Seq+1 {
			return nil, fmt.Errorf("history[%d]: seq %d follows %d", i, v.Seq, rec.History[i-1].Seq)
		}
		rec.History = append(rec.History, v)
		ops[i] = o
	}
	last := rec.History[len(rec.History)-1]
	if doc != nil {
		if _, ok := m["seq"]; !ok {
			doc.Seq = last.Seq
		}
		if _, ok := m["updatedAt"]; !ok {
			doc.UpdatedAt = last.At
		}
		switch {
		case doc.Seq != last.Seq:
			return nil, fmt.Errorf("seq %d, but the last version is %d", doc.Seq, last.Seq)
		case !doc.UpdatedAt.Equal(last.At):
			return nil, fmt.Errorf("updatedAt %s, but the last version is at %s", doc.UpdatedAt.Format(time.RFC3339Nano), last.At.Format(time.RFC3339Nano))
		}
	}
	if err := document.CheckHistory(body, doc != nil, rec.History, ops); err != nil {
		return nil, err
	}
	return rec, nil
}

// version checks one history version.
func version(e any, lim patch.Limits) (store.Version, []patch.Op, error) {
	m, ok := e.(map[string]any)
	if !ok {
		return store.Version{}, nil, errors.New("a version must be an object")
	}
	for k := range m {
		if !versionMembers[k] {
			return store.Version{}, nil, fmt.Errorf("unknown member %q", k)
		}
	}
	var v store.Version
	var err error
	if v.Seq, err = seq(m["seq"]); err != nil {
		return v, nil, fmt.Errorf("seq: %w", err)
	}
	if v.At, err = timestamp(m["at"]); err != nil {
		return v, nil, fmt.Errorf("at: %w", err)
	}
	switch k, _ := m["kind"].(string); k {
	case store.KindPut, store.KindJSONPatch, store.KindMergePatch, store.KindDelete, store.KindRevert:
		v.Kind = k
	default:
		return v, nil, fmt.Errorf("kind %v is not put, json-patch, merge-patch, delete or revert", m["kind"])
	}
	if v.Actor, err = who(m, "actor"); err != nil {
		return v, nil, err
	}
	if v.RequestID, err = who(m, "requestId"); err != nil {
		return v, nil, err
	}
	if r, ok := m["reverts"]; ok {
		if v.Reverts, err = seq(r); err != nil {
			return v, nil, fmt.Errorf("reverts: %w", err)
		}
		if v.Reverts >= v.Seq {
			return v, nil, fmt.Errorf("reverts %d: a version reverts an earlier one", v.Reverts)
		}
	}
	if (v.Reverts != 0) != (v.Kind == store.KindRevert) {
		return v, nil, errors.New(`"reverts" is for a version of kind revert, and only for one`)
	}
	if v.ETag, err = nullableETag(m, "etag"); err != nil {
		return v, nil, err
	}
	if (v.ETag == "") != (v.Kind == store.KindDelete) {
		return v, nil, errors.New("etag must be null for a delete, and only for a delete")
	}
	if v.RebasedFrom, err = nullableETag(m, "rebasedFrom"); err != nil {
		return v, nil, err
	}
	raw, ok := m["ops"].([]any)
	if !ok {
		return v, nil, errors.New(`"ops" must be an array`)
	}
	v.Ops = patch.Canonical(raw)
	if len(raw) == 0 {
		v.Ops = nil
	}
	ops, err := patch.DecodeOps(v.Ops)
	if err != nil {
		return v, nil, err
	}
	return v, ops, nil
}

// who reads an optional actor or request id member: a string of 1 to
// maxWho bytes, or null.
func who(m map[string]any, key string) (string, error) {
	switch v := m[key].(type) {
	case nil:
		return "", nil
	case string:
		if v == "" || len(v) > maxWho {
			return "", fmt.Errorf("%s must be 1 to %d bytes, or null", key, maxWho)
		}
		return v, nil
	}
	return "", fmt.Errorf("%s must be a string or null", key)
}

// nullableETag reads an entity-tag member that may be null.
func nullableETag(m map[string]any, key string) (string, error) {
	switch e := m[key].(type) {
	case nil:
		if _, ok := m[key]; !ok {
			return "", fmt.Errorf("missing %q", key)
		}
		return "", nil
	case string:
		if !validETag(e) {
			return "", fmt.Errorf("%s %q is not an ETag", key, e)
		}
		return e, nil
	}
	return "", fmt.Errorf("%s must be a string or null", key)
}

// validETag reports whether s has the form of store.ETagOf.
func validETag(s string) bool {
	if len(s) != 34 || s[0] != '"' || s[33] != '"' {
		return false
	}
	for i := 1; i < 33; i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// name reads a collection or id member.
func name(m map[string]any, key string) (string, error) {
	s, ok := m[key].(string)
	if !ok {
		return "", fmt.Errorf("%q must be a string", key)
	}
	if key == "collection" && s == store.SchemaCollection {
		return s, nil // the collections' schemas
	}
	if !store.ValidName(s) {
		return "", fmt.Errorf("%s %q must match [A-Za-z0-9._~-]{1,128} and not be a dot-segment", key, s)
	}
	return s, nil
}

func seq(v any) (uint64, error) {
	n, ok := v.(patch.Number)
	if !ok {
		return 0, errors.New("must be a positive integer")
	}
	s, err := strconv.ParseUint(string(n), 10, 64)
	if err != nil || s == 0 {
		return 0, fmt.Errorf("%s is not a positive integer", n)
	}
	return s, nil
}

func timestamp(v any) (time.Time, error) {
	s, ok := v.(string)
	if !ok {
		return time.Time{}, errors.New("must be an RFC 3339 time")
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time", s)
	}
	return t.UTC(), nil
}
