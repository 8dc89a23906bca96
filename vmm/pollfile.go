package vmm

import "os"

// newPollFile wraps a non-blocking fd so that reads park the goroutine in
// Go's netpoller (epoll) instead of blocking an OS thread.
func newPollFile(fd int, name string) *os.File {
	return os.NewFile(uintptr(fd), name)
}
