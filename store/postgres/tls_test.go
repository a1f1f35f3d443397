package postgres_test

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
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/postgres"
	"github.com/patchd/patchd/store/postgres/pgtest"
	"github.com/patchd/patchd/store/storetest"
)

// tcpURL returns the URL of database name of c over TCP, with query q.
func tcpURL(t *testing.T, c *pgtest.Cluster, dsn string, q string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("postgres://postgres@%s%s?%s", c.Addr(), u.Path, q)
}

// TestTLS: a store reaches PostgreSQL over TLS, verifying its certificate
// (sslmode=verify-full), and every connection of its pool is encrypted.
// With a root certificate that did not sign the server's, Open fails, and
// not with ErrUnavailable: a configuration mistake, which no wait mends,
// so that a replica exits with it instead of waiting.
func TestTLS(t *testing.T) {
	c := pg.Own(t, pgtest.Options{TLS: true})
	dsn, err := c.CreateDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, tcpURL(t, c, dsn, "sslmode=verify-full&sslrootcert="+url.QueryEscape(c.RootCert())), postgres.Options{})
	storetest.Commit(t, s, "c", "d", &store.Change{Body: []byte(`{}`), Kind: store.KindPut})
	var plain int
	if err := s.Pool().QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
		WHERE a.datname = current_database() AND a.application_name = 'patchd' AND NOT s.ssl`).Scan(&plain); err != nil || plain != 0 {
		t.Fatalf("%d connections of the store without TLS (%v)", plain, err)
	}

	other := filepath.Join(t.TempDir(), "other.crt")
	writeCA(t, other)
	_, err = postgres.Open(context.Background(), tcpURL(t, c, dsn, "sslmode=verify-full&sslrootcert="+url.QueryEscape(other)), postgres.Options{})
	if err == nil || errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Open with the wrong root certificate: %v, want a certificate error that is not ErrUnavailable", err)
	}
}

// writeCA writes a self-signed certificate authority's certificate to path.
func writeCA(t *testing.T, path string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "another CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
