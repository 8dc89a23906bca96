package vmm

import (
	"io"
	"net"
	"os"
	"sync"
)

// Console fans the guest's serial output out to a log file, an optional
// foreground writer (the terminal) and every client attached to the console
// socket, and feeds what clients type back to the serial port.
//
// Write is called on the event loop and never blocks on a sink: bytes go to
// a buffer that a separate goroutine drains. If the sinks fall behind by
// more than maxBacklog bytes, the oldest bytes are dropped and counted.
type Console struct {
	mu      sync.Mutex
	cond    *sync.Cond
	backlog []byte
	dropped uint64
	closed  bool
	sinks   []io.Writer
	clients map[net.Conn]struct{}
	input   func([]byte) // delivers typed bytes to the guest; set by the VM
	ln      net.Listener
	done    chan struct{}
}

const maxBacklog = 1 << 20

// NewConsole makes a console writing to the given sinks (nil ones are
// skipped).
func NewConsole(sinks ...io.Writer) *Console {
	c := &Console{clients: map[net.Conn]struct{}{}, done: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	for _, s := range sinks {
		if s != nil {
			c.sinks = append(c.sinks, s)
		}
	}
	go c.drain()
	return c
}

// Write queues guest output. It never blocks on the sinks.
func (c *Console) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.backlog = append(c.backlog, p...)
	if over := len(c.backlog) - maxBacklog; over > 0 {
		c.backlog = c.backlog[over:]
		c.dropped += uint64(over)
	}
	c.mu.Unlock()
	c.cond.Signal()
	return len(p), nil
}

func (c *Console) drain() {
	defer close(c.done)
	for {
		c.mu.Lock()
		for len(c.backlog) == 0 && !c.closed {
			c.cond.Wait()
		}
		if len(c.backlog) == 0 && c.closed {
			c.mu.Unlock()
			return
		}
		buf := c.backlog
		c.backlog = nil
		sinks := append([]io.Writer(nil), c.sinks...)
		var clients []net.Conn
		for cl := range c.clients {
			clients = append(clients, cl)
		}
		c.mu.Unlock()
		for _, s := range sinks {
			s.Write(buf) // a failing sink (closed terminal) must not stop the others
		}
		for _, cl := range clients {
			if _, err := cl.Write(buf); err != nil {
				c.detach(cl)
			}
		}
	}
}

// setInput sets where typed bytes go (the serial port's receive FIFO).
func (c *Console) setInput(fn func([]byte)) {
	c.mu.Lock()
	c.input = fn
	c.mu.Unlock()
}

// Type sends bytes to the guest as if typed on the serial line.
func (c *Console) Type(p []byte) {
	c.mu.Lock()
	in := c.input
	c.mu.Unlock()
	if in != nil && len(p) > 0 {
		in(append([]byte(nil), p...))
	}
}

// ReadInputFrom copies r (the terminal in foreground mode) to the guest
// until r ends.
func (c *Console) ReadInputFrom(r io.Reader) {
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			c.Type(buf[:n])
			if err != nil {
				return
			}
		}
	}()
}

// Listen serves the console on a unix socket: each client sees the output
// from the moment it attaches and what it writes is typed into the guest.
func (c *Console) Listen(path string) error {
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	os.Chmod(path, 0o600)
	c.ln = ln
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			c.clients[conn] = struct{}{}
			c.mu.Unlock()
			go func() {
				buf := make([]byte, 1024)
				for {
					n, err := conn.Read(buf)
					c.Type(buf[:n])
					if err != nil {
						c.detach(conn)
						return
					}
				}
			}()
		}
	}()
	return nil
}

func (c *Console) detach(conn net.Conn) {
	c.mu.Lock()
	delete(c.clients, conn)
	c.mu.Unlock()
	conn.Close()
}

// Dropped reports how many output bytes were dropped because the sinks
// fell behind.
func (c *Console) Dropped() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}

// Close flushes pending output, closes the socket and detaches clients.
func (c *Console) Close() error {
	if c.ln != nil {
		c.ln.Close()
	}
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cond.Signal()
	<-c.done
	c.mu.Lock()
	for cl := range c.clients {
		cl.Close()
	}
	c.clients = map[net.Conn]struct{}{}
	c.mu.Unlock()
	return nil
}
