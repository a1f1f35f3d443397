//go:build unix

package fdlimit

import "syscall"

// Raise sets the process's soft limit of open files (RLIMIT_NOFILE) to its
// hard limit, and returns the soft limit now in force. Go's runtime does the
// same at start on most systems; Raise makes it explicit and tells the
// caller the limit.
func Raise() (int, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, err
		}
	}
	return Limit()
}

// Limit returns the soft limit of open files.
func Limit() (int, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	const most = 1 << 30 // RLIM_INFINITY and the like
	if lim.Cur > most {
		return most, nil
	}
	return int(lim.Cur), nil // #nosec G115 -- bounded above
}
