package images

import (
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// progress reports the build's steps: a bar redrawn in place on a terminal,
// one plain line per step otherwise (logs, CI). Used by the building
// goroutine only.
type progress struct {
	w     io.Writer
	tty   bool
	total int
	done  int
}

func newProgress(w io.Writer, total int) *progress {
	if w == nil {
		w = io.Discard
	}
	return &progress{w: w, tty: isTerminal(w), total: total}
}

// isTerminal reports whether w is a file open on a terminal (TCGETS works
// only on ttys).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// step announces the next step; the bar shows the steps finished so far.
func (p *progress) step(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if p.tty {
		const width = 24
		filled := width * p.done / max(p.total, 1)
		fmt.Fprintf(p.w, "\r[%s%s] %d/%d %s\x1b[K",
			strings.Repeat("#", filled), strings.Repeat("-", width-filled), p.done, p.total, msg)
	} else {
		fmt.Fprintf(p.w, "gureum image: [%d/%d] %s\n", p.done+1, p.total, msg)
	}
	p.done = min(p.done+1, p.total)
}

// finish ends the bar with a final message on its own line.
func (p *progress) finish(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if p.tty {
		fmt.Fprintf(p.w, "\r[%s] %d/%d %s\x1b[K\n", strings.Repeat("#", 24), p.total, p.total, msg)
	} else {
		fmt.Fprintf(p.w, "gureum image: %s\n", msg)
	}
}
