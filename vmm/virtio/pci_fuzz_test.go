package virtio_test

import (
	"encoding/binary"
	"testing"
)

// FuzzPCIRegisters replays the fuzz input as guest accesses: each 12-byte
// record is (target, size, offset, value) against configuration space or
// BAR 0, with device kicks and interrupts mixed in. Whatever the order and
// values, the transport must not panic.
func FuzzPCIRegisters(f *testing.F) {
	f.Add([]byte{1, 1, 0x14, 0, 0xff, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{1, 2, 0x1c, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0x14, 0, 0x0f, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		h := newPCIHarness(t)
		for i := 0; i+12 <= len(ops) && i < 12*200; i += 12 {
			op := ops[i : i+12]
			size := []int{1, 2, 4, 8}[op[1]&3]
			off := uint64(binary.LittleEndian.Uint16(op[2:]))
			val := binary.LittleEndian.Uint64(op[4:])
			switch op[0] % 6 {
			case 0:
				h.cfgWrite(off&0xff, min(size, 4-int(off&3)), uint32(val))
			case 1:
				h.write(off%0x8000&^uint64(size-1), size, val)
			case 2:
				h.read(off%0x8000&^uint64(size-1), size)
			case 3:
				h.hub.Kick(h.bar + 0x3000 + 4*(off&1))
			case 4:
				if h.dev.irq != nil {
					h.dev.irq.Queue(int(off % 3))
					h.dev.irq.Config()
				}
			case 5:
				h.cfgRead(off&0xff, min(size, 4-int(off&3)))
			}
			if base, ok := h.tr.ConfigSpace().BARMapped(0); ok {
				h.bar = base
			} else {
				return // the guest unmapped BAR 0; nothing left to reach
			}
		}
	})
}
