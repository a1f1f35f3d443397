package document

import (
	"container/heap"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/query"
	"github.com/patchd/patchd/store"
)

// Bounds of one listing request. Memory stays bounded whatever the
// collection's size: the store is read in chunks, and a page holds at most
// Limit items and about store.MaxListBytes of bodies.
const (
	// listChunk is how many documents one store read returns.
	listChunk = 100
	// MaxFilterScan is the most documents one request of a filtered
	// listing in id order examines; past it the page ends early (possibly
	// empty) and next says where to go on.
	MaxFilterScan = 10_000
	// MaxFilterScanBytes bounds the bytes of the documents one request of
	// a filtered listing in id order examines, likewise.
	MaxFilterScanBytes = 64 << 20
	// MaxOrderScan is the largest collection a listing can sort by a
	// member: each page reads the whole collection.
	MaxOrderScan = 100_000
	// MaxOrderScanBytes bounds, likewise, the bytes of the documents of a
	// collection a listing can sort by a member.
	MaxOrderScanBytes = 128 << 20
)

// ListQuery is one request for a page of a collection's documents.
type ListQuery struct {
	Collection string
	// Where keeps only the documents that match; nil keeps all.
	Where *query.Where
	// Order sorts by a member; nil sorts by id.
	Order *query.Order
	// After is the previous page's Next ("" for the first page).
	After string
	// Limit is the most items of the page.
	Limit int
	// Bodies adds each document's body to its item.
	Bodies bool
}

// ListItem is one document of a page.
type ListItem struct {
	ID   string
	ETag string
	Seq  uint64
	// Body is the document's canonical JSON when the query asked for
	// bodies.
	Body []byte
}

// ListPage is one page of a listing.
type ListPage struct {
	Items []ListItem
	// Next is the value of After for the next page; "" on the last page.
	Next string
}

// Query returns one page of a collection's documents, filtered and sorted
// as q asks (API.md, "Listing with bodies, filters and order").
//
// In id order the page continues after the id in After. Sorted by a
// member, every page reads the whole collection (up to MaxOrderScan
// documents) and keeps the Limit smallest keys (value, id) after the
// previous page's last one, so memory stays bounded; a pass (the pages that
// follow one first page) lists a document at most once: after the first
// page it leaves out the documents changed since the pass began, whose
// key may have moved. Errors wrap ErrInvalidRequest for an After that is
// not the Next of a page of this order.
func (s *Service) Query(ctx context.Context, q ListQuery) (ListPage, error) {
	if q.Order != nil {
		return s.listOrdered(ctx, q)
	}
	if q.Where == nil && !q.Bodies {
		entries, more, err := s.store.List(ctx, q.Collection, q.After, q.Limit)
		if err != nil {
			return ListPage{}, err
		}
		page := ListPage{Items: make([]ListItem, len(entries))}
		for i, e := range entries {
			page.Items[i] = ListItem{ID: e.ID, ETag: e.ETag, Seq: e.Seq}
		}
		if more && len(entries) > 0 {
			page.Next = entries[len(entries)-1].ID
		}
		return page, nil
	}
	var (
		page    ListPage
		size    int
		scanned int
		bytes   int
		after   = q.After
	)
	for {
		if err := ctx.Err(); err != nil {
			return ListPage{}, err
		}
		docs, more, err := s.store.ListDocuments(ctx, q.Collection, after, listChunk, nil)
		if err != nil {
			return ListPage{}, err
		}
		for i := range docs {
			d := &docs[i].Document
			rest := i < len(docs)-1 || more // documents after this one
			if q.Where.MatchCanonical(d.Body) {
				if q.Bodies && len(page.Items) > 0 && size+len(d.Body) > store.MaxListBytes {
					page.Next = after // the bodies fill the page: go on from this one
					return page, nil
				}
				page.Items = append(page.Items, item(d, q.Bodies))
				size += len(d.Body)
			}
			after = d.ID
			scanned++
			bytes += len(d.Body)
			if rest && (len(page.Items) == q.Limit || scanned >= MaxFilterScan || bytes >= MaxFilterScanBytes) {
				// A full page, or the request's share of the scan is
				// spent: the next page goes on after the last one read.
				page.Next = after
				return page, nil
			}
		}
		if !more {
			return page, nil
		}
	}
}

func item(d *store.Document, bodies bool) ListItem {
	it := ListItem{ID: d.ID, ETag: d.ETag, Seq: d.Seq}
	if bodies {
		it.Body = d.Body
	}
	return it
}

// orderToken is the Next of a page sorted by a member.
type orderToken struct {
	Order   string          `json:"o"`           // the order parameter
	Value   json.RawMessage `json:"v,omitempty"` // the last key's value (canonical JSON), unless an array or object
	Canon   []byte          `json:"c,omitempty"` // the last key's array or object (query.Key.Canon)
	Array   bool            `json:"a,omitempty"` // Canon is of an array, not an object
	Missing bool            `json:"m,omitempty"` // the last key has no value
	ID      string          `json:"i"`           // the last key's id
	Start   []byte          `json:"p"`           // cursor of the change log when the pass began
}

// orderTokenPrefix begins the Next of a page sorted by a member. No id
// contains its ':', so such a Next is never read as the id of a listing in
// id order.
const orderTokenPrefix = "o:"

// errBadAfter is the error of an After that is not the Next of a page
// sorted by order.
func errBadAfter(order, after string) error {
	if o, ok := TokenOrder(after); ok && o != order {
		return fail(ErrInvalidRequest, fmt.Sprintf("after is the next of a page sorted by order=%s, not order=%s: send the order of the page it came from", o, order))
	}
	return fail(ErrInvalidRequest, fmt.Sprintf("after must be the next of a previous page sorted by order=%s", order))
}

// decodeOrderToken reads the Next of a page sorted by a member.
func decodeOrderToken(after string) (orderToken, bool) {
	var tok orderToken
	rest, ok := strings.CutPrefix(after, orderTokenPrefix)
	if !ok {
		return tok, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest)
	if err == nil {
		err = json.Unmarshal(raw, &tok)
	}
	return tok, err == nil && tok.Start != nil
}

// TokenOrder returns the order parameter of the listing whose page's Next
// is after; ok is false if after is no such Next.
func TokenOrder(after string) (order string, ok bool) {
	tok, ok := decodeOrderToken(after)
	return tok.Order, ok
}

func (s *Service) listOrdered(ctx context.Context, q ListQuery) (ListPage, error) {
	if err := acquireTurn(ctx, s.scans, "to read collection %s in order", q.Collection); err != nil {
		return ListPage{}, err
	}
	defer s.scans.Release()
	o := *q.Order
	var (
		after *query.Key
		pass  store.Cursor
	)
	if q.After != "" {
		tok, ok := decodeOrderToken(q.After)
		if !ok || tok.Order != o.Raw {
			return ListPage{}, errBadAfter(o.Raw, q.After)
		}
		k := query.Key{ID: tok.ID, Missing: tok.Missing}
		switch {
		case tok.Missing:
		case tok.Canon != nil:
			if len(tok.Canon) > query.MaxKeyBytes {
				return ListPage{}, errBadAfter(o.Raw, q.After)
			}
			k.Value, k.Canon = map[string]any(nil), tok.Canon
			if tok.Array {
				k.Value = []any(nil)
			}
		default:
			// A key's value is a scalar of a stored document, whose
			// numbers are at most DefaultMaxNumber long: a longer one is
			// forged, and would cost its length at every comparison.
			if len(tok.Value) > 8*query.MaxKeyBytes { // a string cut to MaxKeyBytes, escaped
				return ListPage{}, errBadAfter(o.Raw, q.After)
			}
			v, err := patch.Parse(tok.Value, patch.Limits{MaxDepth: 1, MaxNumber: patch.DefaultMaxNumber})
			if err != nil {
				return ListPage{}, errBadAfter(o.Raw, q.After)
			}
			k = query.MakeKey(tok.ID, v, true)
		}
		after, pass = &k, tok.Start
	} else {
		log, err := s.store.Changes(ctx, q.Collection, nil, 0)
		if err != nil {
			return ListPage{}, err
		}
		pass = log.Next
	}
	var since store.Cursor // the first page lists what it finds; later ones leave out what changed
	if after != nil {
		since = pass
	}
	h := &keyHeap{order: o}
	var (
		bound        *query.Key // every key from here on is left out of the page
		scanned      int
		scannedBytes int
		cursor       string
	)
	tooLarge := fail(ErrInvalidRequest, fmt.Sprintf("order sorts collections of up to %d documents and %d MiB; list %s in id order instead (without order)",
		MaxOrderScan, MaxOrderScanBytes>>20, q.Collection))
	for {
		if err := ctx.Err(); err != nil {
			return ListPage{}, err // the client is gone: stop sorting for it
		}
		docs, more, err := s.store.ListDocuments(ctx, q.Collection, cursor, listChunk, since)
		if errors.Is(err, store.ErrInvalidCursor) || errors.Is(err, store.ErrCursorGone) {
			return ListPage{}, errBadAfter(o.Raw, q.After)
		}
		if err != nil {
			return ListPage{}, err
		}
		for i := range docs {
			d := &docs[i]
			cursor = d.ID
			scanned++
			scannedBytes += len(d.Body)
			if scanned > MaxOrderScan || scannedBytes > MaxOrderScanBytes {
				return ListPage{}, tooLarge
			}
			if d.ChangedSince || !q.Where.MatchCanonical(d.Body) {
				continue
			}
			k := o.KeyOf(d.ID, d.Body)
			if (after != nil && o.Compare(k, *after) <= 0) || (bound != nil && o.Compare(k, *bound) >= 0) {
				continue
			}
			e := keyed{key: k, item: item(&d.Document, q.Bodies)}
			e.size = len(e.item.Body) + len(d.ID)
			heap.Push(h, e)
			h.size += e.size
			for h.Len() > q.Limit || (h.Len() > 1 && h.size > store.MaxListBytes) {
				top := heap.Pop(h).(keyed)
				h.size -= top.size
				if bound == nil || o.Compare(top.key, *bound) < 0 {
					bound = &top.key
				}
			}
		}
		if !more {
			break
		}
	}
	page := ListPage{Items: make([]ListItem, h.Len())}
	last := h.Len() > 0
	var lastKey query.Key
	for i := h.Len() - 1; i >= 0; i-- {
		e := heap.Pop(h).(keyed)
		page.Items[i] = e.item
		if last {
			lastKey, last = e.key, false
		}
	}
	if bound != nil && len(page.Items) > 0 {
		tok := orderToken{Order: o.Raw, ID: lastKey.ID, Missing: lastKey.Missing, Start: pass}
		switch _, isArray := lastKey.Value.([]any); {
		case lastKey.Missing:
		case lastKey.Canon != nil:
			tok.Canon, tok.Array = lastKey.Canon, isArray
		default:
			tok.Value = patch.Canonical(lastKey.Value)
		}
		raw, err := json.Marshal(tok)
		if err != nil {
			return ListPage{}, err
		}
		page.Next = orderTokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	}
	return page, nil
}

// keyed is a document of an ordered page with its sort key.
type keyed struct {
	key  query.Key
	item ListItem
	size int
}

// keyHeap is a max-heap of keyed documents: the greatest key is dropped
// first when the page is over its bounds.
type keyHeap struct {
	order query.Order
	items []keyed
	size  int // bytes of the items' bodies and ids
}

func (h *keyHeap) Len() int           { return len(h.items) }
func (h *keyHeap) Less(i, j int) bool { return h.order.Compare(h.items[i].key, h.items[j].key) > 0 }
func (h *keyHeap) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *keyHeap) Push(x any)         { h.items = append(h.items, x.(keyed)) }
func (h *keyHeap) Pop() any {
	n := len(h.items) - 1
	x := h.items[n]
	h.items[n] = keyed{}
	h.items = h.items[:n]
	return x
}
