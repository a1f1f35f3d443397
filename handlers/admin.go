package handlers

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/store"
)

// registerOps adds the operator's routes: the OpenAPI description, and the
// admin routes /metrics and /admin/backup (when the store has backups),
// which need an admin token when tokens are configured (auth.go).
func (h *Handler) registerOps(e *echo.Echo) {
	getHead(e, "/openapi.json", h.openapi)
	getHead(e, "/metrics", h.serveMetrics)
	if h.cfg.Backup != nil {
		e.GET("/admin/backup", h.backup(h.cfg.Backup))
	}
}

// backupWriteTimeout is how long one write of a backup stream may block
// before the reader counts as gone and the stream is cut off.
const backupWriteTimeout = 30 * time.Second

// backup streams a consistent copy of the database file (GET
// /admin/backup). The store copies its snapshot at the pace of its own
// disk, never of the client (see store.Backuper), so writes go on however
// slowly the client reads; a client that stops reading for
// backupWriteTimeout is cut off. One backup runs at a time (each may hold a
// copy of the file on disk): another is refused with 503 overloaded.
func (h *Handler) backup(b store.Backuper) echo.HandlerFunc {
	running := make(chan struct{}, 1)
	return func(c echo.Context) error {
		select {
		case running <- struct{}{}:
			defer func() { <-running }()
		default:
			c.Response().Header().Set(echo.HeaderRetryAfter, "10")
			return fail(ErrOverloaded, "a backup is being taken already; one runs at a time")
		}
		res := c.Response()
		rc := http.NewResponseController(res)
		// A large copy takes longer than the server's write timeout, which
		// is for ordinary answers: each write gets its own deadline instead.
		_ = rc.SetWriteDeadline(time.Time{})
		w := deadlineWriter{w: res, rc: rc, timeout: backupWriteTimeout}
		n, err := b.Backup(clientContext(c), w, func(size int64) {
			hdr := res.Header()
			hdr.Set(echo.HeaderContentType, "application/octet-stream")
			hdr.Set("Cache-Control", "no-store")
			name := "patchd-" + time.Now().UTC().Format("20060102T150405Z") + ".db"
			hdr.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name))
			hdr.Set(echo.HeaderContentLength, strconv.FormatInt(size, 10))
			res.WriteHeader(http.StatusOK)
		})
		if err != nil {
			if res.Committed {
				// The status is sent: the client sees a body shorter than
				// Content-Length, and the connection is closed.
				h.log.Warn("backup stream ended early", slog.Int64("bytes", n), slog.Any("err", err))
			}
			return err
		}
		return nil
	}
}

// deadlineWriter gives every write to a response its own deadline.
type deadlineWriter struct {
	w       io.Writer
	rc      *http.ResponseController
	timeout time.Duration
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	_ = d.rc.SetWriteDeadline(time.Now().Add(d.timeout))
	return d.w.Write(p)
}
