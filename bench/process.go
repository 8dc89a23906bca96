package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"syscall"
	"time"
)

// console collects what a VMM prints (the guest's serial port plus the
// VMM's own messages) and remembers when each chunk arrived, so that the
// moment a line appeared can be told after the fact.
//
// One goroutine (the reader started by startVMM) appends; any goroutine
// may wait and read. mu guards every field.
type console struct {
	mu      sync.Mutex
	buf     []byte
	arrived []chunkTime
	closed  bool
	changed chan struct{} // closed and replaced on every append and at EOF
}

// chunkTime says that buf[:end] had arrived at offset at from the start.
type chunkTime struct {
	end int
	at  time.Duration
}

func newConsole() *console {
	return &console{changed: make(chan struct{})}
}

// add appends a chunk read at offset at from the process start.
func (c *console) add(b []byte, at time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = append(c.buf, b...)
	c.arrived = append(c.arrived, chunkTime{end: len(c.buf), at: at})
	close(c.changed)
	c.changed = make(chan struct{})
}

// close marks the end of the output (the process closed its side).
func (c *console) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.changed)
	}
}

// find looks for re in the output so far. at is the arrival time of the
// chunk that completed the match. changed is closed when more output
// arrives; eof says no more will.
func (c *console) find(re *regexp.Regexp) (match []string, at time.Duration, found, eof bool, changed <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	loc := re.FindSubmatchIndex(c.buf)
	if loc == nil {
		return nil, 0, false, c.closed, c.changed
	}
	for i := 0; i+1 < len(loc); i += 2 {
		if loc[i] >= 0 {
			match = append(match, string(c.buf[loc[i]:loc[i+1]]))
		} else {
			match = append(match, "")
		}
	}
	for _, ch := range c.arrived {
		if ch.end >= loc[1] {
			at = ch.at
			break
		}
	}
	return match, at, true, c.closed, c.changed
}

// tail returns the last n bytes of output, for error messages.
func (c *console) tail(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.buf
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// vmmProcess is one running VMM. Its methods may be called from one
// goroutine at a time (the benchmark's); the reader goroutine feeds out.
type vmmProcess struct {
	argv    []string
	cmd     *exec.Cmd
	start   time.Time
	out     *console
	exited  chan struct{} // closed once cmd.Wait returned
	waitErr error         // valid after exited is closed
}

// startVMM starts argv with stdout and stderr going to one pipe (or to a
// terminal when usePTY) and stdin from /dev/null (or the terminal). Time
// zero of every measurement is taken just before the fork. Everything the
// process prints is also copied to logPath.
//
// The process gets its own session, so a Ctrl-C on the harness's terminal
// reaches only the harness, which then kills the VMM by PID.
func startVMM(argv []string, usePTY bool, logPath string) (*vmmProcess, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("console log: %w", err)
	}
	p := &vmmProcess{argv: argv, out: newConsole(), exited: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}

	var reader *os.File // our end
	var childEnd *os.File
	if usePTY {
		master, slave, err := openPTY()
		if err != nil {
			logFile.Close()
			return nil, err
		}
		reader, childEnd = master, slave
		p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = slave, slave, slave
	} else {
		r, w, err := os.Pipe()
		if err != nil {
			logFile.Close()
			return nil, fmt.Errorf("console pipe: %w", err)
		}
		reader, childEnd = r, w
		p.cmd.Stdout, p.cmd.Stderr = w, w // Stdin nil: /dev/null
	}

	p.start = time.Now()
	err = p.cmd.Start()
	childEnd.Close() // the child holds its own copy; EOF comes when it exits
	if err != nil {
		reader.Close()
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	go p.readConsole(reader, logFile)
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// readConsole copies the process output into p.out until EOF. A terminal
// master reports EIO instead of EOF once the last slave fd is closed; both
// end the copy.
func (p *vmmProcess) readConsole(r *os.File, log io.WriteCloser) {
	defer r.Close()
	defer log.Close()
	defer p.out.close()
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			at := time.Since(p.start)
			p.out.add(buf[:n], at)
			log.Write(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// pid returns the VMM's process ID.
func (p *vmmProcess) pid() int { return p.cmd.Process.Pid }

// errExited says the process ended before the awaited output appeared.
var errExited = errors.New("process exited")

// waitFor waits until re matches the output and returns the match and the
// time from process start at which it arrived. It gives up on timeout, on
// ctx cancellation and when the process ends without printing it.
func (p *vmmProcess) waitFor(ctx context.Context, re *regexp.Regexp, timeout time.Duration) ([]string, time.Duration, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		m, at, found, eof, changed := p.out.find(re)
		if found {
			return m, at, nil
		}
		if eof {
			// Output is closed; let Wait finish so the status is known.
			select {
			case <-p.exited:
			case <-time.After(2 * time.Second):
			}
			return nil, 0, fmt.Errorf("%w (%s) without printing %q; last output: %q", errExited, p.status(), re, p.out.tail(400))
		}
		select {
		case <-changed:
		case <-deadline.C:
			return nil, 0, fmt.Errorf("no %q within %v; last output: %q", re, timeout, p.out.tail(400))
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
}

// waitExit waits up to timeout for the process to end by itself and
// returns its exit code.
func (p *vmmProcess) waitExit(ctx context.Context, timeout time.Duration) (int, error) {
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode(), nil
	case <-time.After(timeout):
		return -1, fmt.Errorf("still running %v after the guest finished", timeout)
	case <-ctx.Done():
		return -1, ctx.Err()
	}
}

// status describes how the process ended, or "running".
func (p *vmmProcess) status() string {
	select {
	case <-p.exited:
		if p.waitErr != nil {
			return p.waitErr.Error()
		}
		return "exit status 0"
	default:
		return "running"
	}
}

// kill sends SIGKILL to the VMM's PID (only to it) if it still runs and
// waits until it is reaped.
func (p *vmmProcess) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Kill()
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		fmt.Fprintf(os.Stderr, "bench: pid %d did not die within 10 s of SIGKILL\n", p.pid())
	}
}
