package handlers

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/internal/budget"
)

// A listing, a history page or a list of violations is rendered whole (a
// few MiB at most), and a batch's answer too (up to 32 MiB), then held
// until the client has read it: a client that opens many such requests and
// reads none would hold memory without bound, over many connections or the
// streams of one HTTP/2 connection alike. clientTurns bounds how many of
// them one client has in progress at once.

// Turns per client, unless Config says otherwise.
const (
	pageTurns  = 8 // GET of listings, history, violations
	batchTurns = 2 // POST /batch
)

// clientTurns counts one kind of request in progress per client.
type clientTurns struct {
	what string // the requests, in a refusal: "pages", "batches"
	flag string // the flag that sets max, in a refusal
	max  int

	mu sync.Mutex
	n  map[string]int // only clients with some in progress
}

func newClientTurns(what, flag string, max int) *clientTurns {
	return &clientTurns{what: what, flag: flag, max: max, n: map[string]int{}}
}

// take counts one more request of client, if it has fewer than max.
func (t *clientTurns) take(client string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n[client] >= t.max {
		return false
	}
	t.n[client]++
	return true
}

// give ends one request of client.
func (t *clientTurns) give(client string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n[client] <= 1 {
		delete(t.n, client)
	} else {
		t.n[client]--
	}
}

// inTurn runs next while its client has a turn of t, until the answer is
// written; a client without one is refused with 429 and Retry-After.
func (h *Handler) inTurn(t *clientTurns, next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		client := clientOf(c, h.cfg.Tokens != nil)
		if !t.take(client) {
			c.Response().Header().Set(echo.HeaderRetryAfter, "1")
			return fail(ErrRateLimited, fmt.Sprintf("this client has %d %s in progress already, the most one client may have at once (%s); retry after 1 s", t.max, t.what, t.flag))
		}
		defer t.give(client)
		return next(c)
	}
}

// holdAnswer takes n bytes of the answers' budget for a document or a page
// about to be written, held until the answer is written (the returned
// function gives them back): the answers that clients do not read hold at
// most the budget between them, and one client (its token, else its
// address; every stream of an HTTP/2 connection alike) at most a quarter
// of it, past which it is refused 429 at once. With the budget full it
// waits up to OverloadWait for room, then refuses with 503 overloaded.
// Answers under budget.Min, and HEAD answers (no body), are not counted.
func (h *Handler) holdAnswer(c echo.Context, n int) (func(), error) {
	if n < budget.Min || c.Request().Method == http.MethodHead {
		return func() {}, nil
	}
	client := clientOf(c, h.cfg.Tokens != nil)
	share := min(int64(n), h.answerShares.Max()) // one answer larger than a share still goes alone
	if !h.answerShares.Take(client, share) {
		c.Response().Header().Set(echo.HeaderRetryAfter, "1")
		return nil, fail(ErrRateLimited, fmt.Sprintf("this client has %d MiB of answers not yet read, the most one client may have at once: read them before asking for more; retry after 1 s", h.answerShares.Max()>>20))
	}
	give := func() { h.answerShares.Give(client, share) }
	held, ok := h.answers.TryAcquire(n)
	if !ok {
		ctx, cancel := context.WithTimeout(c.Request().Context(), h.overloadWait)
		var err error
		held, err = h.answers.Acquire(ctx, n)
		cancel()
		if err != nil {
			give()
			if err := c.Request().Context().Err(); err != nil {
				return nil, err
			}
			return nil, fail(ErrOverloaded, fmt.Sprintf("the server holds as many answers being written as it may at once (%d MiB); retry after 1 s", h.answers.Capacity()>>20))
		}
	}
	return func() { held(); give() }, nil
}
