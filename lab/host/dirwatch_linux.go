package host

import (
	"os"
	"syscall"
)

// watchDir watches dir with inotify: wait returns once a file there has
// been written, created or moved in since the last call (or the watch is
// closed: then with an error). It costs nothing while nothing happens,
// where polling 50 hosts' request files kept the CPU busy.
func watchDir(dir string) (wait func() error, stop func(), err error) {
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return nil, nil, err
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_CLOSE_WRITE|syscall.IN_CREATE|syscall.IN_MOVED_TO); err != nil {
		syscall.Close(fd)
		return nil, nil, err
	}
	// Non-blocking, so the runtime's poller waits for it, and Close ends
	// a Read in progress.
	f := os.NewFile(uintptr(fd), "inotify "+dir)
	buf := make([]byte, 4096)
	wait = func() error {
		_, err := f.Read(buf)
		return err
	}
	return wait, func() { f.Close() }, nil
}
