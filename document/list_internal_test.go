package document

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/patchd/patchd/internal/fair"
	"github.com/patchd/patchd/query"
	"github.com/patchd/patchd/store"
)

// TestOrderScanBoundedByBytes: a listing sorted by a member refuses a
// collection of more than MaxOrderScanBytes of documents, however few
// they are, rather than reading them all for every page.
func TestOrderScanBoundedByBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 130 MB")
	}
	svc, st := newService(t)
	ctx := context.Background()
	pad := strings.Repeat("x", 1<<20-64)
	write := func(from, n int) {
		t.Helper()
		keys := make([]store.Key, n)
		changes := make([]store.DocChange, n)
		for i := range keys {
			keys[i] = store.Key{Collection: "big", ID: fmt.Sprintf("d%03d", from+i)}
			body := fmt.Appendf(nil, `{"n":%d,"pad":"%s"}`, from+i, pad)
			changes[i] = store.DocChange{Doc: i, Change: &store.Change{Body: body, Kind: store.KindPut, Ops: []byte(`[]`)}}
		}
		if _, err := st.UpdateMany(ctx, keys, func(context.Context, []store.Locked) (*store.ManyChange, error) {
			return &store.ManyChange{Changes: changes}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	order, err := query.ParseOrder("-/n")
	if err != nil {
		t.Fatal(err)
	}
	q := ListQuery{Collection: "big", Order: &order, Limit: 10}
	n := MaxOrderScanBytes>>20 - 2
	for from := 0; from < n; from += 20 {
		write(from, min(20, n-from))
	}
	page, err := svc.Query(ctx, q)
	if err != nil || len(page.Items) != 10 || page.Items[0].ID != fmt.Sprintf("d%03d", n-1) {
		t.Fatalf("%d documents of 1 MiB sorted: %d items, %v", n, len(page.Items), err)
	}
	write(n, 4)
	if _, err := svc.Query(ctx, q); !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), "MiB") {
		t.Fatalf("%d documents of 1 MiB sorted: %v, want ErrInvalidRequest naming the bound", n+4, err)
	}
}

// TestScansTakeTurns: a page sorted by a member, and a page of
// violations, read a whole collection: each waits for a turn of the
// service's scans (internal/fair, in turn per client), at most turnWait:
// then 503 overloaded (ErrOverloaded); a request that ends first stops.
func TestScansTakeTurns(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	for i := range 3 {
		if _, err := s.Write(ctx, Write{Kind: Put, Collection: "c", ID: fmt.Sprintf("d%d", i), Body: fmt.Appendf(nil, `{"n":%d}`, i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.WriteSchema(ctx, Write{Kind: Put, Collection: "c", Body: []byte(`{"properties":{"n":{"maximum":1}}}`)}); err != nil {
		t.Fatal(err)
	}
	order, err := query.ParseOrder("-/n")
	if err != nil {
		t.Fatal(err)
	}
	q := ListQuery{Collection: "c", Order: &order, Limit: 10}
	s.scans = fair.New(1)
	if err := s.scans.Acquire(ctx, "another client"); err != nil {
		t.Fatal(err)
	}
	me := WithClient(ctx, "me")
	if _, err := s.Query(me, q); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("an ordered page while every scan turn is taken: %v, want ErrOverloaded after turnWait", err)
	}
	if _, _, err := s.Violations(me, "c", "", 10); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("a violations page while every scan turn is taken: %v, want ErrOverloaded", err)
	}
	gone, cancel := context.WithCancel(me)
	cancel()
	if _, err := s.Query(gone, q); !errors.Is(err, context.Canceled) || errors.Is(err, ErrOverloaded) {
		t.Fatalf("an ordered page whose client went away while it waited: %v, want context.Canceled alone", err)
	}
	s.scans.Release()
	page, err := s.Query(WithClient(ctx, "me"), q)
	if err != nil || len(page.Items) != 3 || page.Items[0].ID != "d2" {
		t.Fatalf("an ordered page once the turn is free: %+v, %v", page, err)
	}
	vs, _, err := s.Violations(ctx, "c", "", 10)
	if err != nil || len(vs) != 1 || vs[0].ID != "d2" {
		t.Fatalf("violations once the turn is free: %+v, %v", vs, err)
	}
}
