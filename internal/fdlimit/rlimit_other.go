//go:build !unix

package fdlimit

// Raise does nothing where there is no RLIMIT_NOFILE.
func Raise() (int, error) { return 0, ErrUnsupported }

// Limit is unknown where there is no RLIMIT_NOFILE.
func Limit() (int, error) { return 0, ErrUnsupported }
