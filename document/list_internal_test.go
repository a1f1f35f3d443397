package document

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

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
