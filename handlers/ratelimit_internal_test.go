package handlers

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestRateLimiterBucket(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newRateLimiter(2, 4, func() time.Time { return now })
	for i := range 4 {
		if ok, _ := l.allow("a"); !ok {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	ok, wait := l.allow("a")
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("past the burst: ok=%v wait=%v, want refused, 500ms", ok, wait)
	}
	// Other clients have their own buckets.
	if ok, _ := l.allow("b"); !ok {
		t.Fatal("another client refused")
	}
	now = now.Add(250 * time.Millisecond)
	if ok, wait := l.allow("a"); ok || wait != 250*time.Millisecond {
		t.Fatalf("after 250ms: ok=%v wait=%v", ok, wait)
	}
	now = now.Add(250 * time.Millisecond)
	if ok, _ := l.allow("a"); !ok {
		t.Fatal("after 500ms: refused")
	}
	// A long pause refills to the burst, not beyond.
	now = now.Add(time.Hour)
	for i := range 4 {
		if ok, _ := l.allow("a"); !ok {
			t.Fatalf("after an hour, request %d refused", i)
		}
	}
	if ok, _ := l.allow("a"); ok {
		t.Fatal("the bucket held more than its burst")
	}
}

func TestRateLimiterDefaultBurst(t *testing.T) {
	for _, tc := range []struct {
		rate  float64
		burst float64
	}{{0.01, 1}, {1, 1}, {2.5, 3}, {100, 100}} {
		if got := newRateLimiter(tc.rate, 0, nil).burst; got != tc.burst {
			t.Errorf("rate %g: burst %g, want %g", tc.rate, got, tc.burst)
		}
	}
}

func TestRateLimiterSweep(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newRateLimiter(1, 1, func() time.Time { return now })
	for i := range maxRateClients {
		l.allow(fmt.Sprint(i))
	}
	if len(l.buckets) != maxRateClients {
		t.Fatalf("%d buckets", len(l.buckets))
	}
	now = now.Add(2 * time.Second)
	l.allow("new")
	if len(l.buckets) != 1 {
		t.Fatalf("after a sweep, %d buckets, want 1", len(l.buckets))
	}
}

func TestClientKey(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:5000":          "127.0.0.1",
		"[::1]:5000":              "::/64",
		"[2001:db8:1:2:3::4]:80":  "2001:db8:1:2::/64",
		"[2001:db8:1:2:ff::9]:81": "2001:db8:1:2::/64",
		"[::ffff:10.0.0.1]:80":    "10.0.0.1",
		"garbage":                 "garbage",
	} {
		if got := clientKey(&http.Request{RemoteAddr: addr}); got != want {
			t.Errorf("clientKey(%q) = %q, want %q", addr, got, want)
		}
	}
}
