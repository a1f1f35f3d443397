//go:build !linux

package bolt

// lockHolder names the process that holds the lock of the file at path
// where the system tells; here it does not.
func lockHolder(string) string { return "" }
