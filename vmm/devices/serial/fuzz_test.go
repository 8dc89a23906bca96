package serial

import "testing"

// FuzzRegisters drives the UART with arbitrary register accesses and console
// input. It checks that nothing panics and that the FIFO and the interrupt
// output stay consistent with what IIR reports.
func FuzzRegisters(f *testing.F) {
	f.Add([]byte{1, 2, 0xc1, 1, 1, 0x0f, 2, 5, 0, 0, 0, 2, 0})
	f.Add([]byte{1, 4, 0x10, 1, 0, 'a', 1, 0, 'b', 0, 5, 0, 0, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		line := &pulseLine{}
		u := New(Config{IRQ: line, RXSpace: func() {}})
		buf := make([]byte, 8)
		for len(ops) >= 3 {
			op, off, v := ops[0], uint64(ops[1]%8), ops[2]
			ops = ops[3:]
			width := 1 << (op >> 6) // 1, 2, 4 or 8 bytes
			if off+uint64(width) > 8 {
				width = 1
			}
			switch op % 3 {
			case 0:
				u.Read(off, buf[:width])
			case 1:
				for i := range buf[:width] {
					buf[i] = v
				}
				u.Write(off, buf[:width])
			case 2:
				u.Enqueue(make([]byte, v%20))
			}
			if u.rx.len() > fifoSize {
				t.Fatalf("receive FIFO holds %d bytes", u.rx.len())
			}
			if u.irqLevel != (u.pendingInterrupt() != iirNone) {
				t.Fatal("interrupt output disagrees with IIR")
			}
		}
	})
}
