package dump

import (
	"strings"
	"testing"
	"time"
)

func TestProgress(t *testing.T) {
	// A fake clock: each call moves time on by a second.
	clock := func() func() time.Time {
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		return func() time.Time { now = now.Add(time.Second); return now }
	}
	t.Run("Terminal", func(t *testing.T) {
		var out strings.Builder
		p := NewProgress(&out, true, 200, "documents")
		p.now, p.last = clock(), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		p.Add(50)
		p.Add(150)
		p.Done()
		got := out.String()
		for _, want := range []string{"\r[#######-----------------------]  25% 50/200 documents",
			"\r[##############################] 100% 200/200 documents", "\n"} {
			if !strings.Contains(got, want) {
				t.Errorf("output %q lacks %q", got, want)
			}
		}
	})
	t.Run("Plain", func(t *testing.T) {
		var out strings.Builder
		p := NewProgress(&out, false, 3<<20, "bytes")
		p.now, p.last = clock(), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		p.interval = 2 * time.Second
		p.Add(1 << 20) // 1s after start: too soon
		p.Add(1 << 20) // 2s: a line
		p.Done()       // nothing more: the caller prints the final count
		if got, want := out.String(), "2.0MiB bytes\n"; got != want {
			t.Fatalf("output %q, want %q", got, want)
		}
		if strings.Contains(out.String(), "\r") {
			t.Fatal("a carriage return off a terminal")
		}
	})
	t.Run("Nil", func(t *testing.T) {
		var p *Progress
		p.Add(1)
		p.Done()
	})
}
