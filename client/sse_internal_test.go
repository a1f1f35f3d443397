package client

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestSSEReader(t *testing.T) {
	tests := []struct {
		name      string
		stream    string
		want      []sseEvent
		wantRetry time.Duration
	}{
		{name: "PatchdFeed", stream: "retry: 2000\n\nid: 4\nevent: version\ndata: {\"seq\":4}\n\n: heartbeat\n\n",
			want: []sseEvent{{name: "version", data: []byte(`{"seq":4}`)}}, wantRetry: 2 * time.Second},
		{name: "CRLF", stream: "event: snapshot\r\ndata: {}\r\n\r\n",
			want: []sseEvent{{name: "snapshot", data: []byte(`{}`)}}},
		{name: "MultiLineData", stream: "data: a\ndata:b\ndata\n\n",
			want: []sseEvent{{name: "message", data: []byte("a\nb\n")}}},
		{name: "NoDataNoEvent", stream: "event: ready\n\nevent: x\ndata: 1\n\n",
			want: []sseEvent{{name: "x", data: []byte("1")}}},
		{name: "BadRetryIgnored", stream: "retry: soon\ndata: 1\n\n",
			want: []sseEvent{{name: "message", data: []byte("1")}}},
		{name: "LongLine", stream: "data: " + strings.Repeat("x", 200_000) + "\n\n",
			want: []sseEvent{{name: "message", data: []byte(strings.Repeat("x", 200_000))}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			touched := 0
			r := &sseReader{r: bufio.NewReaderSize(strings.NewReader(tc.stream), 16), touch: func() { touched++ }}
			for i, want := range tc.want {
				got, err := r.next()
				if err != nil {
					t.Fatalf("event %d: %v", i, err)
				}
				if got.name != want.name || string(got.data) != string(want.data) {
					t.Fatalf("event %d: %q %.40q, want %q %.40q", i, got.name, got.data, want.name, want.data)
				}
			}
			if _, err := r.next(); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("at the end: %v, want io.ErrUnexpectedEOF", err)
			}
			if r.retry != tc.wantRetry {
				t.Fatalf("retry=%v, want %v", r.retry, tc.wantRetry)
			}
			if touched == 0 {
				t.Fatal("touch never called")
			}
		})
	}
}

func TestRetryDelay(t *testing.T) {
	p := RetryPolicy{BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}.withDefaults()
	tests := []struct {
		name  string
		retry int
		bound time.Duration
	}{
		{name: "First", retry: 0, bound: 100 * time.Millisecond},
		{name: "Third", retry: 2, bound: 400 * time.Millisecond},
		{name: "Capped", retry: 10, bound: time.Second},
		{name: "Huge", retry: 1000, bound: time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var maxSeen time.Duration
			for range 1000 {
				d := p.delay(tc.retry)
				if d < 0 || d >= tc.bound {
					t.Fatalf("delay %v outside [0, %v)", d, tc.bound)
				}
				maxSeen = max(maxSeen, d)
			}
			if maxSeen < tc.bound/2 {
				t.Fatalf("1000 delays all below %v: not spread up to %v", maxSeen, tc.bound)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		name   string
		value  string
		want   time.Duration
		wantOK bool
	}{
		{name: "Seconds", value: "3", want: 3 * time.Second, wantOK: true},
		{name: "Zero", value: "0", want: 0, wantOK: true},
		{name: "Absent", value: "", wantOK: false},
		{name: "Garbage", value: "soon", wantOK: false},
		{name: "PastDate", value: "Mon, 02 Jan 2006 15:04:05 GMT", want: 0, wantOK: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string][]string{}
			if tc.value != "" {
				h["Retry-After"] = []string{tc.value}
			}
			got, ok := retryAfter(h)
			if got != tc.want || ok != tc.wantOK {
				t.Fatalf("retryAfter(%q)=%v, %v; want %v, %v", tc.value, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}
