//go:build !linux

package bolt

// addressLimit would return the process's limit of address space; here it
// is not read, and a map that does not fit falls back to smaller ones.
func addressLimit() uint64 { return 0 }
