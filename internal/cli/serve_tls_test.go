package cli

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// selfSigned writes a certificate for 127.0.0.1 and its key to dir and
// returns their paths and a pool that trusts the certificate.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "patchd test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestTLSServesHTTP2: with --tls-cert and --tls-key the server speaks
// HTTPS with HTTP/2, and one client connection carries several change
// feed streams (of both routes) and ordinary requests at once.
func TestTLSServesHTTP2(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--db", filepath.Join(dir, "p.db"),
			"--tls-cert", certFile, "--tls-key", keyFile, "--max-streams-per-client", "3"}, noEnv, io.Discard, ready)
	}()
	var base string
	select {
	case addr := <-ready:
		base = "https://" + addr
	case err := <-done:
		t.Fatalf("run: %v", err)
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	defer client.CloseIdleConnections()

	var (
		mu    sync.Mutex
		conns = map[string]bool{} // local addresses of the connections used
	)
	do := func(method, path, body string, hdr ...string) *http.Response {
		t.Helper()
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			mu.Lock()
			conns[i.Conn.LocalAddr().String()] = true
			mu.Unlock()
		}}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		if res.ProtoMajor != 2 {
			t.Fatalf("%s %s: %s, want HTTP/2", method, path, res.Proto)
		}
		return res
	}
	jsonType := []string{"Content-Type", "application/json"}
	res := do("PUT", "/docs/c/d", `{"n":0}`, jsonType...)
	res.Body.Close()
	// Three streams on the one connection, then writes and reads beside
	// them; every stream sees what it follows.
	var streams []*bufio.Reader
	for _, s := range []struct{ method, path, body string }{
		{"GET", "/docs/c/d/events", ""},
		{"POST", "/events", `{"docs":[{"c":"c","id":"d"}]}`},
		{"POST", "/events", `{"collections":[{"c":"c"}]}`},
	} {
		res := do(s.method, s.path, s.body, jsonType...)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %d", s.method, s.path, res.StatusCode)
		}
		defer res.Body.Close()
		streams = append(streams, bufio.NewReader(res.Body))
	}
	for i := 1; i <= 3; i++ {
		res := do("PATCH", "/docs/c/d", fmt.Sprintf(`{"n":%d}`, i), "Content-Type", "application/merge-patch+json", "If-Match", "*")
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("PATCH: %d", res.StatusCode)
		}
		res = do("GET", "/docs/c/d", "")
		res.Body.Close()
	}
	res = do("PUT", "/docs/c/e", `{}`, jsonType...)
	res.Body.Close()
	for i, want := range []string{`"seq":4`, `"id":"d","kind":"merge-patch"`, `"id":"e"`} {
		for {
			line, err := streams[i].ReadString('\n')
			if err != nil {
				t.Fatalf("stream %d: %v", i, err)
			}
			if strings.HasPrefix(line, "data: ") && strings.Contains(line, want) {
				break
			}
		}
	}
	// A fourth stream of this client is past --max-streams-per-client.
	res = do("GET", "/docs/c/d/events", "")
	res.Body.Close()
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
		t.Fatalf("fourth stream: %d, Retry-After %q", res.StatusCode, res.Header.Get("Retry-After"))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(conns) != 1 {
		t.Fatalf("requests went over %d connections, want one: %v", len(conns), conns)
	}
}
