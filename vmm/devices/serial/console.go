package serial

// Enqueue offers console input to the guest. It moves as many bytes of p as
// fit into the receive FIFO (16 with FIFOs enabled, 1 without, none in
// loopback mode, where the receiver listens only to the transmitter) and
// returns how many it took. The caller keeps the rest and offers it again
// when Config.RXSpace runs; nothing is dropped inside the UART.
//
// Enqueue raises the received-data interrupt if the guest enabled it. It
// must be called as device code (under the event loop's device lock).
func (u *UART) Enqueue(p []byte) int {
	if u.mcr&mcrLoop != 0 {
		return 0
	}
	n := 0
	for _, b := range p {
		if !u.rx.push(b, u.rxCapacity()) {
			break
		}
		n++
	}
	u.counters.bytesIn.Add(uint64(n))
	u.updateInterrupt()
	return n
}

// rxCapacity is how many bytes the receiver holds: the FIFO depth when the
// guest enabled FIFOs, otherwise the single receive buffer register of a
// 16450.
func (u *UART) rxCapacity() int {
	if u.fcr&fcrEnable != 0 {
		return fifoSize
	}
	return 1
}

// rxFIFO is the receive FIFO: a ring of fifoSize bytes.
type rxFIFO struct {
	buf   [fifoSize]byte
	head  int // index of the oldest byte
	count int
}

func (f *rxFIFO) len() int { return f.count }

func (f *rxFIFO) clear() { f.head, f.count = 0, 0 }

// push appends b unless the FIFO already holds limit bytes.
func (f *rxFIFO) push(b byte, limit int) bool {
	if f.count >= limit || f.count >= len(f.buf) {
		return false
	}
	f.buf[(f.head+f.count)%len(f.buf)] = b
	f.count++
	return true
}

// pop removes the oldest byte. An empty FIFO reads as zero, false.
func (f *rxFIFO) pop() (byte, bool) {
	if f.count == 0 {
		return 0, false
	}
	b := f.buf[f.head]
	f.head = (f.head + 1) % len(f.buf)
	f.count--
	return b, true
}
