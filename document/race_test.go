//go:build race

package document

// raceEnabled is true when the tests run with -race.
const raceEnabled = true
