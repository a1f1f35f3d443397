package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/document"
	"github.com/patchd/patchd/handlers"
	"github.com/patchd/patchd/internal/benchdoc"
	"github.com/patchd/patchd/internal/gctune"
	"github.com/patchd/patchd/store"
	_ "github.com/patchd/patchd/store/bolt" // the embedded file backend
	bolt "go.etcd.io/bbolt"
)

// Server kinds. "patchd" is the server under test; the others are the
// references the targets are stated against.
const (
	kindPatchd      = "patchd"       // handlers + store, as main.go wires them
	kindEcho        = "echo"         // a no-op Echo handler: the HTTP ceiling
	kindNaive       = "naive"        // one bbolt transaction per request, evanphx Apply + SHA-256 inside
	kindNaiveBatch  = "naive-batch"  // the same through db.Batch, 1 ms batch delay
	kindNaiveNoSync = "naive-nosync" // the same without fsync: not durable, an upper bound
)

var serverKinds = []string{kindPatchd, kindEcho, kindNaive, kindNaiveBatch, kindNaiveNoSync}

// serveMain is the "serve" subcommand: it serves one kind of server on
// loopback and prints "listening <addr>" on stdout once it accepts
// connections. The load generator runs each server in a process of its own
// this way, so that its memory can be read from /proc.
func serveMain(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("patchd-load serve", flag.ContinueOnError)
	kind := fs.String("kind", kindPatchd, "server: "+strings.Join(serverKinds, ", "))
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	db := fs.String("db", "", "bbolt file (required except for echo)")
	var sd seed
	fs.StringVar(&sd.coll, "seed-coll", "s1", "collection of the seeded documents (naive servers)")
	fs.IntVar(&sd.n, "seed", 0, "documents to create at start, d0..dN-1 (naive servers)")
	fs.IntVar(&sd.size, "seed-size", 1024, "size of the seeded documents")
	withPprof := fs.Bool("pprof", false, "also serve net/http/pprof under /debug/pprof/")
	var ret store.Retention
	fs.IntVar(&ret.Versions, "history-versions", 0, "patchd: versions kept per document (0: the default)")
	fs.DurationVar(&ret.Age, "history-age", 0, "patchd: versions younger than this are kept (0: the default; negative: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	h, closeFn, err := newServer(*kind, *db, sd, ret, os.Stderr)
	if err != nil {
		return err
	}
	defer closeFn()
	if *withPprof {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.Handle("/", h)
		h = mux
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 120 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "listening %s\n", ln.Addr())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// seed asks a naive server to create documents d0..d(n-1) of collection
// coll at start (benchdoc.Doc(size, i)), in one transaction, so that the
// references need not be filled through their slow write path.
type seed struct {
	coll    string
	n, size int
}

// newServer builds the handler of one kind over a bbolt file at db.
func newServer(kind, db string, sd seed, ret store.Retention, logTo io.Writer) (http.Handler, func(), error) {
	switch kind {
	case kindPatchd:
		if ret.Age < 0 {
			ret.Age = time.Nanosecond // as patchd --history-age 0: by count only
		}
		st, err := store.Open(context.Background(), db, store.Options{Retention: ret})
		if err != nil {
			return nil, nil, err
		}
		log := slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelWarn}))
		if os.Getenv("GOGC") == "" { // as patchd serve does
			go gctune.Run(context.Background(), gctune.DefaultHeadroom, time.Second/4)
		}
		dcfg := document.DefaultConfig()
		dcfg.Logger = log
		hcfg := handlers.DefaultConfig()
		hcfg.Logger = log
		return handlers.New(document.New(st, dcfg), hcfg).Echo(), func() { _ = st.Close() }, nil
	case kindEcho:
		return noopEcho(), func() {}, nil
	case kindNaive, kindNaiveBatch, kindNaiveNoSync:
		n, err := openNaive(db, kind)
		if err != nil {
			return nil, nil, err
		}
		if err := n.seed(sd); err != nil {
			_ = n.db.Close()
			return nil, nil, err
		}
		return n.echo(), func() { _ = n.db.Close() }, nil
	}
	return nil, nil, fmt.Errorf("unknown server kind %q (want one of %s)", kind, strings.Join(serverKinds, ", "))
}

// noopEcho is the ceiling: Echo routing and net/http, nothing else. Writes
// answer 200 with a tiny body and an ETag; a GET with If-None-Match answers
// 304.
func noopEcho() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	h := func(c echo.Context) error {
		c.Response().Header().Set("ETag", `"0"`)
		if c.Request().Method == http.MethodGet && c.Request().Header.Get("If-None-Match") != "" {
			return c.NoContent(http.StatusNotModified)
		}
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, []byte(`{}`))
	}
	e.Any("/docs/:c/:id", h)
	return e
}

// naive is the reference durable handler: each write is one
// bbolt transaction that reads the document, checks If-Match, applies the
// JSON Patch with evanphx/json-patch, hashes the result with SHA-256 and
// stores it. Records are the 64 hex digits of the hash, then the body.
// Business outcomes (412, 404, 422) are results, never transaction errors,
// so that db.Batch does not re-run the other functions of a batch.
type naive struct {
	db    *bolt.DB
	batch bool
	opts  *jsonpatch.ApplyOptions
}

var naiveBucket = []byte("docs")

func openNaive(path, kind string) (*naive, error) {
	if path == "" {
		return nil, errors.New("serve: -db is required")
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, err
	}
	db.NoSync = kind == kindNaiveNoSync
	db.MaxBatchDelay = time.Millisecond
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(naiveBucket)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, err
	}
	opts := jsonpatch.NewApplyOptions()
	opts.SupportNegativeIndices = false
	opts.AccumulatedCopySizeLimit = 1 << 20
	opts.EscapeHTML = false
	return &naive{db: db, batch: kind == kindNaiveBatch, opts: opts}, nil
}

func (n *naive) seed(sd seed) error {
	return n.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(naiveBucket)
		for i := range sd.n {
			if err := b.Put([]byte(fmt.Sprintf("%s/d%d", sd.coll, i)), naiveRecord(benchdoc.Doc(sd.size, i))); err != nil {
				return err
			}
		}
		return nil
	})
}

func (n *naive) update(fn func(tx *bolt.Tx) error) error {
	if n.batch {
		return n.db.Batch(fn)
	}
	return n.db.Update(fn)
}

func (n *naive) echo() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.GET("/docs/:c/:id", n.get)
	e.PUT("/docs/:c/:id", n.put)
	e.PATCH("/docs/:c/:id", n.patch)
	return e
}

func naiveKey(c echo.Context) []byte { return []byte(c.Param("c") + "/" + c.Param("id")) }

func naiveETag(rec []byte) string { return `"` + string(rec[:64]) + `"` }

func naiveRecord(body []byte) []byte {
	sum := sha256.Sum256(body)
	rec := make([]byte, 64, 64+len(body))
	hex.Encode(rec, sum[:])
	return append(rec, body...)
}

func (n *naive) get(c echo.Context) error {
	var rec []byte
	if err := n.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(naiveBucket).Get(naiveKey(c)); v != nil {
			rec = append([]byte(nil), v...)
		}
		return nil
	}); err != nil {
		return err
	}
	if rec == nil {
		return c.NoContent(http.StatusNotFound)
	}
	c.Response().Header().Set("ETag", naiveETag(rec))
	if c.Request().Header.Get("If-None-Match") == naiveETag(rec) {
		return c.NoContent(http.StatusNotModified)
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, rec[64:])
}

func (n *naive) put(c echo.Context) error {
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, 2<<20))
	if err != nil {
		return err
	}
	var rec []byte
	if err := n.update(func(tx *bolt.Tx) error {
		rec = naiveRecord(body)
		return tx.Bucket(naiveBucket).Put(naiveKey(c), rec)
	}); err != nil {
		return err
	}
	c.Response().Header().Set("ETag", naiveETag(rec))
	return c.Blob(http.StatusCreated, echo.MIMEApplicationJSON, body)
}

func (n *naive) patch(c echo.Context) error {
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, 2<<20))
	if err != nil {
		return err
	}
	ifMatch := c.Request().Header.Get("If-Match")
	var (
		status int
		rec    []byte
	)
	err = n.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(naiveBucket)
		key := naiveKey(c)
		cur := b.Get(key)
		switch {
		case cur == nil:
			status = http.StatusNotFound
			return nil
		case ifMatch != naiveETag(cur):
			status, rec = http.StatusPreconditionFailed, append([]byte(nil), cur[:64]...)
			return nil
		}
		p, err := jsonpatch.DecodePatch(body)
		if err != nil {
			status = http.StatusBadRequest
			return nil
		}
		out, err := p.ApplyWithOptions(cur[64:], n.opts)
		if err != nil {
			status = http.StatusUnprocessableEntity
			return nil
		}
		status, rec = http.StatusOK, naiveRecord(out)
		return b.Put(key, rec)
	})
	if err != nil {
		return err
	}
	if rec != nil {
		c.Response().Header().Set("ETag", naiveETag(rec))
	}
	if status != http.StatusOK {
		return c.NoContent(status)
	}
	return c.Blob(status, echo.MIMEApplicationJSON, rec[64:])
}

// server is a running server process (or, with -inproc, goroutine).
type server struct {
	kind string
	base string // http://addr
	db   string // bbolt file, "" for echo or an external server
	pid  int    // 0 when not a child process
	stop func() error
}

// startServer starts a server of the given kind. With bin set (patchd
// only), it runs that patchd binary; with inproc, it serves from this
// process; otherwise it runs this program's serve subcommand.
func startServer(ctx context.Context, kind, dir, bin string, inproc bool, sd seed, ret store.Retention, withPprof bool) (*server, error) {
	db := ""
	if kind != kindEcho {
		db = filepath.Join(dir, kind+".db")
	}
	if inproc {
		h, closeFn, err := newServer(kind, db, sd, ret, io.Discard)
		if err != nil {
			return nil, err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			closeFn()
			return nil, err
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		return &server{kind: kind, base: "http://" + ln.Addr().String(), db: db, stop: func() error {
			err := srv.Close()
			closeFn()
			return err
		}}, nil
	}
	var cmd *exec.Cmd
	if bin != "" {
		args := []string{"--addr", "127.0.0.1:0", "--db", db}
		if ret.Versions > 0 {
			args = append(args, "--history-versions", strconv.Itoa(ret.Versions))
		}
		switch {
		case ret.Age < 0:
			args = append(args, "--history-age", "0")
		case ret.Age > 0:
			args = append(args, "--history-age", ret.Age.String())
		}
		cmd = exec.CommandContext(ctx, bin, args...)
	} else {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		// #nosec G204 -- this very binary, as a server subprocess
		cmd = exec.CommandContext(ctx, self, "serve", "-kind", kind, "-db", db,
			"-seed-coll", sd.coll, "-seed", strconv.Itoa(sd.n), "-seed-size", strconv.Itoa(sd.size), "-pprof="+strconv.FormatBool(withPprof),
			"-history-versions", strconv.Itoa(ret.Versions), "-history-age", ret.Age.String())
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 15 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	addrc := make(chan string, 2)
	// serve prints "listening <addr>" on stdout; patchd logs a JSON
	// "serving" line with the address on stderr.
	// The scanners read every line the server logs (patchd logs one per
	// request at its default level) on the cores the server runs on, so
	// they parse only what they must: JSON until the address is known.
	var found atomic.Bool
	scan := func(r io.Reader) {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			line := sc.Bytes()
			if !found.Load() {
				if a, ok := bytes.CutPrefix(line, []byte("listening ")); ok {
					found.Store(true)
					addrc <- string(a)
					continue
				}
				var l struct{ Msg, Addr string }
				if json.Unmarshal(line, &l) == nil && l.Msg == "serving" {
					found.Store(true)
					addrc <- l.Addr
					continue
				}
			}
			// Requests cut off at the end of a run are logged as errors
			// with "context canceled"; they are expected.
			if (bytes.Contains(line, []byte("level=WARN")) || bytes.Contains(line, []byte("level=ERROR")) || bytes.Contains(line, []byte(`"level":"ERROR"`))) &&
				!bytes.Contains(line, []byte("context canceled")) {
				fmt.Fprintf(os.Stderr, "[%s] %s\n", kind, line)
			}
		}
	}
	go scan(stdout)
	go scan(stderr)
	stop := func() error {
		_ = cmd.Process.Signal(os.Interrupt)
		return cmd.Wait()
	}
	select {
	case a := <-addrc:
		return &server{kind: kind, base: "http://" + a, db: db, pid: cmd.Process.Pid, stop: stop}, nil
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("%s server did not start", kind)
	}
}

// memory returns the peak and current resident size of a child server in
// bytes, from /proc (zero when unknown).
func (s *server) memory() (peak, cur int64) {
	m := s.status()
	return m.hwm, m.rss
}

// memStatus is a child server's resident memory, in bytes: in all, and
// split into anonymous memory (the Go heap and stacks) and file pages
// (mostly the bbolt file, which is mapped into memory).
type memStatus struct {
	hwm, rss, anon, file int64
}

func (s *server) status() memStatus {
	var m memStatus
	if s.pid == 0 {
		return m
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		return m
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmHWM:":
			m.hwm = kb << 10
		case "VmRSS:":
			m.rss = kb << 10
		case "RssAnon:":
			m.anon = kb << 10
		case "RssFile:":
			m.file = kb << 10
		}
	}
	return m
}

// watchMemory samples a child server's memory every 100 ms until ctx is
// done, keeping the peaks of its anonymous and file-backed parts.
func (s *server) watchMemory(ctx context.Context) *memPeaks {
	p := &memPeaks{}
	if s.pid == 0 {
		return p
	}
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			m := s.status()
			p.mu.Lock()
			p.anon, p.file = max(p.anon, m.anon), max(p.file, m.file)
			p.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return p
}

// memPeaks are the largest samples watchMemory saw.
type memPeaks struct {
	mu         sync.Mutex
	anon, file int64
}

func (p *memPeaks) get() (anon, file int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.anon, p.file
}

// cpu returns the CPU time a child server has used so far, user and
// system, all its threads (ok false when unknown: not a child, or no
// /proc). Linux reports it in USER_HZ, 100 ticks a second everywhere.
func (s *server) cpu() (d time.Duration, ok bool) {
	if s.pid == 0 {
		return 0, false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.pid))
	if err != nil {
		return 0, false
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses,
	// so the fields are counted from the last ')'; utime and stime are
	// the 14th and 15th fields, the 12th and 13th after it.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	const userHZ = 100
	return time.Duration(utime+stime) * time.Second / userHZ, true
}

// fileSize returns the size of the server's database file, or 0.
func (s *server) fileSize() int64 {
	if s.db == "" {
		return 0
	}
	fi, err := os.Stat(s.db)
	if err != nil {
		return 0
	}
	return fi.Size()
}
