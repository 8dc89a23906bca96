package main

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// escapeKey is Ctrl-A, the first key of the console's escape sequences (as
// in qemu -nographic): Ctrl-A x stops the VM, Ctrl-A Ctrl-A sends a Ctrl-A.
const escapeKey = 0x01

// rawTerminal puts the terminal on fd into raw mode, so every key (Ctrl-C
// too) goes to the guest's serial port, and returns a function that
// restores it. It does nothing and returns a no-op when fd is not a
// terminal.
func rawTerminal(fd int) func() {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return func() {}
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	// Output post-processing stays on (as qemu -nographic keeps it), so
	// a guest that ends lines with a bare \n still starts each line at
	// the left margin.
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return func() {}
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) }
}

// escapeFilter passes keys from r to the guest and watches for Ctrl-A
// sequences; onQuit runs on Ctrl-A x.
type escapeFilter struct {
	r       io.Reader
	onQuit  func()
	escaped bool
}

func (f *escapeFilter) Read(p []byte) (int, error) {
	buf := make([]byte, len(p))
	for {
		n, err := f.r.Read(buf)
		out := p[:0]
		for _, b := range buf[:n] {
			switch {
			case f.escaped && (b == 'x' || b == 'X'):
				f.escaped = false
				f.onQuit()
			case f.escaped:
				f.escaped = false
				if b == escapeKey {
					out = append(out, b)
				}
			case b == escapeKey:
				f.escaped = true
			default:
				out = append(out, b)
			}
		}
		if len(out) > 0 || err != nil {
			return len(out), err
		}
	}
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
