//go:build !race

package handlers_test

import "time"

// latencyBound is the answer time the latency tests hold the server to
// (see race_test.go for the bound under the race detector).
const latencyBound = time.Second
