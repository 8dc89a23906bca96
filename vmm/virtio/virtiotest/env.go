package virtiotest

import (
	"fmt"
	"sync"

	"gureum/vmm/virtio"
)

// MSI is a fake MSI controller that records every message. It is safe for
// concurrent use.
type MSI struct {
	mu   sync.Mutex
	msgs []MSIMessage
}

// MSIMessage is one interrupt as the device signalled it.
type MSIMessage struct {
	Addr uint64
	Data uint32
}

// SignalMSI records the message.
func (m *MSI) SignalMSI(addr uint64, data uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.msgs = append(m.msgs, MSIMessage{addr, data})
	return nil
}

// Take returns the messages recorded since the last Take.
func (m *MSI) Take() []MSIMessage {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.msgs
	m.msgs = nil
	return out
}

// NotifyHub is a fake ioeventfd hub: it records registrations, and Kick runs
// the registered handler as the event loop would.
type NotifyHub struct {
	mu   sync.Mutex
	regs map[uint64]func()
	// Fail makes RegisterIOEvent fail, to test the plain-MMIO fallback.
	Fail bool
}

// RegisterIOEvent records onKick for addr.
func (h *NotifyHub) RegisterIOEvent(addr uint64, size int, onKick func()) (func(), error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.Fail {
		return nil, fmt.Errorf("register ioeventfd at %#x: refused by test", addr)
	}
	if h.regs == nil {
		h.regs = make(map[uint64]func())
	}
	if _, dup := h.regs[addr]; dup {
		return nil, fmt.Errorf("register ioeventfd at %#x: already registered", addr)
	}
	h.regs[addr] = onKick
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.regs, addr)
	}, nil
}

// Registered reports whether an ioeventfd is registered at addr.
func (h *NotifyHub) Registered(addr uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.regs[addr]
	return ok
}

// Count is the number of live registrations.
func (h *NotifyHub) Count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.regs)
}

// Kick runs the handler registered at addr, as if the guest wrote there, and
// reports whether there was one.
func (h *NotifyHub) Kick(addr uint64) bool {
	h.mu.Lock()
	fn := h.regs[addr]
	h.mu.Unlock()
	if fn == nil {
		return false
	}
	fn()
	return true
}

// Loop is a fake event loop: Post queues work and Run drains it on the
// caller's goroutine, which stands for the loop goroutine.
type Loop struct {
	mu    sync.Mutex
	queue []func()
}

// Post queues fn.
func (l *Loop) Post(fn func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.queue = append(l.queue, fn)
}

// Run runs queued work until none is left, and returns how many ran.
func (l *Loop) Run() int {
	n := 0
	for {
		l.mu.Lock()
		q := l.queue
		l.queue = nil
		l.mu.Unlock()
		if len(q) == 0 {
			return n
		}
		for _, fn := range q {
			fn()
			n++
		}
	}
}

// Interrupts is a fake virtio.Interrupter that counts calls, for device
// tests that run without a transport.
type Interrupts struct {
	Queues  []int // count per queue index
	Configs int   // count of configuration-change interrupts
}

// Queue counts an interrupt for queue i.
func (irq *Interrupts) Queue(i int) {
	for len(irq.Queues) <= i {
		irq.Queues = append(irq.Queues, 0)
	}
	irq.Queues[i]++
}

// Config counts a configuration-change interrupt.
func (irq *Interrupts) Config() { irq.Configs++ }

// QueueCount is the number of interrupts queue i raised.
func (irq *Interrupts) QueueCount(i int) int {
	if i < len(irq.Queues) {
		return irq.Queues[i]
	}
	return 0
}

var _ virtio.MSIController = (*MSI)(nil)
var _ virtio.NotifyHub = (*NotifyHub)(nil)
var _ virtio.Loop = (*Loop)(nil)
var _ virtio.Interrupter = (*Interrupts)(nil)
