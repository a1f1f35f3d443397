package handlers

import "net/http"

// HTTP1Only answers the HTTP/2 connection preface sent in clear over
// HTTP/1 ("PRI * HTTP/2.0") with 505 HTTP Version Not Supported, in the
// words and form net/http uses for every other HTTP/2.0 request line, and
// closes the connection. net/http lets that one request through to the
// handler for h2c, which patchd does not serve; the API never sees it.
func HTTP1Only(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "PRI" || r.ProtoMajor != 2 {
			next.ServeHTTP(w, r)
			return
		}
		const body = "505 HTTP Version Not Supported: unsupported protocol version"
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Connection", "close")
		w.WriteHeader(http.StatusHTTPVersionNotSupported)
		_, _ = w.Write([]byte(body))
	})
}
