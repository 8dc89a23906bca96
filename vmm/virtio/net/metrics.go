package net

import "sync/atomic"

// Metrics are a card's counters since it was created. Bytes count frames
// without the virtio_net_hdr.
type Metrics struct {
	RxPackets, RxBytes uint64
	// RxDropped counts frames the guest had no room for: a frame longer
	// than the one receive chain offered (without MRG_RXBUF), or longer
	// than any frame the device takes. Frames that wait in the tap while
	// the guest has no buffers at all are dropped by the host kernel and
	// show in the tap's own statistics instead.
	RxDropped uint64
	// RxErrors counts receive chains the device could not use (readable
	// buffers, too small for a header, too many buffers, outside RAM) and
	// backend read failures.
	RxErrors uint64

	TxPackets, TxBytes uint64
	// TxDropped counts frames the host refused for want of room or
	// because the interface was down.
	TxDropped uint64
	// TxErrors counts malformed transmit chains, frames too short or too
	// long, refused headers, and other write failures.
	TxErrors uint64
}

// counters are updated on the event loop and read from any goroutine.
type counters struct {
	rxPackets, rxBytes, rxDropped, rxErrors atomic.Uint64
	txPackets, txBytes, txDropped, txErrors atomic.Uint64
}

// Metrics returns a snapshot of the counters. It may be called from any
// goroutine.
func (d *Device) Metrics() Metrics {
	c := &d.counters
	return Metrics{
		RxPackets: c.rxPackets.Load(), RxBytes: c.rxBytes.Load(),
		RxDropped: c.rxDropped.Load(), RxErrors: c.rxErrors.Load(),
		TxPackets: c.txPackets.Load(), TxBytes: c.txBytes.Load(),
		TxDropped: c.txDropped.Load(), TxErrors: c.txErrors.Load(),
	}
}
