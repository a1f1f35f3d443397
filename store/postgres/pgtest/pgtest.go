// Package pgtest runs a throwaway PostgreSQL server for tests and
// benchmarks, from the binaries of a local installation (Debian's
// postgresql package), or uses an existing server named by an environment
// variable.
//
// A package's tests share one server through TestMain:
//
//	var pg pgtest.Env
//
//	func TestMain(m *testing.M) { os.Exit(pg.Run(m)) }
//
//	func TestX(t *testing.T) {
//		dsn := pg.Database(t) // a new, empty database; skips without a server
//		...
//	}
//
// Environment:
//
//	PATCHD_TEST_POSTGRES     URL of an existing server to use instead (its
//	                         user needs CREATEDB); a database is made per test
//	PATCHD_PG_BINDIR         where initdb and postgres are (default: pg_config
//	                         --bindir, then /usr/lib/postgresql/*/bin)
//	PATCHD_REQUIRE_POSTGRES  when 1, a test that would skip for want of a
//	                         server fails instead (CI sets it)
package pgtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Environment variables read by this package.
const (
	EnvServer  = "PATCHD_TEST_POSTGRES"
	EnvBinDir  = "PATCHD_PG_BINDIR"
	EnvRequire = "PATCHD_REQUIRE_POSTGRES"
)

// ErrNoServer means neither an existing server nor PostgreSQL binaries were
// found.
var ErrNoServer = errors.New("no PostgreSQL: set " + EnvServer + " to a server URL, or install PostgreSQL (apt-get install postgresql)")

// Options configures Start.
type Options struct {
	// Durable keeps PostgreSQL's defaults (fsync and synchronous_commit
	// on), for benchmarks. Tests leave it false: a throwaway server need
	// not survive a crash of the machine.
	Durable bool
	// Settings are extra server settings (name, value), such as
	// max_connections.
	Settings map[string]string
	// TCP makes the server listen on 127.0.0.1 too, at a free port (see
	// Addr), besides its Unix socket.
	TCP bool
	// TLS makes it listen on 127.0.0.1 with TLS, with a server certificate
	// for 127.0.0.1 and localhost signed by a certificate authority of its
	// own (see RootCert).
	TLS bool
}

// Cluster is a PostgreSQL server: a throwaway one started by Start, or an
// existing one named by PATCHD_TEST_POSTGRES.
type Cluster struct {
	admin  string // URL of the maintenance database
	dir    string // temporary directory of a throwaway server; "" otherwise
	bindir string
	cred   *syscall.Credential // who runs the server when we are root
	args   []string            // the postmaster's arguments
	port   int                 // its TCP port on 127.0.0.1; 0 for none
	n      atomic.Int64        // databases made so far

	mu     sync.Mutex
	cmd    *exec.Cmd     // the postmaster of a throwaway server; nil while down
	exited chan struct{} // closed when cmd has exited
	frozen bool          // stopped with SIGSTOP (Freeze)
}

// ErrNotLocal means an operation that needs a throwaway server (stopping,
// starting, freezing it) was asked of an existing one.
var ErrNotLocal = errors.New("pgtest: not a throwaway server")

// BinDir returns the directory of the PostgreSQL binaries found, or "".
func BinDir() string {
	if d := os.Getenv(EnvBinDir); d != "" {
		return d
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		d := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return majorOf(b) - majorOf(a) }) // newest first
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	return ""
}

// majorOf returns the major version in a path like /usr/lib/postgresql/15/bin.
func majorOf(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// Start returns the server named by PATCHD_TEST_POSTGRES if set, or starts
// a throwaway one. It returns ErrNoServer if there is neither.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if u := os.Getenv(EnvServer); u != "" {
		c := &Cluster{admin: u}
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			return nil, fmt.Errorf("pgtest: %s: %w", EnvServer, err)
		}
		_ = conn.Close(ctx)
		return c, nil
	}
	bindir := BinDir()
	if bindir == "" {
		return nil, ErrNoServer
	}
	return startLocal(ctx, bindir, opts)
}

// startLocal initializes and starts a server in a new temporary directory.
func startLocal(ctx context.Context, bindir string, opts Options) (_ *Cluster, err error) {
	c, err := newLocal(bindir, opts)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(c.dir)
		}
	}()
	// #nosec G204 -- initdb from the PostgreSQL installation BinDir found, on our own temporary directory
	initdb := exec.CommandContext(ctx, filepath.Join(bindir, "initdb"),
		"-D", c.data(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	if opts.TLS {
		if err := c.makeCertificates(); err != nil {
			return nil, err
		}
	}
	if err := c.Up(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// newLocal prepares a throwaway server in a new temporary directory: its
// owner, settings and arguments. The directory is short (a socket path is
// limited to 107 bytes) and owned by the user that runs the server: as
// root that is postgres (or nobody), since PostgreSQL refuses to run as
// root.
func newLocal(bindir string, opts Options) (_ *Cluster, err error) {
	dir, err := os.MkdirTemp("", "patchd-pg")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, bindir: bindir}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	if os.Geteuid() == 0 {
		u, lerr := user.Lookup("postgres")
		if lerr != nil {
			u, lerr = user.Lookup("nobody")
		}
		if lerr != nil {
			return nil, fmt.Errorf("pgtest: running as root and no postgres or nobody user: %w", lerr)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}
		if err := os.Chown(dir, int(uid), int(gid)); err != nil {
			return nil, err
		}
	}
	settings := map[string]string{
		"listen_addresses":        "",
		"unix_socket_directories": dir,
		"max_connections":         "200",
		"log_min_messages":        "warning",
	}
	if opts.TCP || opts.TLS {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		c.port = port
		settings["listen_addresses"] = "127.0.0.1"
		settings["port"] = strconv.Itoa(port)
	}
	if opts.TLS {
		settings["ssl"] = "on"
		settings["ssl_cert_file"] = "server.crt"
		settings["ssl_key_file"] = "server.key"
	}
	if !opts.Durable {
		settings["fsync"] = "off"
		settings["synchronous_commit"] = "off"
		settings["full_page_writes"] = "off"
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	c.args = []string{"-D", c.data()}
	for _, k := range slices.Sorted(mapKeys(settings)) {
		c.args = append(c.args, "-c", k+"="+settings[k])
	}
	q := url.Values{"host": {dir}, "sslmode": {"disable"}}
	if c.port != 0 {
		q.Set("port", strconv.Itoa(c.port))
	}
	c.admin = (&url.URL{Scheme: "postgres", User: url.User("postgres"), Path: "/postgres", RawQuery: q.Encode()}).String()
	return c, nil
}

// data is the data directory of a throwaway server.
func (c *Cluster) data() string { return filepath.Join(c.dir, "data") }

// freePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Addr returns the TCP address (127.0.0.1:port) of a throwaway server
// started with Options.TCP or TLS, or "".
func (c *Cluster) Addr() string {
	if c.port == 0 {
		return ""
	}
	return "127.0.0.1:" + strconv.Itoa(c.port)
}

// RootCert returns the file of the certificate authority that signed the
// server certificate of a server started with Options.TLS, or "".
func (c *Cluster) RootCert() string {
	if c.dir == "" || c.port == 0 {
		return ""
	}
	p := filepath.Join(c.dir, "root.crt")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// makeCertificates writes a certificate authority (root.crt, for clients)
// and a server certificate for 127.0.0.1 and localhost that it signed
// (server.crt and server.key in the data directory, owned by the server's
// user and private, as PostgreSQL demands).
func (c *Cluster) makeCertificates() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pgtest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	write := func(path, typ string, b []byte, mode os.FileMode, server bool) error {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), mode); err != nil {
			return err
		}
		if server && c.cred != nil {
			return os.Chown(path, int(c.cred.Uid), int(c.cred.Gid))
		}
		return nil
	}
	if err := write(filepath.Join(c.dir, "root.crt"), "CERTIFICATE", caDER, 0o644, false); err != nil {
		return err
	}
	if err := write(filepath.Join(c.data(), "server.crt"), "CERTIFICATE", der, 0o644, true); err != nil {
		return err
	}
	return write(filepath.Join(c.data(), "server.key"), "EC PRIVATE KEY", keyDER, 0o600, true)
}

// Standby makes a streaming standby of a throwaway server started with
// Options.TCP (with pg_basebackup), in a new temporary directory, listening
// on a port of its own, and starts it. The primary waits for it to confirm
// each commit when its settings say so (synchronous_standby_names). The
// caller stops it.
func (c *Cluster) Standby(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if c.dir == "" || c.port == 0 {
		return nil, ErrNotLocal
	}
	opts.TCP = true
	s, err := newLocal(c.bindir, opts)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(s.dir)
		}
	}()
	// #nosec G204 -- pg_basebackup from BinDir, into our own temporary directory
	bb := exec.CommandContext(ctx, filepath.Join(c.bindir, "pg_basebackup"),
		"-h", c.dir, "-p", strconv.Itoa(c.port), "-U", "postgres", "-D", s.data(), "-R", "-X", "stream", "-c", "fast", "--no-sync")
	bb.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	if out, err := bb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgtest: pg_basebackup: %w\n%s", err, out)
	}
	if err := s.Up(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Promote makes a standby a primary, and waits until it accepts writes.
func (c *Cluster) Promote(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, c.admin)
	if err != nil {
		return fmt.Errorf("pgtest: promote: %w", err)
	}
	defer conn.Close(ctx)
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_promote(true, 60)`).Scan(&ok); err != nil || !ok {
		return fmt.Errorf("pgtest: promote: %v (promoted: %v)", err, ok)
	}
	return nil
}

// Up starts the postmaster of a throwaway server (again, after Down) and
// waits until it accepts connections.
func (c *Cluster) Up(ctx context.Context) error {
	if c.dir == "" {
		return ErrNotLocal
	}
	c.mu.Lock()
	if c.cmd != nil {
		c.mu.Unlock()
		return errors.New("pgtest: the server is up already")
	}
	logf, err := os.OpenFile(filepath.Join(c.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600) // #nosec G304 -- in the temporary directory made by Start
	if err != nil {
		c.mu.Unlock()
		return err
	}
	defer logf.Close()
	// Not CommandContext: the server outlives ctx, until Stop. If this
	// process dies first, the server gets SIGQUIT (immediate shutdown).
	cmd := exec.Command(filepath.Join(c.bindir, "postgres"), c.args...) // #nosec G204 -- the PostgreSQL server from BinDir, with settings from the test
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	if err := cmd.Start(); err != nil {
		c.mu.Unlock()
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	c.cmd, c.exited = cmd, exited
	c.mu.Unlock()

	// Wait until it accepts connections.
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, cerr := pgx.Connect(cctx, c.admin)
		cancel()
		if cerr == nil {
			_ = conn.Close(ctx)
			return nil
		}
		select {
		case <-exited:
			c.mu.Lock()
			c.cmd = nil
			c.mu.Unlock()
			return fmt.Errorf("pgtest: postgres exited at start:\n%s", c.Log())
		case <-ctx.Done():
			c.Stop()
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.Stop()
			return fmt.Errorf("pgtest: postgres not ready after 30s: %v\n%s", cerr, c.Log())
		}
	}
}

// Down stops a throwaway server as an operator's fast shutdown does
// (SIGINT: sessions are ended, the data is kept), and waits until it has
// exited. Up starts it again.
func (c *Cluster) Down() error {
	if c.dir == "" {
		return ErrNotLocal
	}
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.cmd = nil
	if c.frozen && cmd != nil {
		thaw(cmd.Process.Pid)
		c.frozen = false
	}
	c.mu.Unlock()
	if cmd == nil {
		return errors.New("pgtest: the server is down already")
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	return nil
}

// Freeze stops every process of a throwaway server with SIGSTOP: it
// accepts connections (the kernel queues them) but answers nothing, as a
// server stalled on its disk or its host would. Thaw resumes it; Stop and
// Down thaw it first. Callers arrange a Thaw in their cleanup. It reads
// /proc to find the server's processes (Linux).
func (c *Cluster) Freeze() error {
	if c.dir == "" {
		return ErrNotLocal
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return errors.New("pgtest: the server is down")
	}
	// The postmaster first, so that it starts no process meanwhile; each
	// backend is a process group of its own.
	pid := c.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("pgtest: freeze: %w", err)
	}
	c.frozen = true
	kids, err := children(pid)
	if err != nil {
		return fmt.Errorf("pgtest: freeze: %w", err)
	}
	for _, k := range kids {
		_ = syscall.Kill(k, syscall.SIGSTOP) // one that exited meanwhile needs nothing
	}
	return nil
}

// Thaw resumes a server stopped by Freeze.
func (c *Cluster) Thaw() error {
	if c.dir == "" {
		return ErrNotLocal
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil || !c.frozen {
		return nil
	}
	thaw(c.cmd.Process.Pid)
	c.frozen = false
	return nil
}

// thaw sends SIGCONT to the children of pid, then to pid.
func thaw(pid int) {
	kids, _ := children(pid)
	for _, k := range kids {
		_ = syscall.Kill(k, syscall.SIGCONT)
	}
	_ = syscall.Kill(pid, syscall.SIGCONT)
}

// children returns the processes whose parent is pid, from /proc.
func children(pid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")) // #nosec G304 -- a /proc entry
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out, nil
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Log returns the server's log of a throwaway server.
func (c *Cluster) Log() string {
	if c.dir == "" {
		return ""
	}
	b, _ := os.ReadFile(filepath.Join(c.dir, "server.log"))
	return string(b)
}

// Local reports whether the server is a throwaway one started here.
func (c *Cluster) Local() bool { return c.dir != "" }

// SocketDir returns the socket directory of a throwaway server, or "".
func (c *Cluster) SocketDir() string { return c.dir }

// BinDir returns the binaries directory of a throwaway server, or "".
func (c *Cluster) BinDir() string { return c.bindir }

// AdminURL returns the URL of the server's maintenance database.
func (c *Cluster) AdminURL() string { return c.admin }

// Stop stops a throwaway server at once (immediate shutdown) and removes
// its files. For an existing server it does nothing.
func (c *Cluster) Stop() {
	if c.dir == "" {
		return
	}
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.cmd = nil
	if c.frozen && cmd != nil {
		thaw(cmd.Process.Pid)
		c.frozen = false
	}
	c.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	_ = os.RemoveAll(c.dir)
}

// CreateDatabase makes a new empty database and returns its URL.
func (c *Cluster) CreateDatabase(ctx context.Context) (string, error) {
	// Unique across Clusters naming one server, and across processes.
	name := fmt.Sprintf("patchd_test_%d_%d_%08x", os.Getpid(), c.n.Add(1), mrand.Uint32()) // #nosec G404 -- only to make the name unique, not a secret
	conn, err := pgx.Connect(ctx, c.admin)
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("pgtest: create database: %w", err)
	}
	return withDatabase(c.admin, name)
}

// DropDatabase drops a database made by CreateDatabase, disconnecting its
// sessions.
func (c *Cluster) DropDatabase(ctx context.Context, dsn string) error {
	u, err := url.Parse(dsn)
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, c.admin)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{strings.TrimPrefix(u.Path, "/")}.Sanitize()+" WITH (FORCE)")
	return err
}

// withDatabase returns the URL u with its database replaced by name.
func withDatabase(u, name string) (string, error) {
	p, err := url.Parse(u)
	if err != nil {
		return "", fmt.Errorf("pgtest: %s is not a URL: %w", EnvServer, err)
	}
	p.Path = "/" + name
	return p.String(), nil
}

// Env is the server shared by one package's tests. The zero value is
// ready for Run.
type Env struct {
	mu      sync.Mutex
	cluster *Cluster
	reason  error // why there is no cluster
}

// Run starts the server (or finds none), runs the tests, stops the server
// and returns m.Run's exit code. Call it from TestMain.
func (e *Env) Run(m *testing.M) int {
	return e.RunWith(m, Options{})
}

// RunWith is Run with server options.
func (e *Env) RunWith(m *testing.M, opts Options) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	c, err := Start(ctx, opts)
	cancel()
	e.mu.Lock()
	e.cluster, e.reason = c, err
	e.mu.Unlock()
	code := m.Run()
	if c != nil {
		c.Stop()
	}
	return code
}

// Own starts a throwaway server for t alone, stopped when t ends, so that
// t may stop, start or freeze it without disturbing other tests. It needs
// the PostgreSQL binaries (an existing server named by
// PATCHD_TEST_POSTGRES cannot be stopped): without them it skips t, or
// fails it when PATCHD_REQUIRE_POSTGRES=1.
func (e *Env) Own(t testing.TB, opts Options) *Cluster {
	t.Helper()
	bindir := BinDir()
	if bindir == "" {
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("PostgreSQL binaries required (%s=1): %v", EnvRequire, ErrNoServer)
		}
		t.Skipf("skipping: %v", ErrNoServer)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := startLocal(ctx, bindir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

// Cluster returns the shared server, or skips t (fails it when
// PATCHD_REQUIRE_POSTGRES=1) if there is none.
func (e *Env) Cluster(t testing.TB) *Cluster {
	t.Helper()
	e.mu.Lock()
	c, reason := e.cluster, e.reason
	e.mu.Unlock()
	if c != nil {
		return c
	}
	if reason == nil {
		reason = errors.New("pgtest: Env.Run was not called from TestMain")
	}
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("PostgreSQL required (%s=1): %v", EnvRequire, reason)
	}
	t.Skipf("skipping: %v", reason)
	return nil
}

// Database returns the URL of a new empty database on the shared server,
// dropped when t ends; it skips or fails t as Cluster does.
func (e *Env) Database(t testing.TB) string {
	t.Helper()
	c := e.Cluster(t)
	dsn, err := c.CreateDatabase(context.Background())
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
