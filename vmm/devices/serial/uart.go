// Package serial emulates the 16550A UART that PCs have at COM1: the guest's
// console. A driver sees the usual eight registers; bytes it transmits go to
// an io.Writer the VMM supplies, and console input the VMM enqueues lands in
// the 16-byte receive FIFO.
//
// There is no wire, so nothing takes time: a byte written to THR is handed
// to the writer at once and the transmitter is always empty again by the
// next register access. The baud-rate divisor, word length and parity are
// stored and read back but change nothing.
//
// Interrupts. A real UART has one interrupt output that stays high while any
// enabled condition is pending (IIR bit 0 clear), and the PC's interrupt
// controller, programmed for edge triggering on ISA lines, reacts to its
// rising edge. Our devices.Line is a pulse (an irqfd on the in-kernel
// irqchip), so the UART tracks the level of that output and pulses the line
// each time it goes from low to high. A driver that services every pending
// condition (Linux loops on IIR until it reads "no interrupt") therefore
// sees one interrupt per new burst of work, exactly as on hardware.
package serial

import (
	"fmt"
	"io"

	"gureum/vmm/devices"
)

// Config is what the VMM gives a UART.
type Config struct {
	// Output receives every byte the guest transmits, one Write call per
	// THR write, as device code (under the event loop's device lock). It must not block: the event
	// loop (and with it every device of the VM) waits for Write to return.
	// A writer that feeds slow consumers (a terminal, a socket client) must
	// queue or drop on its own. A Write error is counted and the byte is
	// lost; the guest is not told. Nil discards output.
	Output io.Writer
	// IRQ is the UART's interrupt line (IRQ 4 for COM1). Nil leaves the
	// guest to poll LSR, which a simple guest does anyway.
	IRQ devices.Line
	// RXSpace, if set, runs on the event loop when the guest has emptied
	// the receive FIFO. Console input that Enqueue could not take should be
	// offered again then. It may call Enqueue.
	RXSpace func()
}

// UART is one emulated 16550A. All methods except Metrics must be called on
// device code (under the VM's device lock); they never block except inside
// Config.Output.Write.
type UART struct {
	out     io.Writer
	irq     devices.Line
	rxSpace func()

	ier      byte
	lcr      byte
	mcr      byte
	scr      byte
	fcr      byte // FIFO enable and trigger bits of the last FCR write
	dll, dlm byte // divisor latch

	rx              rxFIFO
	overrun         bool // LSR.OE, latched until LSR is read
	thrEmptyPending bool // THRE interrupt condition; cleared by an IIR read that reports it, or a THR write
	msrDelta        byte // MSR change bits, cleared by an MSR read

	irqLevel bool    // the interrupt output as last computed
	txByte   [1]byte // reused buffer for Output.Write

	counters counters
}

// New makes a UART in its power-on state.
func New(cfg Config) *UART {
	u := &UART{out: cfg.Output, irq: cfg.IRQ, rxSpace: cfg.RXSpace}
	if u.out == nil {
		u.out = io.Discard
	}
	u.Reset()
	return u
}

// Reset puts the registers back to their power-on values and empties the
// receive FIFO, as a machine reset does. Metrics keep counting.
func (u *UART) Reset() {
	u.ier, u.lcr, u.mcr, u.scr, u.fcr = 0, 0, 0, 0, 0
	u.dll, u.dlm = defaultDivisor, 0
	u.rx.clear()
	u.overrun = false
	u.thrEmptyPending = false
	u.msrDelta = 0
	u.irqLevel = false
}

// Read handles a guest read of the UART's registers. A wider access reads
// consecutive registers, one byte each, as an 8-bit ISA device answers.
func (u *UART) Read(offset uint64, data []byte) {
	drained := false
	for i := range data {
		var d bool
		data[i], d = u.readRegister(offset + uint64(i))
		drained = drained || d
	}
	u.updateInterrupt()
	if drained && u.rxSpace != nil {
		u.rxSpace()
	}
}

// Write handles a guest write to the UART's registers, one byte per
// register for a wider access.
func (u *UART) Write(offset uint64, data []byte) {
	drained := false
	for i, b := range data {
		drained = u.writeRegister(offset+uint64(i), b) || drained
	}
	u.updateInterrupt()
	if drained && u.rxSpace != nil {
		u.rxSpace()
	}
}

// readRegister returns the value of one register. drained reports that the
// read emptied the receive FIFO.
func (u *UART) readRegister(offset uint64) (v byte, drained bool) {
	dlab := u.lcr&lcrDLAB != 0
	switch offset {
	case regData:
		if dlab {
			return u.dll, false
		}
		b, ok := u.rx.pop()
		return b, ok && u.rx.len() == 0
	case regIER:
		if dlab {
			return u.dlm, false
		}
		return u.ier, false
	case regIIR:
		id := u.pendingInterrupt()
		if id == iirTHRE {
			// Reading IIR while it reports THRE acknowledges that
			// interrupt; it comes back with the next THR write.
			u.thrEmptyPending = false
		}
		if u.fcr&fcrEnable != 0 {
			id |= iirFIFOBits
		}
		return id, false
	case regLCR:
		return u.lcr, false
	case regMCR:
		return u.mcr, false
	case regLSR:
		v := byte(lsrTHRE | lsrTEMT)
		if u.rx.len() > 0 {
			v |= lsrDR
		}
		if u.overrun {
			v |= lsrOE
			u.overrun = false
		}
		return v, false
	case regMSR:
		v := u.modemInputs() | u.msrDelta
		u.msrDelta = 0
		return v, false
	case regSCR:
		return u.scr, false
	}
	return 0xff, false
}

// writeRegister sets one register. It reports whether the write emptied a
// non-empty receive FIFO (an FCR reset or a FIFO mode change).
func (u *UART) writeRegister(offset uint64, v byte) (drained bool) {
	dlab := u.lcr&lcrDLAB != 0
	switch offset {
	case regData:
		if dlab {
			u.dll = v
			return false
		}
		u.transmit(v)
	case regIER:
		if dlab {
			u.dlm = v
			return false
		}
		old := u.ier
		u.ier = v & ierMask
		// A 16550A raises THRE as soon as the interrupt is enabled
		// while the transmitter is empty (ours always is). Linux's
		// start-up tests and its transmit path depend on that.
		if u.ier&ierTHRE != 0 && old&ierTHRE == 0 {
			u.thrEmptyPending = true
		}
		if u.ier&ierTHRE == 0 {
			u.thrEmptyPending = false
		}
	case regIIR: // FCR
		had := u.rx.len() > 0
		if (v^u.fcr)&fcrEnable != 0 {
			// Switching between FIFO and single-byte mode empties
			// both FIFOs on a 16550A.
			u.rx.clear()
		}
		if v&fcrClearRX != 0 {
			u.rx.clear()
		}
		// fcrClearTX needs nothing: the transmitter never holds bytes.
		u.fcr = v & (fcrEnable | fcrTriggerMask)
		return had && u.rx.len() == 0
	case regLCR:
		u.lcr = v
	case regMCR:
		before := u.modemInputs()
		u.mcr = v & mcrMask
		u.noteModemChange(before, u.modemInputs())
	case regLSR:
		// Writable only for factory tests on real parts; ignored.
	case regMSR:
		// Read-only.
	case regSCR:
		u.scr = v
	}
	return false
}

// transmit handles a THR write: out to the console, or back into the
// receiver in loopback mode. Either way the transmitter is idle again at
// once, so the THRE interrupt condition becomes true again.
func (u *UART) transmit(b byte) {
	if u.mcr&mcrLoop != 0 {
		if !u.rx.push(b, u.rxCapacity()) {
			u.overrun = true
		}
	} else {
		u.txByte[0] = b
		if _, err := u.out.Write(u.txByte[:]); err != nil {
			u.counters.outputErrors.Add(1)
		} else {
			u.counters.bytesOut.Add(1)
		}
	}
	u.thrEmptyPending = true
}

// modemInputs is the high nibble of MSR: the modem inputs as the UART sees
// them. Outside loopback a console has nobody at the other end to drop a
// line, so carrier, data-set-ready and clear-to-send are always on.
func (u *UART) modemInputs() byte {
	if u.mcr&mcrLoop == 0 {
		return msrDCD | msrDSR | msrCTS
	}
	var v byte
	if u.mcr&mcrRTS != 0 {
		v |= msrCTS
	}
	if u.mcr&mcrDTR != 0 {
		v |= msrDSR
	}
	if u.mcr&mcrOUT1 != 0 {
		v |= msrRI
	}
	if u.mcr&mcrOUT2 != 0 {
		v |= msrDCD
	}
	return v
}

// noteModemChange sets the MSR change bits for inputs that moved.
func (u *UART) noteModemChange(before, after byte) {
	changed := before ^ after
	if changed&msrCTS != 0 {
		u.msrDelta |= msrDCTS
	}
	if changed&msrDSR != 0 {
		u.msrDelta |= msrDDSR
	}
	if changed&msrDCD != 0 {
		u.msrDelta |= msrDDCD
	}
	if before&msrRI != 0 && after&msrRI == 0 {
		u.msrDelta |= msrTERI // trailing edge only, as on the chip
	}
}

// DescribeState reports the registers and interrupt state, for diagnosing
// a guest whose console stalls: an output level that is high with no
// interrupt taken by the guest means the edge was lost.
func (u *UART) DescribeState() string {
	return fmt.Sprintf("ier=%#x lcr=%#x mcr=%#x fcr=%#x rx=%d thre_pending=%t overrun=%t pending_iir=%#x irq_level=%t interrupts=%d",
		u.ier, u.lcr, u.mcr, u.fcr, u.rx.len(), u.thrEmptyPending, u.overrun, u.pendingInterrupt(), u.irqLevel, u.counters.interrupts.Load())
}
