package handlers

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Starting returns the handler that answers while the store opens (a
// database that cannot be reached yet, a write-ahead log being replayed):
// GET and HEAD /healthz are 200 {"status":"ok"}, since the process is
// alive, and every other request is 503 unavailable with Retry-After, so
// that a client, /readyz included, is answered at once instead of waiting
// for as long as the database is away. Pages of corsOrigins (as
// Config.CORSOrigins) get their preflights answered and the CORS headers,
// so that a browser client reads the 503 and its Retry-After rather than
// a network error.
func Starting(corsOrigins []string) http.Handler {
	body, _ := json.Marshal(problem{
		Type: "/problems/unavailable", Title: "Service unavailable", Status: http.StatusServiceUnavailable,
		Detail: "the server is starting: its store is not open yet (its database cannot be reached yet, or it is replaying its log); retry after 1 s",
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if setCORS(corsOrigins, r, h) {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if r.URL.Path == "/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			ok := []byte("{\"status\":\"ok\"}\n")
			h.Set("Content-Type", "application/json")
			h.Set("Content-Length", strconv.Itoa(len(ok)))
			w.WriteHeader(http.StatusOK)
			if r.Method == http.MethodGet {
				_, _ = w.Write(ok)
			}
			return
		}
		h.Set("Content-Type", "application/problem+json")
		h.Set("Cache-Control", "no-cache")
		h.Set("Retry-After", "1")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusServiceUnavailable)
		if r.Method != http.MethodHead {
			_, _ = w.Write(body)
		}
	})
}
