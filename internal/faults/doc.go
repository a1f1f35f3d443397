// Package faults runs real patchd processes on loopback and injects the
// faults that the reliability tests need: SIGKILL and restart, SIGSTOP and
// SIGCONT, SIGTERM, and TCP connections cut mid-request by a small proxy.
//
// Its tests (run by go test ./..., skipped with -short and under the race
// detector, which would only slow the test clients down) check
// linearizability with porcupine, lost updates with counters, durability
// across kill -9, graceful shutdown under load, and slow clients. The
// long variants run with -faults.long.
package faults
