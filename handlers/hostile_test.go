package handlers_test

import (
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patchd/patchd/internal/hostile"
	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// TestHostileCorpus sends every request of testdata/hostile/cases.json to
// a server configured as patchd's defaults are, and checks the status,
// the problem type, that nothing changed unless the case says what, and
// that each answer came within a bound. The bound is generous (CI
// machines are noisy); it is there to catch hangs and quadratic blowups.
func TestHostileCorpus(t *testing.T) {
	c, err := hostile.Load(filepath.Join("..", "testdata", "hostile", "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := bolt.Open(filepath.Join(t.TempDir(), "patchd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(newHandler(st, newConfig()).Echo())
	// As main.go sets them by default.
	srv.Config.ReadHeaderTimeout = 5 * time.Second
	srv.Config.ReadTimeout = 30 * time.Second
	srv.Config.WriteTimeout = 30 * time.Second
	srv.Config.IdleTimeout = 2 * time.Minute
	srv.Config.MaxHeaderBytes = 64 << 10
	srv.Start()
	s := &server{Server: srv, store: st}
	t.Cleanup(s.stop)

	res := hostile.Run(t, c, hostile.Options{Addr: strings.TrimPrefix(srv.URL, "http://"), Bound: 10 * time.Second})
	t.Logf("%d hostile requests; slowest %v (%s)", res.Cases, res.Slowest, res.SlowestCase)
	if res.Cases < 60 {
		t.Fatalf("only %d cases", res.Cases)
	}
}
