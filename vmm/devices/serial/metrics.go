package serial

import "sync/atomic"

// Metrics is a snapshot of a UART's counters.
type Metrics struct {
	BytesOut        uint64 // bytes the guest transmitted to the console
	BytesIn         uint64 // console bytes the guest was given (accepted by Enqueue)
	OutputErrors    uint64 // transmitted bytes lost because Output.Write failed
	Interrupts      uint64 // pulses sent on the interrupt line
	InterruptErrors uint64 // pulses the line failed to deliver
}

// counters are atomic so that Metrics may be read from any goroutine (the
// VMM's metrics collector) while the event loop updates them.
type counters struct {
	bytesOut, bytesIn, outputErrors, interrupts, interruptErrors atomic.Uint64
}

// Metrics returns the UART's counters. Safe to call from any goroutine.
func (u *UART) Metrics() Metrics {
	return Metrics{
		BytesOut:        u.counters.bytesOut.Load(),
		BytesIn:         u.counters.bytesIn.Load(),
		OutputErrors:    u.counters.outputErrors.Load(),
		Interrupts:      u.counters.interrupts.Load(),
		InterruptErrors: u.counters.interruptErrors.Load(),
	}
}
