//go:build race

package faults

// raceEnabled is true when the tests are built with -race.
const raceEnabled = true
