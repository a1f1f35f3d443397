//go:build !linux

package bolt

import (
	"os"
	"time"
)

// lockHolder names the process that holds the lock of the file at path
// where the system tells; here it does not.
func lockHolder(string) string { return "" }

// lockFile would take the lock bbolt takes; here the check before bbolt
// opens the file goes without it, and bbolt's own lock decides.
func lockFile(*os.File, bool, time.Duration) error { return nil }

// fdatasync flushes f to the device.
func fdatasync(f *os.File) error { return f.Sync() }

// startWriteback does nothing here.
func startWriteback(*os.File) {}
