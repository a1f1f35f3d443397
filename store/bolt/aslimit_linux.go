package bolt

import "syscall"

// addressLimit returns the process's limit of address space in bytes
// (ulimit -v), or 0 if there is none (RLIM_INFINITY, all ones) or it
// cannot be read.
func addressLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_AS, &l); err != nil || l.Cur == ^uint64(0) {
		return 0
	}
	return l.Cur
}
