//go:build race

package e2e

// raceEnabled is true when the tests run with -race: the binary under
// test and the suites run in children are built with it too.
const raceEnabled = true
