package handlers

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/document"
)

// HeaderRequestID carries a request's id: taken from the request when it is
// sane (see saneRequestID), generated otherwise, and always sent back.
const HeaderRequestID = "X-Request-Id"

// requestInfo is what the handlers tell the request log and the metrics
// about a request, beyond what its response says.
type requestInfo struct {
	id string
	// etagBefore is the ETag of the version a write was decided against
	// ("" when the document did not exist).
	etagBefore string
	// etagAfter is the ETag a successful answer carries: the version a
	// write made, or the one a read returned.
	etagAfter string
	// rebased marks a write committed by rebasing a stale edit; it feeds
	// patchd_rebases_total{outcome="rebased"}.
	rebased bool
	// replayed marks an answer replayed for a repeated idempotency key; it
	// feeds patchd_idempotent_replays_total.
	replayed bool
	// clientGone marks a request whose client went away before its answer.
	clientGone bool
	// causeLogged marks an error whose cause the handler logged already:
	// the error handler does not log it again.
	causeLogged bool
	// dryRun marks a write made with ?dryRun=true: it wrote nothing, so it
	// counts in no metric of writes (rebases, replays).
	dryRun bool
	// client is the request's context as net/http made it: done as soon
	// as the client's end of stream is read. Streams, which have no
	// answer to finish, end with it (see clientContext).
	client context.Context
	// releases give back what the request held of bounded resources (its
	// body's share of the decode budget) once its answer is written into
	// the response, before net/http sends its last bytes: the client's
	// next request, sent on reading the answer, finds them free.
	releases []func()
}

// statusClientClosed is what the request log and the metrics record for a
// request whose client went away before its answer: nginx's 499 "client
// closed request". No answer is sent.
const statusClientClosed = 499

// observed is the echo.Context the observe middleware hands on: the
// request's context with its requestInfo, in one allocation.
type observed struct {
	echo.Context
	info requestInfo
}

// info returns the request's *requestInfo, or a throwaway one when the
// observe middleware did not run (a Handler used without Echo()).
func info(c echo.Context) *requestInfo {
	if o, ok := c.(*observed); ok {
		return &o.info
	}
	return &requestInfo{}
}

// noteResult tells the request log and the metrics what a write did.
func noteResult(c echo.Context, res document.Result) {
	ri := info(c)
	ri.etagBefore = res.Before
	ri.rebased = res.RebasedFrom != ""
	ri.replayed = res.Replayed
	if res.Doc != nil {
		ri.etagAfter = res.Doc.ETag
	}
}

// cutShort reports whether fewer bytes of an answer's body were written
// than its Content-Length said.
func cutShort(req *http.Request, res *echo.Response) bool {
	if req.Method == http.MethodHead || res.Status == http.StatusNotModified {
		return false
	}
	n, err := strconv.ParseInt(res.Header().Get(echo.HeaderContentLength), 10, 64)
	return err == nil && res.Size < n
}

// clientContext returns the context of a request as net/http made it,
// done as soon as the client's end of stream is read, for streams: a
// stream has no answer to finish for a client that half-closed, and ends
// when its client goes. Other handlers use the request's context, which
// outlives the client by Config.HalfCloseGrace.
func clientContext(c echo.Context) context.Context {
	if ctx := info(c).client; ctx != nil {
		return ctx
	}
	return c.Request().Context()
}

// noteRead tells the request log the ETag a read answered with.
func noteRead(c echo.Context, etag string) { info(c).etagAfter = etag }

// saneRequestID reports whether a client's X-Request-Id can be kept: 1 to
// 128 characters from [A-Za-z0-9._~:/+=@-], which covers UUIDs, ULIDs,
// base64 and trace ids and keeps log lines clean.
func saneRequestID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == '~', c == ':', c == '/', c == '+', c == '=', c == '@', c == '-':
		default:
			return false
		}
	}
	return true
}

// exchange is what the request log and the metrics learn of one request.
type exchange struct {
	method     string
	route      string // the route template, or "unmatched"
	status     int
	problem    string // problem type name of an error answer, or ""
	duration   time.Duration
	etagBefore string
	etagAfter  string
	rebased    bool
	replayed   bool
	dryRun     bool
}

// observe is the outermost middleware: it sets the request id, runs the
// request, turns a returned error into its answer (so that the status is
// known here), then writes the request log line and updates the metrics.
func (h *Handler) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		req := c.Request()
		client := req.Context()
		// The request's work runs under a context that outlives the
		// client's end of stream by a grace period (Config.HalfCloseGrace):
		// a complete request whose client half-closed is still answered.
		ctx, cancel := outlive(client, h.grace)
		defer cancel()
		req = req.WithContext(ctx)
		c.SetRequest(req)
		id := req.Header.Get(HeaderRequestID)
		if !saneRequestID(id) {
			id = h.reqIDs.Next()
		}
		res := c.Response()
		res.Header()[HeaderRequestID] = []string{id} // canonical already
		o := &observed{Context: c, info: requestInfo{id: id, client: client}}
		ri := &o.info
		defer func() {
			for _, release := range ri.releases {
				release()
			}
		}()

		err := next(o)
		x := exchange{method: req.Method, route: c.Path()}
		var pe *document.PreconditionError
		if errors.As(err, &pe) && ri.etagBefore == "" {
			ri.etagBefore = pe.Current // a refused write names the current version
		}
		switch {
		case res.Committed && (err != nil || cutShort(req, res)):
			// The answer had begun and could not be written whole: its
			// status stands, and why goes to the log, unless the client
			// left (a write that timed out was the server's deadline).
			if clientContext(o).Err() == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				attrs := []any{slog.String("method", req.Method), slog.String("path", req.URL.Path),
					slog.Int("status", res.Status), slog.Int64("bytes", res.Size)}
				if err != nil {
					attrs = append(attrs, slog.Any("err", err))
				}
				h.log.Warn("answer cut short", attrs...)
			}
		case err != nil:
			x.problem = classify(err).name
			if errors.Is(err, echo.ErrNotFound) {
				x.route = "unmatched" // keep the label set bounded
			}
			h.errorHandler(err, o) // with o, so that it can note what it learns
		}
		x.duration = time.Since(start)
		x.status = res.Status
		if ri.clientGone {
			x.status, x.problem = statusClientClosed, ""
		}
		x.etagBefore = ri.etagBefore
		x.replayed = ri.replayed
		x.dryRun = ri.dryRun
		if x.status < 300 || x.status == http.StatusNotModified {
			x.etagAfter = ri.etagAfter
			x.rebased = ri.rebased
		}
		h.metrics.observe(x)
		h.logRequest(req.Context(), id, req, x, res.Size)
		return nil
	}
}

// outlive returns a context with parent's values that is cancelled grace
// after parent is, or when the returned function is called. Call it before
// parent ends on its own (net/http cancels a request's context once its
// handler returns), so that no timer is left running.
func outlive(parent context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	stop := context.AfterFunc(parent, func() {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-ctx.Done():
		}
	})
	return ctx, func() {
		stop()
		cancel()
	}
}

// logRequest writes the one log line of a request. It never logs bodies,
// query strings or headers other than the request id.
func (h *Handler) logRequest(ctx context.Context, id string, req *http.Request, x exchange, size int64) {
	level := slog.LevelInfo
	switch x.status {
	case http.StatusInsufficientStorage:
		// Not a fault of the server's: the full device is logged on its
		// own, once a minute (diskFullLog), not once per refused write.
	case http.StatusServiceUnavailable:
		level = slog.LevelWarn // retryable refusal, not a fault
	default:
		if x.status >= 500 {
			level = slog.LevelError
		}
	}
	if !h.log.Enabled(ctx, level) {
		return
	}
	var buf [13]slog.Attr
	attrs := append(buf[:0],
		slog.String("request_id", id),
		slog.String("method", x.method),
		slog.String("route", x.route),
		slog.String("path", req.URL.Path),
		slog.Int("status", x.status),
		slog.Float64("duration_ms", float64(x.duration.Microseconds())/1000),
		slog.Int64("bytes", size),
	)
	if x.problem != "" {
		attrs = append(attrs, slog.String("problem", x.problem))
	}
	if x.etagBefore != "" {
		attrs = append(attrs, slog.String("etag_before", x.etagBefore))
	}
	if x.etagAfter != "" {
		attrs = append(attrs, slog.String("etag_after", x.etagAfter))
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead && req.Method != http.MethodOptions {
		attrs = append(attrs, slog.Bool("rebased", x.rebased))
	}
	if x.replayed {
		attrs = append(attrs, slog.Bool("replayed", true))
	}
	if x.dryRun {
		attrs = append(attrs, slog.Bool("dry_run", true))
	}
	h.log.LogAttrs(ctx, level, "request", attrs...)
}
