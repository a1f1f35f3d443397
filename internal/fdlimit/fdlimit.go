// Package fdlimit reads and raises the process's limit of open file
// descriptors and counts the descriptors open, so that a server can keep
// some in reserve: every connection takes one, and a process at its limit
// can accept no request at all.
package fdlimit

import (
	"errors"
	"os"
)

// ErrUnsupported means the system gives no count of open descriptors.
var ErrUnsupported = errors.New("fdlimit: not supported on this system")

// Open returns the number of file descriptors the process has open
// (Linux: the entries of /proc/self/fd, the one used to read it included).
func Open() (int, error) {
	f, err := os.Open("/proc/self/fd")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, ErrUnsupported
		}
		return 0, err
	}
	defer f.Close()
	n := 0
	for {
		names, err := f.Readdirnames(1024)
		n += len(names)
		if err != nil || len(names) == 0 {
			break
		}
	}
	return n, nil
}
