//go:build race

package handlers_test

import "time"

// latencyBound is the answer time the latency tests hold the server to.
// The race detector slows every instrumented access several times over,
// so under it they check that every request is answered within a bound
// ten times looser; the plain run (go test ./...) checks the real one.
const latencyBound = 10 * time.Second
