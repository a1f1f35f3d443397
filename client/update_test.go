package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patchd/patchd/client"
)

// order is the typed value the Update tests edit.
type order struct {
	Customer string `json:"customer"`
	Phone    string `json:"phone"`
	Email    string `json:"email"`
	Note     string `json:"note"`
	Count    int    `json:"count"`
	Items    []item `json:"items"`
}

type item struct {
	ID   string `json:"id"`
	Desc string `json:"desc"`
	Qty  int    `json:"qty"`
}

// barrier lets n goroutines wait until all have arrived, or ctx ends.
type barrier struct {
	n    atomic.Int32
	done chan struct{}
}

func newBarrier(n int) *barrier {
	b := &barrier{done: make(chan struct{})}
	b.n.Store(int32(n))
	return b
}

func (b *barrier) wait(ctx context.Context) error {
	if b.n.Add(-1) == 0 {
		close(b.done)
	}
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// concurrently runs the edits as concurrent Updates of c/id, all made from
// the same version: each edit's first call waits until every Update has
// read the document. It returns the results and how many times each edit
// ran.
func concurrently(ctx context.Context, t *testing.T, cl *client.Client, c, id string, edits []func(*order) error, opts ...client.UpdateOption) ([]*client.Document, []int) {
	t.Helper()
	b := newBarrier(len(edits))
	docs := make([]*client.Document, len(edits))
	calls := make([]int, len(edits))
	errs := make([]error, len(edits))
	var wg sync.WaitGroup
	for i, edit := range edits {
		wg.Go(func() {
			docs[i], errs[i] = client.Update(ctx, cl, c, id, func(o *order) error {
				calls[i]++
				if calls[i] == 1 {
					if err := b.wait(ctx); err != nil {
						return err
					}
				}
				return edit(o)
			}, opts...)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
	}
	return docs, calls
}

func TestUpdateDifferentFieldsLand(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)
	mustCreate(t, cl, "orders", "1", `{"customer":"Ann","phone":"1","email":"a@x","note":"","count":0,"items":[{"id":"a","desc":"A","qty":1},{"id":"b","desc":"B","qty":1},{"id":"c","desc":"C","qty":1},{"id":"d","desc":"D","qty":1}],"extra":{"kept":true}}`)

	edits := []func(*order) error{
		func(o *order) error { o.Customer = "Bob"; return nil },
		func(o *order) error { o.Phone = "555-0199"; return nil },
		func(o *order) error { o.Email = "bob@x"; return nil },
		func(o *order) error { o.Note = "ring twice"; return nil },
		func(o *order) error { o.Items[1].Qty = 5; return nil },     // b
		func(o *order) error { o.Items[2].Desc = "C2"; return nil }, // c
		func(o *order) error { o.Items = append(o.Items, item{ID: "e", Desc: "E", Qty: 2}); return nil },
		func(o *order) error { o.Items = o.Items[1:]; return nil }, // a removed
	}
	docs, calls := concurrently(ctx, t, cl, "orders", "1", edits)
	rebased := 0
	for i, d := range docs {
		if calls[i] != 1 {
			t.Errorf("edit %d ran %d times, want once: a conflict", i, calls[i])
		}
		if d.RebasedFrom != "" {
			rebased++
		}
	}
	if got, want := rebased, len(edits)-1; got != want {
		t.Errorf("%d writes rebased, want %d (all but the first to commit)", got, want)
	}
	want := `{"count":0,"customer":"Bob","email":"bob@x","extra":{"kept":true},"items":[{"desc":"B","id":"b","qty":5},{"desc":"C2","id":"c","qty":1},{"desc":"D","id":"d","qty":1},{"desc":"E","id":"e","qty":2}],"note":"ring twice","phone":"555-0199"}`
	if got := mustGet(t, cl, "orders", "1"); string(got.Value) != want {
		t.Fatalf("document\n%s\nwant\n%s", got.Value, want)
	}
	if got, want := versions(t, cl, "orders", "1"), 1+len(edits); got != want {
		t.Fatalf("%d versions, want %d", got, want)
	}
}

func TestUpdateSameFieldReruns(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)

	t.Run("Interleaved", func(t *testing.T) {
		mustCreate(t, cl, "counters", "i", `{"count":0}`)
		aRead, bDone := make(chan struct{}), make(chan struct{})
		aCalls := 0
		var aDoc *client.Document
		var aErr error
		var wg sync.WaitGroup
		wg.Go(func() {
			aDoc, aErr = client.Update(ctx, cl, "counters", "i", func(o *order) error {
				aCalls++
				if aCalls == 1 {
					close(aRead)
					select { // B reads and writes in between
					case <-bDone:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				o.Count++
				return nil
			})
		})
		<-aRead
		if _, err := client.Update(ctx, cl, "counters", "i", func(o *order) error { o.Count++; return nil }); err != nil {
			t.Fatal(err)
		}
		close(bDone)
		wg.Wait()
		if aErr != nil {
			t.Fatal(aErr)
		}
		if aCalls != 2 {
			t.Fatalf("A ran %d times, want 2", aCalls)
		}
		if got, want := string(aDoc.Value), `{"count":2}`; got != want {
			t.Fatalf("result %s, want %s", got, want)
		}
	})

	t.Run("ManyIncrements", func(t *testing.T) {
		const n = 8
		mustCreate(t, cl, "counters", "m", `{"count":0}`)
		edits := make([]func(*order) error, n)
		for i := range edits {
			edits[i] = func(o *order) error { o.Count++; return nil }
		}
		_, calls := concurrently(ctx, t, cl, "counters", "m", edits, client.MaxAttempts(n))
		total := 0
		for _, c := range calls {
			total += c
		}
		if got, want := string(mustGet(t, cl, "counters", "m").Value), fmt.Sprintf(`{"count":%d}`, n); got != want {
			t.Fatalf("document %s, want %s: an increment was lost", got, want)
		}
		if total < 2*n-1 {
			t.Fatalf("%d runs in all, want at least %d (every loser of the first round reruns)", total, 2*n-1)
		}
	})

	t.Run("SameValue", func(t *testing.T) {
		// Two edits setting the same value are no conflict for the server
		// (REBASE.md E1), but Update guards what it read: one reruns, sees
		// the value there, and writes nothing.
		mustCreate(t, cl, "counters", "s", `{"note":"old"}`)
		edits := []func(*order) error{
			func(o *order) error { o.Note = "same"; return nil },
			func(o *order) error { o.Note = "same"; return nil },
		}
		_, calls := concurrently(ctx, t, cl, "counters", "s", edits)
		if got := calls[0] + calls[1]; got != 3 {
			t.Fatalf("%d runs, want 3", got)
		}
		if got := versions(t, cl, "counters", "s"); got != 2 {
			t.Fatalf("%d versions, want 2", got)
		}
	})
}

func TestUpdateReads(t *testing.T) {
	type priced struct {
		Qty   int `json:"qty"`
		Total int `json:"total"`
	}
	tests := []struct {
		name      string
		opts      []client.UpdateOption
		wantCalls int
		want      string
	}{
		// Without Reads, the total is computed from a price changed
		// concurrently, and the server sees disjoint edits: write skew.
		{name: "WithoutReads", wantCalls: 1, want: `{"price":3,"qty":2,"total":4}`},
		{name: "WithReads", opts: []client.UpdateOption{client.Reads("/price", "/absent")}, wantCalls: 2, want: `{"price":3,"qty":2,"total":6}`},
	}
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mustCreate(t, cl, "priced", tc.name, `{"price":2,"qty":1,"total":2}`)
			calls := 0
			doc, err := client.Update(ctx, cl, "priced", tc.name, func(p *priced) error {
				calls++
				cur := mustGet(t, cl, "priced", tc.name) // the price, as this run read it
				var price struct {
					Price int `json:"price"`
				}
				if err := cur.Decode(&price); err != nil {
					return err
				}
				if calls == 1 { // someone changes the price meanwhile
					if _, err := cl.Merge(ctx, "priced", tc.name, map[string]int{"price": 3}, client.IfMatch(cur.ETag)); err != nil {
						return err
					}
				}
				p.Qty = 2
				p.Total = p.Qty * price.Price
				return nil
			}, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if calls != tc.wantCalls || string(doc.Value) != tc.want {
				t.Fatalf("%d runs, result %s; want %d, %s", calls, doc.Value, tc.wantCalls, tc.want)
			}
		})
	}
}

func TestUpdateKeepsWhatTheTypeDoesNotHold(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)
	// "when" as JavaScript writes it: time.Time renders it without the
	// milliseconds, so Update must guard it with the server's bytes.
	mustCreate(t, cl, "typed", "1", `{"big":12345678901234567890123,"other":{"x":[1,2]},"status":"new","when":"2024-01-02T03:04:05.000Z"}`)
	type partial struct {
		Status string    `json:"status"`
		When   time.Time `json:"when"`
	}
	doc, err := client.Update(ctx, cl, "typed", "1", func(p *partial) error { p.Status = "paid"; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(doc.Value), `{"big":12345678901234567890123,"other":{"x":[1,2]},"status":"paid","when":"2024-01-02T03:04:05.000Z"}`; got != want {
		t.Fatalf("document %s, want %s", got, want)
	}
	doc, err = client.Update(ctx, cl, "typed", "1", func(p *partial) error { p.When = p.When.Add(time.Hour); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(doc.Value), `{"big":12345678901234567890123,"other":{"x":[1,2]},"status":"paid","when":"2024-01-02T04:04:05Z"}`; got != want {
		t.Fatalf("document %s, want %s", got, want)
	}
}

func TestUpdateOutcomes(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)
	boom := errors.New("refused by the caller")
	tests := []struct {
		name string
		// setup is the document; "" for none.
		setup     string
		fn        func(*order) error
		opts      []client.UpdateOption
		wantErr   func(error) bool
		wantCalls int
		// versions is how many versions the document has afterwards.
		versions int
	}{
		{name: "NoChangeNoWrite", setup: `{"count":1}`, fn: func(*order) error { return nil }, wantCalls: 1, versions: 1},
		{name: "FunctionError", setup: `{"count":1}`, fn: func(o *order) error { o.Count = 9; return boom },
			wantErr: func(err error) bool { return errors.Is(err, boom) }, wantCalls: 1, versions: 1},
		{name: "NotFound", fn: func(*order) error { return nil },
			wantErr: func(err error) bool { return errors.Is(err, client.ErrNotFound) }, wantCalls: 0},
		{name: "AttemptsRunOut", setup: `{"count":1}`, opts: []client.UpdateOption{client.MaxAttempts(3)},
			fn: func(o *order) error {
				// Someone else changes the count every time.
				cur, err := cl.Get(ctx, "outcomes", "AttemptsRunOut")
				if err != nil {
					return err
				}
				if _, err := cl.Merge(ctx, "outcomes", "AttemptsRunOut", map[string]int{"count": o.Count + 100}, client.IfMatch(cur.ETag)); err != nil {
					return err
				}
				o.Count++
				return nil
			},
			wantErr: func(err error) bool {
				var ce *client.ConflictError
				return errors.As(err, &ce) && slices.Equal(ce.Paths(), []string{"/count"})
			}, wantCalls: 3, versions: 4},
		{name: "DecodeError", setup: `{"items":"not an array"}`, fn: func(*order) error { return nil },
			wantErr: func(err error) bool {
				var ute *json.UnmarshalTypeError
				return errors.As(err, &ute)
			}, wantCalls: 0, versions: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != "" {
				mustCreate(t, cl, "outcomes", tc.name, tc.setup)
			}
			calls := 0
			_, err := client.Update(ctx, cl, "outcomes", tc.name, func(o *order) error { calls++; return tc.fn(o) }, tc.opts...)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("err=%v, want none", err)
			case tc.wantErr != nil && !tc.wantErr(err):
				t.Fatalf("err=%v (%T), not the one expected", err, err)
			}
			if calls != tc.wantCalls {
				t.Fatalf("%d runs, want %d", calls, tc.wantCalls)
			}
			if tc.setup != "" {
				if got := versions(t, cl, "outcomes", tc.name); got != tc.versions {
					t.Fatalf("%d versions, want %d", got, tc.versions)
				}
			}
		})
	}
}
