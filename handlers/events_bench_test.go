package handlers_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkWriteWithStreams measures PATCH round trips on one document
// while streams of it are open: reading (they receive every version) or
// stalled (they never read). Writers should not notice either.
//
//	go test ./handlers -run '^$' -bench WriteWithStreams -count 6 | benchstat -
func BenchmarkWriteWithStreams(b *testing.B) {
	for _, tc := range []struct {
		name    string
		streams int
		read    bool
	}{
		{"none", 0, false},
		{"reading=50", 50, true},
		{"stalled=50", 50, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := startFeedServer(b, feedOpts{})
			req, _ := http.NewRequest("PUT", s.URL+"/docs/b/d", strings.NewReader(`{"n":0,"pad":"`+strings.Repeat("x", 1024)+`"}`))
			req.Header.Set("Content-Type", ctJSON)
			res, err := s.Client().Do(req)
			if err != nil || res.StatusCode != http.StatusCreated {
				b.Fatalf("create: %v %v", res, err)
			}
			res.Body.Close()
			for i := 0; i < tc.streams; i++ {
				f, r := openFeed(b, s, "/docs/b/d/events", nil, nil)
				if f == nil {
					b.Fatalf("stream %d: %d", i, r.status)
				}
				if tc.read {
					go io.Copy(io.Discard, f.br)
				}
			}
			client := s.Client()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				req, _ := http.NewRequest("PATCH", s.URL+"/docs/b/d", strings.NewReader(fmt.Sprintf(`{"n":%d}`, i+1)))
				req.Header.Set("Content-Type", ctMerge)
				req.Header.Set("If-Match", "*")
				res, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 {
					b.Fatalf("PATCH: %d", res.StatusCode)
				}
			}
		})
	}
}
