package serial

// pendingInterrupt returns the IIR identification of the highest-priority
// enabled condition, or iirNone.
func (u *UART) pendingInterrupt() byte {
	switch {
	case u.ier&ierRLS != 0 && u.overrun:
		return iirRLS
	case u.ier&ierRDA != 0 && u.rx.len() > 0:
		// Below the trigger level a 16550A waits four character times
		// and then reports a character timeout; with no wire there is
		// nothing to wait for, so the timeout is reported at once. Drivers
		// treat both identifications alike: read RBR while LSR.DR is set.
		if u.fcr&fcrEnable != 0 && u.rx.len() < rxTriggerLevels[u.fcr>>6] {
			return iirTimeout
		}
		return iirRDA
	case u.ier&ierTHRE != 0 && u.thrEmptyPending:
		return iirTHRE
	case u.ier&ierMS != 0 && u.msrDelta != 0:
		return iirMS
	}
	return iirNone
}

// updateInterrupt recomputes the UART's interrupt output after a state
// change and pulses the line on its rising edge. It runs once at the end of
// every register access and every Enqueue.
//
// The MCR OUT2 bit, which gates the interrupt onto the ISA bus on real PC
// boards, is deliberately not honoured: some simple guests never set it,
// and Linux always does, so honouring it would only break the former.
func (u *UART) updateInterrupt() {
	level := u.pendingInterrupt() != iirNone
	rising := level && !u.irqLevel
	u.irqLevel = level
	if !rising || u.irq == nil {
		return
	}
	if err := u.irq.Trigger(); err != nil {
		u.counters.interruptErrors.Add(1)
		return
	}
	u.counters.interrupts.Add(1)
}
