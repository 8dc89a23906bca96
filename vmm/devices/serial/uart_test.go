package serial

import (
	"bytes"
	"errors"
	"testing"
)

// pulseLine counts interrupt pulses, as the in-kernel irqchip would see them.
type pulseLine struct {
	pulses int
	err    error
}

func (l *pulseLine) Trigger() error {
	if l.err != nil {
		return l.err
	}
	l.pulses++
	return nil
}

type rig struct {
	t      *testing.T
	u      *UART
	out    *bytes.Buffer
	line   *pulseLine
	spaces int // RXSpace calls
}

func newRig(t *testing.T) *rig {
	r := &rig{t: t, out: &bytes.Buffer{}, line: &pulseLine{}}
	r.u = New(Config{Output: r.out, IRQ: r.line, RXSpace: func() { r.spaces++ }})
	return r
}

func (r *rig) in(off uint64) byte {
	var b [1]byte
	r.u.Read(off, b[:])
	return b[0]
}

func (r *rig) outb(off uint64, v byte) { r.u.Write(off, []byte{v}) }

func (r *rig) expect(what string, got, want byte) {
	r.t.Helper()
	if got != want {
		r.t.Fatalf("%s = %#02x, want %#02x", what, got, want)
	}
}

func (r *rig) expectPulses(want int) {
	r.t.Helper()
	if r.line.pulses != want {
		r.t.Fatalf("interrupt pulses = %d, want %d", r.line.pulses, want)
	}
}

// TestLinuxAutoconfig walks the register sequence of Linux's 8250 probe
// (autoconfig and autoconfig_16550a) and checks that it would conclude
// "16550A".
func TestLinuxAutoconfig(t *testing.T) {
	r := newRig(t)

	// Existence test: IER must keep exactly the four low bits.
	r.outb(regIER, 0)
	r.expect("IER after 0", r.in(regIER)&0x0f, 0)
	r.outb(regIER, 0x0f)
	r.expect("IER after 0x0f", r.in(regIER)&0x0f, 0x0f)
	r.outb(regIER, 0)

	// Loopback test: MCR = LOOP|OUT2|RTS must read back DCD|CTS.
	saveMCR := r.in(regMCR)
	r.outb(regMCR, mcrLoop|0x0a)
	r.expect("MSR in loopback", r.in(regMSR)&0xf0, 0x90)
	r.outb(regMCR, saveMCR)

	// FIFO test: with FCR enable, IIR bits 6..7 must both be set.
	r.outb(regLCR, 0xbf)
	r.outb(regLCR, 0)
	r.outb(regIIR, fcrEnable)
	r.expect("IIR>>6 with FIFOs", r.in(regIIR)>>6, 3)

	// No EFR: at LCR 0x80 and 0xbf offset 2 must not read as zero.
	r.outb(regLCR, 0x80)
	if r.in(regIIR) == 0 {
		t.Fatal("offset 2 reads 0 with LCR=0x80: Linux would look for a 16650 EFR")
	}
	r.outb(regLCR, 0xbf)
	if r.in(regIIR) == 0 {
		t.Fatal("offset 2 reads 0 with LCR=0xbf: Linux would take this for a 16650")
	}

	// National Semiconductor check: offset 2 at LCR 0xe0 must not follow
	// MCR.LOOP.
	r.outb(regLCR, 0)
	status1 := r.in(regMCR)
	r.outb(regLCR, 0xe0)
	status2 := r.in(regIIR)
	if (status1^status2)&mcrLoop == 0 {
		r.outb(regLCR, 0)
		r.outb(regMCR, status1^mcrLoop)
		r.outb(regLCR, 0xe0)
		status2 = r.in(regIIR)
		r.outb(regLCR, 0)
		r.outb(regMCR, status1)
		if (status2^status1)&mcrLoop != 0 {
			t.Fatal("UART looks like a National Semiconductor 16550A variant")
		}
	}

	// 16750 check: IIR bit 5 (64-byte FIFO) must stay clear.
	r.outb(regLCR, 0)
	r.outb(regIIR, fcrEnable|0x20)
	s1 := r.in(regIIR) >> 5
	r.outb(regIIR, fcrEnable)
	r.outb(regLCR, 0x80)
	r.outb(regIIR, fcrEnable|0x20)
	s2 := r.in(regIIR) >> 5
	r.outb(regIIR, fcrEnable)
	r.outb(regLCR, 0)
	if s1 != 6 || s2 != 6 {
		t.Fatalf("IIR>>5 = %d, %d; want 6, 6 (a 16550A, not a 16750)", s1, s2)
	}

	// XScale check: IER bit 6 must not stick.
	r.outb(regIER, 0x40)
	r.expect("IER after UUE write", r.in(regIER)&0x40, 0)
	r.outb(regIER, 0)

	// Reset as Linux leaves it: the line status must not read 0xff.
	r.outb(regIIR, fcrEnable|fcrClearRX|fcrClearTX)
	r.outb(regIIR, 0)
	r.in(regData)
	if r.in(regLSR) == 0xff {
		t.Fatal("LSR reads 0xff: Linux would think the port is absent")
	}
}

// TestLinuxStartupTHRETests replays serial8250_do_startup's two checks that
// the UART raises THRE when the interrupt is enabled with an idle
// transmitter, including after it has been acknowledged.
func TestLinuxStartupTHRETests(t *testing.T) {
	r := newRig(t)
	r.outb(regIIR, fcrEnable|fcrClearRX|fcrClearTX|0x80)
	r.outb(regLCR, 0x03)

	// UART_BUG_THRE test.
	r.outb(regIER, ierTHRE)
	iir1 := r.in(regIIR)
	r.outb(regIER, 0)
	r.outb(regIER, ierTHRE)
	iir := r.in(regIIR)
	r.outb(regIER, 0)
	if iir1&iirNone != 0 || iir&iirNone != 0 {
		t.Fatalf("IIR after enabling THRI = %#x then %#x; want THRE pending both times", iir1, iir)
	}
	r.expect("IIR id", iir&0x0f, iirTHRE)

	// UART_BUG_TXEN test.
	r.outb(regIER, ierTHRE)
	lsr := r.in(regLSR)
	iir = r.in(regIIR)
	r.outb(regIER, 0)
	if lsr&lsrTEMT == 0 || iir&iirNone != 0 {
		t.Fatalf("LSR %#x IIR %#x: Linux would set UART_BUG_TXEN", lsr, iir)
	}
	// Three enables with THRI, three rising edges.
	r.expectPulses(3)
}

// TestTransmitWithInterrupts follows Linux's interrupt-driven transmit: the
// driver enables THRI, and each THRE interrupt lets it write a burst.
func TestTransmitWithInterrupts(t *testing.T) {
	r := newRig(t)
	r.outb(regIIR, fcrEnable)
	r.outb(regIER, ierRDA|ierRLS)
	r.expectPulses(0)

	r.outb(regIER, ierRDA|ierRLS|ierTHRE) // start_tx
	r.expectPulses(1)
	msg := []byte("hello from the guest\n")
	for len(msg) > 0 {
		// Interrupt handler: read IIR until no interrupt is pending.
		iir := r.in(regIIR)
		if iir&iirNone != 0 {
			t.Fatal("interrupt delivered but IIR shows none pending")
		}
		r.expect("IIR id", iir&0x0f, iirTHRE)
		if r.in(regLSR)&lsrTHRE == 0 {
			t.Fatal("LSR.THRE clear")
		}
		n := min(len(msg), fifoSize)
		for _, b := range msg[:n] {
			r.outb(regData, b)
		}
		msg = msg[n:]
	}
	r.in(regIIR)                        // acknowledge the last THRE
	r.outb(regIER, ierRDA|ierRLS)       // stop_tx
	r.expect("IIR", r.in(regIIR), 0xc1) // nothing pending
	if got := r.out.String(); got != "hello from the guest\n" {
		t.Fatalf("output %q", got)
	}
	if m := r.u.Metrics(); m.BytesOut != 21 || m.Interrupts != uint64(r.line.pulses) {
		t.Fatalf("metrics %+v, pulses %d", m, r.line.pulses)
	}
	// One pulse for enabling THRI and one per burst after the handler
	// acknowledged the previous THRE.
	r.expectPulses(3)
}

// TestPollingGuest is a guest that never enables interrupts and polls
// LSR.THRE before each byte.
func TestPollingGuest(t *testing.T) {
	r := newRig(t)
	for _, b := range []byte("ok\r\n") {
		if r.in(regLSR)&lsrTHRE == 0 {
			t.Fatal("LSR.THRE clear: the transmitter is always idle")
		}
		r.outb(regData, b)
	}
	if r.out.String() != "ok\r\n" {
		t.Fatalf("output %q", r.out.String())
	}
	r.expectPulses(0)
}

func TestReceiveFIFO(t *testing.T) {
	r := newRig(t)
	r.outb(regIIR, fcrEnable|0x80) // trigger level 8, as Linux sets it
	r.outb(regIER, ierRDA|ierRLS)

	if n := r.u.Enqueue([]byte("abc")); n != 3 {
		t.Fatalf("Enqueue took %d bytes, want 3", n)
	}
	r.expectPulses(1)
	r.expect("IIR below trigger level", r.in(regIIR), 0xc0|iirTimeout)
	// More input before the guest reads: the output is already high, so
	// no new edge.
	r.u.Enqueue([]byte("defghij"))
	r.expectPulses(1)
	r.expect("IIR at trigger level", r.in(regIIR), 0xc0|iirRDA)

	var got []byte
	for r.in(regLSR)&lsrDR != 0 {
		got = append(got, r.in(regData))
	}
	if string(got) != "abcdefghij" {
		t.Fatalf("received %q", got)
	}
	r.expect("IIR when drained", r.in(regIIR), 0xc1)
	if r.spaces != 1 {
		t.Fatalf("RXSpace ran %d times, want 1", r.spaces)
	}

	// New input after draining is a new edge.
	r.u.Enqueue([]byte("k"))
	r.expectPulses(2)

	// The FIFO holds 16 bytes; the caller keeps the rest.
	r.outb(regIIR, fcrEnable|fcrClearRX)
	if r.spaces != 2 {
		t.Fatalf("RXSpace after FCR clear ran %d times, want 2", r.spaces)
	}
	if n := r.u.Enqueue(bytes.Repeat([]byte{'x'}, 20)); n != fifoSize {
		t.Fatalf("Enqueue into empty FIFO took %d, want %d", n, fifoSize)
	}
	if n := r.u.Enqueue([]byte("y")); n != 0 {
		t.Fatalf("Enqueue into full FIFO took %d", n)
	}
	if r.in(regLSR)&lsrOE != 0 {
		t.Fatal("console input beyond the FIFO must be held back, not overrun")
	}
	if m := r.u.Metrics(); m.BytesIn != 10+1+16 {
		t.Fatalf("BytesIn = %d, want 27", m.BytesIn)
	}
}

func TestReceiveWithoutFIFOHoldsOneByte(t *testing.T) {
	r := newRig(t)
	if n := r.u.Enqueue([]byte("ab")); n != 1 {
		t.Fatalf("Enqueue took %d bytes in 16450 mode, want 1", n)
	}
	r.expect("IIR without FIFOs", r.in(regIIR), iirNone)
	r.expectPulses(0) // interrupts not enabled
	r.expect("RBR", r.in(regData), 'a')
	r.expect("RBR when empty", r.in(regLSR)&lsrDR, 0)
}

// RXSpace may feed the next bytes straight back in.
func TestRXSpaceRefills(t *testing.T) {
	pending := []byte("0123456789abcdefghij")
	var u *UART
	u = New(Config{RXSpace: func() { pending = pending[u.Enqueue(pending):] }})
	u.Write(regIIR, []byte{fcrEnable})
	pending = pending[u.Enqueue(pending):]
	var got []byte
	b := make([]byte, 1)
	for {
		u.Read(regLSR, b)
		if b[0]&lsrDR == 0 {
			break
		}
		u.Read(regData, b)
		got = append(got, b[0])
	}
	if string(got) != "0123456789abcdefghij" {
		t.Fatalf("received %q", got)
	}
}

func TestLoopback(t *testing.T) {
	r := newRig(t)
	r.outb(regIIR, fcrEnable)
	r.outb(regMCR, mcrLoop)
	r.outb(regIER, ierRDA|ierRLS)
	r.outb(regData, 'x')
	if r.out.Len() != 0 {
		t.Fatal("loopback byte reached the console")
	}
	r.expect("LSR", r.in(regLSR)&lsrDR, lsrDR)
	r.expect("RBR", r.in(regData), 'x')
	if n := r.u.Enqueue([]byte("z")); n != 0 {
		t.Fatal("console input accepted while the receiver is in loopback")
	}

	// Overrun: a 17th byte with the FIFO full sets LSR.OE and raises the
	// line-status interrupt, which outranks received data.
	for i := 0; i <= fifoSize; i++ {
		r.outb(regData, byte(i))
	}
	r.expect("IIR on overrun", r.in(regIIR), 0xc0|iirRLS)
	r.expect("LSR", r.in(regLSR)&(lsrOE|lsrDR), lsrOE|lsrDR)
	r.expect("LSR.OE after read", r.in(regLSR)&lsrOE, 0)
	r.expect("IIR after LSR read", r.in(regIIR), 0xc0|iirRDA)
}

func TestModemStatusChanges(t *testing.T) {
	r := newRig(t)
	r.expect("MSR outside loopback", r.in(regMSR), msrDCD|msrDSR|msrCTS)
	r.outb(regIER, ierMS)
	r.outb(regMCR, mcrLoop|mcrOUT1|mcrDTR)
	r.expectPulses(1)
	r.expect("IIR", r.in(regIIR), iirMS)
	// Entering loopback dropped CTS and DCD (RTS and OUT2 are off) and
	// kept DSR (DTR on).
	r.expect("MSR", r.in(regMSR), msrDSR|msrRI|msrDCTS|msrDDCD)
	r.expect("MSR deltas cleared", r.in(regMSR)&0x0f, 0)
	r.expect("IIR", r.in(regIIR), iirNone)
	r.outb(regMCR, mcrLoop|mcrDTR) // RI falls: trailing edge
	r.expect("MSR", r.in(regMSR), msrDSR|msrTERI)
	r.expectPulses(2)
}

func TestDivisorLatchAndScratch(t *testing.T) {
	r := newRig(t)
	r.expect("DLL at power-on", func() byte { r.outb(regLCR, lcrDLAB); return r.in(regData) }(), defaultDivisor)
	r.outb(regData, 0x01) // 115200 baud
	r.outb(regIER, 0x00)
	r.outb(regLCR, 0x03)
	r.expect("IER untouched by DLM write", r.in(regIER), 0)
	r.outb(regLCR, 0x83)
	r.expect("DLL", r.in(regData), 0x01)
	r.expect("DLM", r.in(regIER), 0x00)
	r.outb(regLCR, 0x03)
	r.expect("LCR", r.in(regLCR), 0x03)
	if r.out.Len() != 0 {
		t.Fatal("divisor writes reached the console")
	}
	r.outb(regSCR, 0xa5)
	r.expect("SCR", r.in(regSCR), 0xa5)
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("sink gone") }

func TestErrorsAreCounted(t *testing.T) {
	line := &pulseLine{err: errors.New("irqfd closed")}
	u := New(Config{Output: failingWriter{}, IRQ: line})
	u.Write(regIER, []byte{ierTHRE})
	u.Write(regData, []byte{'a'})
	m := u.Metrics()
	if m.OutputErrors != 1 || m.BytesOut != 0 || m.InterruptErrors != 1 || m.Interrupts != 0 {
		t.Fatalf("metrics %+v", m)
	}
}

func TestWideAccessTouchesConsecutiveRegisters(t *testing.T) {
	r := newRig(t)
	r.u.Write(regLCR, []byte{0x03, 0x0b}) // LCR, then MCR
	r.expect("LCR", r.in(regLCR), 0x03)
	r.expect("MCR", r.in(regMCR), 0x0b)
	b := make([]byte, 2)
	r.u.Read(regLSR, b)
	if b[0] != lsrTHRE|lsrTEMT || b[1] != msrDCD|msrDSR|msrCTS {
		t.Fatalf("LSR, MSR = %#x, %#x", b[0], b[1])
	}
}

func TestReset(t *testing.T) {
	r := newRig(t)
	r.outb(regIIR, fcrEnable)
	r.outb(regIER, ierRDA)
	r.u.Enqueue([]byte("abc"))
	r.u.Reset()
	r.expect("IER", r.in(regIER), 0)
	r.expect("LSR", r.in(regLSR), lsrTHRE|lsrTEMT)
	r.expect("IIR", r.in(regIIR), iirNone)
}
