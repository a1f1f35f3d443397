package document

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

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
// service's scans (internal/fair, in turn per client), and gives up with
// 503 (store.ErrUnavailable) when its request's deadline passes first.
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
	// Each call's deadline passes once it waits for the turn.
	waitThenExpire := func(call func(context.Context) error) error {
		d := &deadline{Context: WithClient(ctx, "me"), done: make(chan struct{})}
		returned := make(chan struct{})
		go func() {
			for s.scans.Waiting() == 0 {
				select {
				case <-returned:
					return
				case <-time.After(time.Millisecond):
				}
			}
			d.expire()
		}()
		defer close(returned)
		return call(d)
	}
	err = waitThenExpire(func(ctx context.Context) error { _, err := s.Query(ctx, q); return err })
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("an ordered page while every scan turn is taken: %v, want store.ErrUnavailable once the deadline passed", err)
	}
	err = waitThenExpire(func(ctx context.Context) error { _, _, err := s.Violations(ctx, "c", "", 10); return err })
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("a violations page while every scan turn is taken: %v, want store.ErrUnavailable", err)
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

// deadline is a context whose deadline passes when the test says so.
type deadline struct {
	context.Context
	once sync.Once
	done chan struct{}
}

func (d *deadline) expire()               { d.once.Do(func() { close(d.done) }) }
func (d *deadline) Done() <-chan struct{} { return d.done }
func (d *deadline) Err() error {
	select {
	case <-d.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}
