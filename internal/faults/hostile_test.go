package faults

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/patchd/patchd/internal/hostile"
)

// TestHostileBinary replays the hostile corpus (testdata/hostile) against
// the real binary with its default limits and timeouts, as wired by
// main.go, with authentication on: each request carries a valid token.
func TestHostileBinary(t *testing.T) {
	needBinary(t)
	tokens := filepath.Join(t.TempDir(), "tokens")
	const tok = "hostile-corpus-token-0123456789"
	if err := writeFile(tokens, tok+" write\n"); err != nil {
		t.Fatal(err)
	}
	srv := startPatchd(t, "--tokens", tokens)
	c, err := hostile.Load(filepath.Join("..", "..", "testdata", "hostile", "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	res := hostile.Run(t, c, hostile.Options{Addr: srv.Addr(), Bound: 10 * time.Second,
		Header: [][2]string{{"Authorization", "Bearer " + tok}}})
	t.Logf("HOSTILE (binary): %d requests, slowest %v (%s)", res.Cases, res.Slowest.Round(time.Millisecond), res.SlowestCase)
}
