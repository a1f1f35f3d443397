package handlers_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/patchd/patchd/store"
	"github.com/patchd/patchd/store/bolt"
)

// BenchmarkGetRequestLog measures a GET through the whole Echo stack in process,
// with the request log off (nil Logger) and on (JSON to io.Discard), so
// that the cost of the log line shows. Metrics and the request id are on
// in both.
func BenchmarkGetRequestLog(b *testing.B) {
	for _, tc := range []struct {
		name string
		log  *slog.Logger
	}{
		{"LogOff", nil},
		{"LogJSON", slog.New(slog.NewJSONHandler(io.Discard, nil))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			st, err := bolt.Open(filepath.Join(b.TempDir(), "p.db"), store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			cfg := newConfig()
			cfg.http.Logger = tc.log
			e := newHandler(st, cfg).Echo()
			req := httptest.NewRequest("PUT", "/docs/c/d", strings.NewReader(`{"a":1,"b":[1,2,3]}`))
			req.Header.Set("Content-Type", "application/json")
			e.ServeHTTP(httptest.NewRecorder(), req)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				rec := httptest.NewRecorder()
				e.ServeHTTP(rec, httptest.NewRequest("GET", "/docs/c/d", nil))
				if rec.Code != http.StatusOK {
					b.Fatal(rec.Code)
				}
			}
		})
	}
}
