package i8042

import "testing"

// FuzzPorts drives the controller with arbitrary port accesses and
// Ctrl-Alt-Del presses. It checks that nothing panics, that the queues stay
// bounded, and that the interrupt output matches the status register.
func FuzzPorts(f *testing.F) {
	f.Add([]byte{3, 0xaa, 0, 0, 2, 0xf2, 0, 0, 0, 0})
	f.Add([]byte{3, 0x60, 2, 0x07, 4, 0, 0, 0, 3, 0xd1, 2, 0x00})
	f.Fuzz(func(t *testing.T, ops []byte) {
		c := New(Config{IRQ: &pulseLine{}, Reset: func() {}})
		b := make([]byte, 1)
		for len(ops) >= 2 {
			op, v := ops[0], ops[1]
			ops = ops[2:]
			switch op % 5 {
			case 0:
				c.DataPort().Read(0, b)
			case 1:
				c.CommandPort().Read(0, make([]byte, 1+int(v%4)))
			case 2:
				c.DataPort().Write(0, []byte{v})
			case 3:
				c.CommandPort().Write(0, []byte{v})
			case 4:
				c.CtrlAltDel()
			}
			if len(c.replies) > maxReplies || len(c.kbd.queue) > maxKeyboardQueue {
				t.Fatalf("queues grew to %d and %d", len(c.replies), len(c.kbd.queue))
			}
			if c.irqLevel != (c.full && c.commandByte()&ctrKbdInt != 0) {
				t.Fatal("interrupt output disagrees with OBF and the command byte")
			}
		}
	})
}
