package i8042

import "sync/atomic"

// Metrics is a snapshot of the controller's counters.
type Metrics struct {
	Resets          uint64 // CPU reset pulses the guest asked for
	CtrlAltDels     uint64 // Ctrl-Alt-Del sequences queued for the guest
	KeysDropped     uint64 // Ctrl-Alt-Del requests refused (scanning off or buffer full)
	UnknownCommands uint64 // controller commands that are not emulated
	Interrupts      uint64 // pulses sent on IRQ 1
	InterruptErrors uint64 // pulses the line failed to deliver
}

// counters are atomic so that Metrics may be read from any goroutine.
type counters struct {
	resets, ctrlAltDels, keysDropped, unknownCommands, interrupts, interruptErrors atomic.Uint64
}

// Metrics returns the controller's counters. Safe to call from any goroutine.
func (c *Controller) Metrics() Metrics {
	return Metrics{
		Resets:          c.counters.resets.Load(),
		CtrlAltDels:     c.counters.ctrlAltDels.Load(),
		KeysDropped:     c.counters.keysDropped.Load(),
		UnknownCommands: c.counters.unknownCommands.Load(),
		Interrupts:      c.counters.interrupts.Load(),
		InterruptErrors: c.counters.interruptErrors.Load(),
	}
}
