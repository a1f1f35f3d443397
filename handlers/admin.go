package handlers

import (
	"fmt"
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
	e.GET("/openapi.json", h.openapi)
	e.GET("/metrics", h.serveMetrics)
	if h.cfg.Backup != nil {
		e.GET("/admin/backup", h.backup(h.cfg.Backup))
	}
}

// backup streams a consistent copy of the database file (GET
// /admin/backup). The copy comes from one read transaction, so writes go on
// while it streams.
func (h *Handler) backup(b store.Backuper) echo.HandlerFunc {
	return func(c echo.Context) error {
		res := c.Response()
		// A large copy takes longer than the server's write timeout, which
		// is for ordinary answers; the client's pace and ctx bound it.
		_ = http.NewResponseController(res).SetWriteDeadline(time.Time{})
		n, err := b.Backup(c.Request().Context(), res, func(size int64) {
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
