package handlers_test

import (
	"context"
	"net/http/httptest"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/postgres"
	"github.com/patchd/patchd/store/postgres/pgtest"
)

// EnvReplicas, with pgtest.EnvServer naming a PostgreSQL server, runs this
// package's tests over that many replicas instead of one bbolt server:
// each test gets a new database, each replica its own store and HTTP
// server over it, and requests go to the replicas in turn. The e2e
// package runs the suite this way.
const EnvReplicas = "PATCHD_TEST_REPLICAS"

// replicaDatabase returns the URL of a new database for a test when the
// suite runs over replicas, or "".
func replicaDatabase(t *testing.T) string {
	t.Helper()
	if os.Getenv(EnvReplicas) == "" || os.Getenv(pgtest.EnvServer) == "" {
		return ""
	}
	c, err := pgtest.Start(context.Background(), pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dsn, err := c.CreateDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.DropDatabase(context.Background(), dsn) })
	return dsn
}

// replicas are the servers of one test over PostgreSQL.
type replicas struct {
	servers []*httptest.Server
	stores  []*postgres.Store
	n       atomic.Uint64
}

// next returns the replica for the next request.
func (r *replicas) next() *httptest.Server {
	return r.servers[(r.n.Add(1)-1)%uint64(len(r.servers))]
}

// stop closes every replica; it may be called more than once.
func (r *replicas) stop() {
	for _, s := range r.servers {
		s.Close()
	}
	for _, st := range r.stores {
		st.Close()
	}
	r.servers, r.stores = r.servers[:0], r.stores[:0]
}

// startReplicas serves the database at dsn with PATCHD_TEST_REPLICAS
// replicas (default 3), each configured by opts.
func startReplicas(t *testing.T, dsn string, sopts store.Options, opts ...func(*config)) *server {
	t.Helper()
	n, err := strconv.Atoi(os.Getenv(EnvReplicas))
	if err != nil || n < 1 {
		n = 3
	}
	cfg := newConfig(opts...)
	if sopts.Timeout == 0 {
		// The suites test behaviour, not deadlines: many clients on one
		// document, on a machine running other tests, can wait for the
		// row lock longer than the default 5s, which is a 503.
		sopts.Timeout = 30 * time.Second
	}
	r := &replicas{}
	for range n {
		st, err := postgres.Open(context.Background(), dsn, postgres.Options{Options: sopts})
		if err != nil {
			r.stop()
			t.Fatal(err)
		}
		r.stores = append(r.stores, st)
		r.servers = append(r.servers, httptest.NewServer(newHandler(st, cfg).Echo()))
	}
	s := &server{Server: r.servers[0], path: dsn, pg: r}
	t.Cleanup(s.stop)
	t.Logf("serving over %d PostgreSQL replicas", n)
	return s
}
