package dump

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Progress reports how far an export or import has gone. On a terminal it
// redraws one bar line (at most ten times a second); elsewhere it writes a
// plain count line every Interval. Its methods are safe for concurrent use.
type Progress struct {
	w        io.Writer
	terminal bool
	total    int64  // 0 when unknown
	unit     string // what is counted, for the plain lines
	format   func(int64) string
	interval time.Duration
	now      func() time.Time

	mu   sync.Mutex
	done int64
	last time.Time
}

// NewProgress returns a Progress writing to w. terminal says whether w is
// a terminal; total is the expected count (0 when unknown); unit names the
// thing counted ("documents", "bytes"). Plain lines come every 10 seconds.
func NewProgress(w io.Writer, terminal bool, total int64, unit string) *Progress {
	p := &Progress{w: w, terminal: terminal, total: total, unit: unit, interval: 10 * time.Second, now: time.Now}
	p.format = func(n int64) string { return fmt.Sprint(n) }
	if unit == "bytes" {
		p.format = formatBytes
	}
	p.last = p.now()
	return p
}

// Add counts n more.
func (p *Progress) Add(n int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	now := p.now()
	every := p.interval
	if p.terminal {
		every = 100 * time.Millisecond
	}
	if now.Sub(p.last) < every {
		return
	}
	p.last = now
	p.draw()
}

// Done draws the final state; on a terminal it ends the bar's line.
func (p *Progress) Done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.terminal {
		p.draw()
		fmt.Fprintln(p.w)
	}
}

// draw writes the current state. p.mu is held.
func (p *Progress) draw() {
	if !p.terminal {
		fmt.Fprintf(p.w, "%s %s\n", p.format(p.done), p.unit)
		return
	}
	const width = 30
	if p.total <= 0 {
		fmt.Fprintf(p.w, "\r%s %s", p.format(p.done), p.unit)
		return
	}
	frac := float64(p.done) / float64(p.total)
	frac = min(frac, 1)
	full := int(frac * width)
	fmt.Fprintf(p.w, "\r[%s%s] %3d%% %s/%s %s", strings.Repeat("#", full), strings.Repeat("-", width-full),
		int(frac*100), p.format(p.done), p.format(p.total), p.unit)
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}
