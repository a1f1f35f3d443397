package postgres_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/postgres"
	"github.com/patchd/patchd/store/postgres/pgtest"
)

// countingProxy forwards TCP connections to target and counts the bytes
// the server sends back. It stops at cleanup.
type countingProxy struct {
	ln       net.Listener
	received atomic.Int64
}

func newCountingProxy(t *testing.T, target string) *countingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{ln: ln}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(s, c); s.Close() })
			wg.Go(func() { _, _ = io.Copy(countWriter{c, &p.received}, s); c.Close() })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return p
}

type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// TestSinceReadsWithinBound: a stale base far back reads about
// MaxHistoryRead bytes of versions from PostgreSQL before it is refused,
// not every version after the base.
func TestSinceReadsWithinBound(t *testing.T) {
	c := pg.Own(t, pgtest.Options{TCP: true})
	dsn, err := c.CreateDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCountingProxy(t, c.Addr())
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Del("host")
	q.Del("port")
	u.Host, u.RawQuery = proxy.ln.Addr().String(), q.Encode()

	const (
		bound    = 256 << 10
		versions = 40
		opsSize  = 64 << 10 // 40 versions: 2.5 MiB after the first
	)
	s := open(t, u.String(), postgres.Options{Options: store.Options{
		Retention:      store.Retention{Versions: 100, Age: -1},
		MaxHistoryRead: bound,
	}})
	ctx := t.Context()
	var first string
	for i := range versions {
		ops := []byte(`["` + strings.Repeat("x", opsSize) + `"]`)
		body := []byte(`{"n":` + string(rune('0'+i%10)) + `,"i":"` + strings.Repeat("y", i) + `"}`)
		doc, err := s.Update(ctx, "c", "d", func(context.Context, *store.Document, store.History) (*store.Change, error) {
			return &store.Change{Body: body, Kind: store.KindJSONPatch, Ops: ops}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = doc.ETag
		}
	}
	for _, by := range []string{"etag", "seq"} {
		before := proxy.received.Load()
		var since error
		_, err := s.Update(ctx, "c", "d", func(ctx context.Context, _ *store.Document, h store.History) (*store.Change, error) {
			if by == "etag" {
				_, _, since = h.Since(ctx, []string{first})
			} else {
				_, _, since = h.SinceSeq(ctx, 1)
			}
			return nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(since, store.ErrHistoryTooLarge) {
			t.Fatalf("since the first version by %s: %v, want ErrHistoryTooLarge", by, since)
		}
		// The bound, the version that passes it and the base, with room
		// for the protocol's own messages.
		if got, most := proxy.received.Load()-before, int64(bound+2*opsSize+64<<10); got > most {
			t.Errorf("since the first version by %s: received %d bytes from PostgreSQL, want at most %d (%d bytes of versions follow it)",
				by, got, most, (versions-1)*opsSize)
		}
	}
}
