package store

import (
	"os"
	"syscall"
)

// fdatasync syncs f's data and what reading it back needs (its size), not
// its times: what the intake log's appends need.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
