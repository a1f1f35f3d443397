package faults

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/patchd/patchd/store/postgres/pgtest"
)

// postgresDatabase starts a throwaway PostgreSQL server for one test (or
// uses the one PATCHD_TEST_POSTGRES names) and returns the URL of a new
// empty database on it. Without PostgreSQL the test skips, or fails when
// PATCHD_REQUIRE_POSTGRES=1, as with pgtest.Env. The package's TestMain
// only builds the binary, so the server is the test's own and stops at
// its cleanup.
func postgresDatabase(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgtest.Start(ctx, pgtest.Options{})
	if err != nil {
		if os.Getenv(pgtest.EnvRequire) == "1" {
			t.Fatalf("PostgreSQL required (%s=1): %v", pgtest.EnvRequire, err)
		}
		t.Skipf("skipping: %v", err)
	}
	t.Cleanup(c.Stop)
	dsn, err := c.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.DropDatabase(context.Background(), dsn); err != nil {
			t.Logf("drop test database: %v", err)
		}
	})
	return dsn
}

// startReplicas starts n patchd processes over the PostgreSQL database
// dsn at once (so that they also race to migrate it), each behind a proxy
// that follows it across restarts. At cleanup they are killed, and their
// logs are kept in the test's output if the test failed.
func startReplicas(t *testing.T, dsn string, n int) ([]*Server, []*Proxy) {
	t.Helper()
	srvs := make([]*Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range srvs {
		srvs[i] = &Server{Bin: patchdBin, DB: dsn}
		wg.Go(func() { _, errs[i] = srvs[i].Start() })
	}
	wg.Wait()
	t.Cleanup(func() {
		for i, s := range srvs {
			s.Stop()
			if t.Failed() {
				log := s.Log()
				if len(log) > 20000 {
					log = "..." + log[len(log)-20000:]
				}
				t.Logf("replica %d log:\n%s", i, log)
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	pxs := make([]*Proxy, n)
	for i, s := range srvs {
		pxs[i] = proxied(t, s)
	}
	return srvs, pxs
}

// killReplicas kills one replica, chosen at random, with SIGKILL every
// 150-500 ms until ctx ends, and restarts it at once on the same
// database; its proxy follows it. At most one replica is down at a time.
// It returns how many replicas it killed.
func killReplicas(ctx context.Context, t *testing.T, srvs []*Server, pxs []*Proxy, seed uint64) int {
	t.Helper()
	rnd := rand.New(rand.NewPCG(seed, 1<<33))
	kills := 0
	for {
		select {
		case <-ctx.Done():
			return kills
		case <-time.After(time.Duration(150+rnd.IntN(350)) * time.Millisecond):
		}
		i := rnd.IntN(len(srvs))
		if err := srvs[i].Kill(); err != nil {
			t.Errorf("kill replica %d: %v", i, err)
			return kills
		}
		addr, err := srvs[i].Start()
		if err != nil {
			t.Errorf("restart replica %d: %v", i, err)
			return kills
		}
		pxs[i].SetTarget(addr)
		kills++
	}
}

// runReplicaHistory records one history of clients spread over three
// replicas over one PostgreSQL database (client i talks to replica i%3),
// killing replicas when kill is set, and checks it with the model.
func runReplicaHistory(t *testing.T, cfg linConfig, kill bool, st *linStats) {
	t.Helper()
	needBinary(t)
	const replicas = 3
	srvs, pxs := startReplicas(t, postgresDatabase(t), replicas)
	bases := make([]string, replicas)
	for i, px := range pxs {
		bases[i] = "http://" + px.Addr()
	}

	rec := &recorder{start: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.duration)
	defer cancel()
	var wg sync.WaitGroup
	for i := range cfg.clients {
		c := &linClient{id: i, base: bases[i%replicas], http: client(1500 * time.Millisecond), rec: rec,
			rnd: rand.New(rand.NewPCG(cfg.seed, uint64(i))), seen: map[int][]seenVersion{}, gone: map[int]bool{}}
		for d := range cfg.docs {
			c.seen[d] = nil
		}
		wg.Go(func() {
			for n := 0; n < cfg.opsEach && ctx.Err() == nil; n++ {
				c.next(context.Background())
			}
		})
	}
	killed := make(chan int, 1)
	go func() {
		if !kill {
			killed <- 0
			return
		}
		killed <- killReplicas(ctx, t, srvs, pxs, cfg.seed)
	}()
	wg.Wait()
	cancel()
	kills := <-killed
	if t.Failed() {
		return
	}
	if kill && kills == 0 {
		t.Fatal("no replica was killed during the run")
	}
	// Final reads of every document from every replica, after every
	// fault, anchor the end state.
	for r, base := range bases {
		final := &linClient{id: cfg.clients + r, base: base, http: client(10 * time.Second), rec: rec}
		for d := range cfg.docs {
			call := rec.now()
			rep := call2(final, d)
			if rep.err != nil {
				t.Fatalf("final read of d%d from replica %d: %v", d, r, rep.err)
			}
			out := output{Status: rep.status, Problem: rep.problem()}
			if rep.status == 200 {
				out.ETag = rep.header.Get("ETag")
				out.Body, _ = parseFields(rep.body)
			}
			rec.add(final.id, input{Op: opGet, Doc: d}, call, out)
		}
	}

	unknown := 0
	outcomes := map[string]int{}
	for _, op := range rec.ops {
		in, out := op.Input.(input), op.Output.(output)
		if out.Status == 0 {
			unknown++
		}
		key := fmt.Sprintf("%s:%d", in.Op, out.Status)
		if out.Problem != "" {
			key += "/" + out.Problem
		}
		if out.RebasedFrom != "" {
			key += "/rebased"
		}
		outcomes[key]++
	}
	if testing.Verbose() {
		t.Logf("outcomes: %v", outcomes)
	}
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(model.ToModel(), rec.ops, 3*time.Minute)
	took := time.Since(start)
	st.histories++
	st.ops += len(rec.ops)
	st.unknown += unknown
	st.checkTime += took
	st.faults += kills
	if kills > 0 {
		st.faultsBy["kill"] += kills
	}
	t.Logf("history: %d ops (%d unknown) over %d replicas, %d replicas killed and restarted, checked in %v: %s",
		len(rec.ops), unknown, replicas, kills, took.Round(time.Millisecond), res)
	if res != porcupine.Ok {
		path := filepath.Join(os.TempDir(), fmt.Sprintf("patchd-lin-replicas-%d.html", time.Now().UnixNano()))
		if err := porcupine.VisualizePath(model.ToModel(), info, path); err == nil {
			t.Logf("visualization: %s", path)
		}
		if res == porcupine.Illegal {
			dumpIllegal(t, rec.ops, strings.TrimSuffix(path, ".html")+".txt")
		}
		t.Fatalf("history is %s", res)
	}
}

// TestLinearizableReplicas is TestLinearizable over three patchd replicas
// sharing one PostgreSQL database: 16 clients, spread over the replicas,
// edit 8 documents, without faults and with replicas killed with SIGKILL
// and restarted during the run (one at a time), and porcupine checks each
// history against the same model. A replica that served a stale read, or
// lost or reordered a write another replica acknowledged, fails it.
func TestLinearizableReplicas(t *testing.T) {
	needBinary(t)
	runs, dur, opsEach := 1, 4*time.Second, 120
	if *long {
		runs, dur, opsEach = 5, 20*time.Second, 600
	}
	total := &linStats{faultsBy: map[string]int{}}
	for _, tc := range []struct {
		name string
		kill bool
	}{
		{"NoFaults", false},
		{"Kill", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range runs {
				runReplicaHistory(t, linConfig{clients: 16, docs: 8, opsEach: opsEach, duration: dur,
					seed: uint64(time.Now().UnixNano()) + uint64(i)}, tc.kill, total)
			}
		})
	}
	if t.Failed() {
		return
	}
	t.Logf("LINEARIZABILITY (3 PostgreSQL replicas): %d histories, %d operations (%d without an answer), %d replicas killed and restarted, checked in %v total; 0 violations",
		total.histories, total.ops, total.unknown, total.faults, total.checkTime.Round(time.Millisecond))
}
