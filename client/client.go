package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Client talks to one patchd server. It is safe for concurrent use by
// several goroutines. The zero value is not usable; call New.
type Client struct {
	base      string // the server's URL without a trailing slash
	err       error  // why base is unusable; every call returns it
	hc        *http.Client
	token     func(ctx context.Context) (string, error)
	retry     RetryPolicy
	userAgent string
	idle      time.Duration
	// maxResponse bounds the body of an answer other than a stream.
	maxResponse int64
}

// Option configures a Client; pass options to New.
type Option func(*Client)

// RetryPolicy says how requests are retried. A request is retried after a
// network error, a 502, 503 or 504 answer, or a 429 answer, and never after
// any other answer, with one exception: a 409 idempotency-key-in-use (the
// write's own earlier attempt, whose answer was lost, is still in
// progress on the server; the retry gets its answer once it is done). The delay before retry n
// (from 0) is random between zero and min(MaxDelay, BaseDelay·2ⁿ): "full
// jitter". A 429 or 503 with Retry-After waits as long as it says instead,
// up to MaxRetryAfter; when that is past the context's deadline, the
// answer is returned at once.
//
// Writes are safe to retry: every write carries an idempotency key kept
// across its retries (see IdempotencyKey).
type RetryPolicy struct {
	// Attempts is how many times one request is sent at most, the first
	// time included. Zero means 5; 1 turns retries off.
	Attempts int
	// BaseDelay is the delay bound of the first retry; zero means 100ms.
	BaseDelay time.Duration
	// MaxDelay caps the delay bound; zero means 10s.
	MaxDelay time.Duration
	// MaxRetryAfter caps the wait a Retry-After asks for; zero means 1
	// minute.
	MaxRetryAfter time.Duration
}

// DefaultRetryPolicy is the policy of a Client created without
// WithRetry.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{Attempts: 5, BaseDelay: 100 * time.Millisecond, MaxDelay: 10 * time.Second, MaxRetryAfter: time.Minute}
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	d := DefaultRetryPolicy()
	if p.Attempts <= 0 {
		p.Attempts = d.Attempts
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = d.BaseDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = d.MaxDelay
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = d.MaxRetryAfter
	}
	return p
}

// delay returns the full-jitter delay before retry n (from 0).
func (p RetryPolicy) delay(n int) time.Duration {
	bound := float64(p.MaxDelay)
	if n < 62 {
		bound = math.Min(bound, float64(p.BaseDelay)*math.Pow(2, float64(n)))
	}
	return time.Duration(jitter() * bound)
}

// growing returns a delay between half and all of retry n's delay bound
// ("equal jitter"): one that grows with n whatever the jitter.
func (p RetryPolicy) growing(n int) time.Duration {
	bound := p.MaxDelay
	if n < 62 {
		bound = time.Duration(math.Min(float64(bound), float64(p.BaseDelay)*math.Pow(2, float64(n))))
	}
	return bound/2 + time.Duration(jitter()*float64(bound/2))
}

// jitter returns a random fraction in [0, 1).
func jitter() float64 {
	return mrand.Float64() // #nosec G404 -- a retry delay's jitter, not a secret
}

// WithHTTPClient makes the Client send its requests with hc instead of a
// client of its own over http.DefaultTransport. A Timeout on hc also ends
// Watch's streams after that time; they then resume where they were.
func WithHTTPClient(hc *http.Client) Option {
	return func(cl *Client) {
		if hc != nil {
			cl.hc = hc
		}
	}
}

// WithToken sends token as a bearer token (Authorization: Bearer TOKEN) on
// every request.
func WithToken(token string) Option {
	return func(cl *Client) {
		cl.token = func(context.Context) (string, error) { return token, nil }
	}
}

// WithTokenFunc calls fn before every request, retries and reconnections
// included, for the bearer token to send: fn may refresh a token that is
// about to expire. An error from fn fails the request without sending it;
// an empty token sends no Authorization field.
func WithTokenFunc(fn func(ctx context.Context) (string, error)) Option {
	return func(cl *Client) { cl.token = fn }
}

// WithRetry sets the retry policy; zero fields take DefaultRetryPolicy's
// values. Watch uses the policy's delays between reconnections, never
// less than BaseDelay, and reconnects until its context ends.
func WithRetry(p RetryPolicy) Option {
	return func(cl *Client) { cl.retry = p.withDefaults() }
}

// WithUserAgent sets the User-Agent field of every request.
func WithUserAgent(ua string) Option {
	return func(cl *Client) { cl.userAgent = ua }
}

// WithIdleTimeout sets how long a Watch stream may stay silent before it
// counts as broken and is reopened. The server sends a heartbeat every 15s
// by default; the default, 45s, allows for two lost.
func WithIdleTimeout(d time.Duration) Option {
	return func(cl *Client) {
		if d > 0 {
			cl.idle = d
		}
	}
}

// WithMaxResponse bounds the body of every answer other than a Watch
// stream, error answers included, to n bytes; zero or less keeps the
// default, 64 MiB (patchd answers with a document, bounded by the
// server's --max-doc, 1 MiB by default, or a page of about 4 MiB at
// most). A longer answer is not read further: the call fails with an
// error wrapping ErrResponseTooLarge, is not retried, and its connection
// is closed. Reading an answer ends when the call's context does.
func WithMaxResponse(n int64) Option {
	return func(cl *Client) {
		if n > 0 {
			cl.maxResponse = n
		}
	}
}

// defaultMaxResponse is the bound of WithMaxResponse's default.
const defaultMaxResponse = 64 << 20

// defaultUserAgent is the User-Agent of a Client created without
// WithUserAgent.
const defaultUserAgent = "patchd-go-client"

// New returns a Client of the patchd server at baseURL, such as
// "http://127.0.0.1:8080" (a path prefix is kept: "https://example.com/patchd").
// A baseURL that is not an absolute http or https URL makes every method
// of the Client return an error saying so.
func New(baseURL string, opts ...Option) *Client {
	cl := &Client{
		base:        strings.TrimRight(baseURL, "/"),
		hc:          &http.Client{},
		retry:       DefaultRetryPolicy(),
		userAgent:   defaultUserAgent,
		idle:        45 * time.Second,
		maxResponse: defaultMaxResponse,
	}
	u, err := url.Parse(cl.base)
	switch {
	case err != nil:
		cl.err = fmt.Errorf("patchd: base URL %q: %w", baseURL, err)
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		cl.err = fmt.Errorf("patchd: base URL %q: want an absolute http or https URL", baseURL)
	case u.RawQuery != "" || u.Fragment != "":
		cl.err = fmt.Errorf("patchd: base URL %q: want no query or fragment", baseURL)
	}
	for _, o := range opts {
		o(cl)
	}
	return cl
}

// call is one HTTP request, sent once or more.
type call struct {
	method string
	path   string // escaped, under the base URL: /docs/c/id
	query  url.Values
	header http.Header
	body   []byte // nil: no body
}

// answer is a complete HTTP answer.
type answer struct {
	status int
	header http.Header
	body   []byte
	// unsure reports that an earlier attempt of the request may have
	// reached the server and been applied, its answer lost.
	unsure bool
}

func (c *call) String() string { return c.method + " " + c.path }

// url returns the absolute URL of c.
func (cl *Client) url(c *call) string {
	u := cl.base + c.path
	if len(c.query) > 0 {
		u += "?" + c.query.Encode()
	}
	return u
}

// docPath returns the escaped path of a document, or of a collection when
// id is "".
func docPath(coll, id string) string {
	p := "/docs/" + url.PathEscape(coll)
	if id != "" {
		p += "/" + url.PathEscape(id)
	}
	return p
}

// checkNames fails when a collection or id is empty: the request would
// name another resource.
func (cl *Client) checkNames(coll, id string, withID bool) error {
	if cl.err != nil {
		return cl.err
	}
	if coll == "" {
		return errors.New("patchd: empty collection name")
	}
	if withID && id == "" {
		return errors.New("patchd: empty document id")
	}
	return nil
}

// request builds one attempt of c.
func (cl *Client) request(ctx context.Context, c *call) (*http.Request, error) {
	var body io.Reader
	if c.body != nil {
		body = bytes.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, cl.url(c), body)
	if err != nil {
		return nil, err
	}
	for k, vs := range c.header {
		req.Header[k] = vs
	}
	if cl.userAgent != "" {
		req.Header.Set("User-Agent", cl.userAgent)
	}
	if cl.token != nil {
		tok, err := cl.token(ctx)
		if err != nil {
			return nil, fmt.Errorf("patchd: token: %w", err)
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
	}
	return req, nil
}

// once sends one attempt of c and reads the whole answer. A failure to
// build the request (the token function's error, say) and an answer over
// the size bound are fatal; any other error is the network's.
func (cl *Client) once(ctx context.Context, c *call) (a *answer, fatal, err error) {
	req, err := cl.request(ctx, c)
	if err != nil {
		return nil, err, nil
	}
	// net/http's Transport resends a request that carries an
	// Idempotency-Key by itself when a reused connection breaks before the
	// answer: count the writes, so that such a hidden retry counts as an
	// attempt that may have been applied.
	var writes atomic.Int32
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { writes.Add(1) }}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	res, err := cl.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	// Closing a body that was not read to its end closes the connection.
	defer res.Body.Close()
	body, err := cl.readBody(c, res)
	if errors.Is(err, ErrResponseTooLarge) {
		return nil, err, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return &answer{status: res.StatusCode, header: res.Header, body: body, unsure: writes.Load() > 1}, nil, nil
}

// readBody reads the body of an answer to c, up to the size bound; past
// it, the error wraps ErrResponseTooLarge. A read ends when the request's
// context does.
func (cl *Client) readBody(c *call, res *http.Response) ([]byte, error) {
	tooLarge := func() error {
		return fmt.Errorf("patchd: %s: answer %d: body over %d bytes: %w", c, res.StatusCode, cl.maxResponse, ErrResponseTooLarge)
	}
	if res.ContentLength > cl.maxResponse {
		return nil, tooLarge()
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, cl.maxResponse+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > cl.maxResponse {
		return nil, tooLarge()
	}
	return body, nil
}

// send sends c, retrying as the policy says, and returns the first answer
// that is not retried (or the last one when the attempts run out). The
// error is the network's when no answer came, or the context's.
func (cl *Client) send(ctx context.Context, c *call) (*answer, error) {
	unsure := false
	for attempt := 1; ; attempt++ {
		a, fatal, err := cl.once(ctx, c)
		if fatal != nil {
			return nil, fatal
		}
		if err == nil {
			unsure = unsure || a.unsure
		}
		if err == nil && !retryable(a) {
			a.unsure = unsure
			return a, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("patchd: %s: %w", c, context.Cause(ctx))
		}
		wait := cl.retry.delay(attempt - 1)
		if err != nil {
			if !notSent(err) {
				unsure = true
			}
		} else {
			switch {
			case a.status == http.StatusBadGateway || a.status == http.StatusGatewayTimeout:
				unsure = true // a gateway may have passed the request on
			case a.status == http.StatusServiceUnavailable && c.method != http.MethodGet && c.method != http.MethodHead:
				// Among a write's 503s is the commit the database did
				// not confirm: it may have been applied.
				unsure = true
			}
			if d, ok := retryAfter(a.header); ok && (a.status == http.StatusTooManyRequests || a.status == http.StatusServiceUnavailable) {
				wait = min(d, cl.retry.MaxRetryAfter)
			}
			a.unsure = unsure
		}
		if attempt >= cl.retry.Attempts || pastDeadline(ctx, wait) {
			if err != nil {
				return nil, fmt.Errorf("patchd: %s: %d attempts: %w", c, attempt, err)
			}
			return a, nil
		}
		if !sleep(ctx, wait) {
			return nil, fmt.Errorf("patchd: %s: %w", c, context.Cause(ctx))
		}
	}
}

// retryable reports whether an answer is retried: 502, 503, 504, 429, and
// the 409 that says an earlier attempt with the same idempotency key is
// still being processed.
func retryable(a *answer) bool {
	switch a.status {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusTooManyRequests:
		return true
	case http.StatusConflict:
		return problemName(a.body) == "idempotency-key-in-use"
	}
	return false
}

// notSent reports whether a network error happened before the request
// could reach the server (no connection was made).
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// retryAfter reads a Retry-After field: seconds, or an HTTP date.
func retryAfter(h http.Header) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, time.Until(t)), true
	}
	return 0, false
}

// pastDeadline reports whether waiting d would outlast ctx's deadline.
func pastDeadline(ctx context.Context, d time.Duration) bool {
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) < d
}

// sleep waits d, or less if ctx ends first; false means ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// newKey returns a fresh idempotency key: 128 random bits, base32.
func newKey() string { return rand.Text() }

// encodeJSON returns the JSON of v: a json.RawMessage as it is (once
// checked to be valid JSON), anything else through encoding/json, without
// HTML escaping.
func encodeJSON(v any) ([]byte, error) {
	if raw, ok := v.(json.RawMessage); ok {
		if !json.Valid(raw) {
			return nil, errors.New("patchd: json.RawMessage is not valid JSON")
		}
		return raw, nil
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("patchd: encode: %w", err)
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
