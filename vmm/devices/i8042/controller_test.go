package i8042

import (
	"bytes"
	"errors"
	"testing"

	"gureum/vmm/devices"
	"gureum/vmm/layout"
)

// pulseLine counts interrupt pulses. The test plays the guest and services
// them after the device call returns, as a real irqfd delivers them.
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

type guest struct {
	t       *testing.T
	c       *Controller
	line    *pulseLine
	resets  int
	handled int    // pulses the guest's interrupt handler has run for
	got     []byte // bytes its interrupt handler read
}

func newGuest(t *testing.T) *guest {
	g := &guest{t: t, line: &pulseLine{}}
	g.c = New(Config{IRQ: g.line, Reset: func() { g.resets++ }})
	return g
}

func (g *guest) status() byte {
	b := []byte{0}
	g.c.CommandPort().Read(0, b)
	return b[0]
}

func (g *guest) data() byte {
	b := []byte{0}
	g.c.DataPort().Read(0, b)
	return b[0]
}

func (g *guest) command(v byte) {
	if g.status()&statusIBF != 0 {
		g.t.Fatal("IBF set: the controller never keeps the guest waiting")
	}
	g.c.CommandPort().Write(0, []byte{v})
}

func (g *guest) write(v byte) {
	if g.status()&statusIBF != 0 {
		g.t.Fatal("IBF set")
	}
	g.c.DataPort().Write(0, []byte{v})
}

var errTimeout = errors.New("timeout waiting for OBF")

// read polls for OBF like Linux's i8042_wait_read (shortened).
func (g *guest) read() (byte, error) {
	for range 100 {
		if g.status()&statusOBF != 0 {
			return g.data(), nil
		}
	}
	return 0, errTimeout
}

// linuxCommand mirrors Linux's __i8042_command: the high nibbles of cmd
// give how many bytes to send and to receive.
func (g *guest) linuxCommand(cmd uint16, param []byte) error {
	send, recv := int(cmd>>12)&0xf, int(cmd>>8)&0xf
	g.command(byte(cmd))
	for i := range send {
		g.write(param[i])
	}
	for i := range recv {
		for n := 0; g.status()&statusOBF == 0; n++ {
			if n == 100 {
				return errTimeout
			}
		}
		if byte(cmd) == 0xd3 && g.status()&statusAuxData == 0 {
			return errors.New("auxerr")
		}
		param[i] = g.data()
	}
	return nil
}

// flush mirrors i8042_flush.
func (g *guest) flush() {
	for n := 0; g.status()&statusOBF != 0; n++ {
		if n > 16 {
			g.t.Fatal("flush: output buffer never empties")
		}
		g.data()
	}
}

// serviceInterrupts runs the guest's IRQ 1 handler once per pulse, as
// i8042_interrupt does: read the status, and the data if OBF is set.
func (g *guest) serviceInterrupts() {
	for g.handled < g.line.pulses {
		g.handled++
		if g.status()&statusOBF != 0 {
			g.got = append(g.got, g.data())
		}
	}
}

// TestLinuxProbe replays what Linux's i8042 and atkbd drivers do at boot
// and checks that every step gets the answer it needs without a timeout.
func TestLinuxProbe(t *testing.T) {
	g := newGuest(t)

	// i8042_controller_check and selftest.
	if g.status() == 0xff {
		t.Fatal("status reads 0xff: no controller")
	}
	g.flush()
	p := []byte{0}
	if err := g.linuxCommand(0x01aa, p); err != nil || p[0] != 0x55 {
		t.Fatalf("self-test: %#x, %v", p[0], err)
	}

	// i8042_controller_init: read the command byte twice, disable the
	// keyboard interface and interrupt, write it back.
	ctr := []byte{0, 0}
	for i := range ctr {
		if err := g.linuxCommand(0x0120, ctr[i:]); err != nil {
			t.Fatal(err)
		}
	}
	if ctr[0] != ctr[1] || ctr[0]&ctrXlate == 0 || ctr[0]&ctrKbdInt == 0 {
		t.Fatalf("command byte %#x, %#x", ctr[0], ctr[1])
	}
	if g.status()&statusUnlock == 0 {
		t.Fatal("keylock reported active")
	}
	ctr[0] = ctr[0]&^ctrKbdInt | ctrKbdDis
	if err := g.linuxCommand(0x1060, ctr); err != nil {
		t.Fatal(err)
	}
	g.flush()

	// i8042_check_aux: the loop test fails without reading...
	g.flush()
	p[0] = 0x5a
	if err := g.linuxCommand(0x11d3, p); err == nil && p[0] == 0x5a {
		t.Fatal("aux loopback succeeded: Linux would go on to wait for IRQ 12")
	}
	// ...and the interface test then reads a failure, so Linux gives up
	// on the aux port at once.
	p[0] = 0
	if err := g.linuxCommand(0x01a9, p); err != nil {
		t.Fatalf("aux test: %v", err)
	}
	if p[0] == 0 || p[0] == 0xfa || p[0] == 0xff {
		t.Fatalf("aux test answered %#x: Linux would take the aux port as present", p[0])
	}

	// i8042_setup_kbd: enable the keyboard port and its interrupt. A
	// byte left from the aux probe arrives with an interrupt and is
	// dropped by the handler, as no serio port exists yet.
	ctr[0] = ctr[0]&^ctrKbdDis | ctrKbdInt
	if err := g.linuxCommand(0x1060, ctr); err != nil {
		t.Fatal(err)
	}
	g.serviceInterrupts()
	g.got = nil

	// atkbd_probe: GET ID, answered through interrupts.
	g.write(kbdGetID)
	g.serviceInterrupts()
	if !bytes.Equal(g.got, []byte{0xfa, 0xab, 0x41}) {
		t.Fatalf("GET ID answered % x, want fa ab 41", g.got)
	}
	// atkbd_reset_state / activate: LEDs, typematic rate, enable.
	g.got = nil
	for _, b := range []byte{kbdSetLEDs, 0x00, kbdTypematic, 0x20, kbdEnable} {
		g.write(b)
		g.serviceInterrupts()
	}
	if !bytes.Equal(g.got, []byte{0xfa, 0xfa, 0xfa, 0xfa, 0xfa}) {
		t.Fatalf("answers % x, want five ACKs", g.got)
	}
	if g.status()&statusOBF != 0 {
		t.Fatal("stray byte left in the output buffer")
	}
	if g.resets != 0 {
		t.Fatal("probe reset the machine")
	}
}

func TestKeyboardReset(t *testing.T) {
	g := newGuest(t)
	g.write(kbdReset)
	g.serviceInterrupts()
	if !bytes.Equal(g.got, []byte{0xfa, 0xaa}) {
		t.Fatalf("reset answered % x", g.got)
	}
	if g.c.Metrics().Interrupts != 2 {
		t.Fatalf("interrupts %d, want 2", g.c.Metrics().Interrupts)
	}
	g.got = nil
	g.write(0x12) // not a command
	g.write(kbdEcho)
	g.serviceInterrupts()
	if !bytes.Equal(g.got, []byte{0xfe, 0xee}) {
		t.Fatalf("answers % x, want fe ee", g.got)
	}
}

func TestGetIDWithoutTranslation(t *testing.T) {
	g := newGuest(t)
	g.command(cmdWriteRAM)
	g.write(ctrKbdInt)
	g.write(kbdGetID)
	g.serviceInterrupts()
	if !bytes.Equal(g.got, []byte{0xfa, 0xab, 0x83}) {
		t.Fatalf("GET ID answered % x, want fa ab 83", g.got)
	}
}

func TestControllerCommands(t *testing.T) {
	g := newGuest(t)
	expect := func(cmd, want byte) {
		t.Helper()
		g.command(cmd)
		got, err := g.read()
		if err != nil || got != want {
			t.Fatalf("command %#x answered %#x (%v), want %#x", cmd, got, err, want)
		}
	}
	expect(cmdSelfTest, 0x55)
	expect(cmdKbdTest, 0x00)
	expect(cmdAuxTest, auxTestFailed)
	if g.status()&statusSYS == 0 {
		t.Fatal("SYS flag clear after self-test")
	}
	if g.status()&statusCommand == 0 {
		t.Fatal("status does not record the last write as a command")
	}

	// Enabling and disabling the aux port only flips the command byte.
	g.command(cmdAuxDisable)
	if g.status()&statusOBF != 0 {
		t.Fatal("0xa7 produced a byte")
	}
	expect(cmdReadRAM, ctrPowerOn|ctrAuxDis)
	g.command(cmdAuxEnable)
	expect(cmdReadRAM, ctrPowerOn)

	// Controller RAM beyond the command byte.
	g.command(cmdWriteRAM + 5)
	g.write(0x99)
	expect(cmdReadRAM+5, 0x99)

	// Disabling the keyboard interface holds keyboard bytes back.
	g.command(cmdKbdDisable)
	expect(cmdReadRAM, ctrPowerOn|ctrKbdDis)
	g.c.CtrlAltDel()
	if g.status()&statusOBF != 0 {
		t.Fatal("keyboard byte delivered while the interface is disabled")
	}
	g.command(cmdKbdEnable)
	if b, err := g.read(); err != nil || b != 0x1d {
		t.Fatalf("first key after enable: %#x %v", b, err)
	}

	// Write keyboard output buffer: the byte comes back.
	g.command(cmdWriteKbdOut)
	g.write(0x42)
	g.flush()

	// The output port reads back.
	expect(cmdReadOutPort, outPortPowerOn)
	if g.resets != 0 {
		t.Fatal("unexpected reset")
	}
}

func TestResetLine(t *testing.T) {
	g := newGuest(t)
	g.command(0xff) // pulses nothing
	g.command(cmdWriteOutPort)
	g.write(0x03) // reset line stays high
	if g.resets != 0 {
		t.Fatal("reset without a pulse on the reset line")
	}
	g.command(0xfe) // what Linux's reboot=k writes
	if g.resets != 1 {
		t.Fatalf("resets = %d after 0xfe, want 1", g.resets)
	}
	g.command(cmdWriteOutPort)
	g.write(0x02) // bit 0 low: reset
	if g.resets != 2 || g.c.Metrics().Resets != 2 {
		t.Fatalf("resets = %d after output port write, want 2", g.resets)
	}
}

func TestCtrlAltDelStream(t *testing.T) {
	g := newGuest(t)
	if !g.c.CtrlAltDel() {
		t.Fatal("CtrlAltDel refused")
	}
	// One pulse per byte, each arriving once the guest read the one
	// before; the handler reads exactly one byte per interrupt.
	for i := 0; g.handled < g.line.pulses; i++ {
		if g.line.pulses != g.handled+1 {
			t.Fatalf("%d pulses pending at byte %d, want 1", g.line.pulses-g.handled, i)
		}
		g.serviceInterrupts()
	}
	want := []byte{0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d}
	if !bytes.Equal(g.got, want) {
		t.Fatalf("scancodes % x, want % x", g.got, want)
	}
	if g.line.pulses != 8 {
		t.Fatalf("pulses = %d, want 8", g.line.pulses)
	}
	if m := g.c.Metrics(); m.CtrlAltDels != 1 || m.Interrupts != 8 {
		t.Fatalf("metrics %+v", m)
	}
}

func TestCtrlAltDelWithoutTranslation(t *testing.T) {
	g := newGuest(t)
	g.command(cmdWriteRAM)
	g.write(ctrKbdInt)
	g.c.CtrlAltDel()
	g.serviceInterrupts()
	if !bytes.Equal(g.got, ctrlAltDelSet2) {
		t.Fatalf("scancodes % x, want % x", g.got, ctrlAltDelSet2)
	}
}

func TestCtrlAltDelPolled(t *testing.T) {
	g := newGuest(t)
	g.command(cmdWriteRAM)
	g.write(ctrXlate) // keyboard interrupt off
	g.c.CtrlAltDel()
	var got []byte
	for {
		b, err := g.read()
		if err != nil {
			break
		}
		got = append(got, b)
	}
	if !bytes.Equal(got, ctrlAltDelSet1) || g.line.pulses != 0 {
		t.Fatalf("polled % x with %d pulses", got, g.line.pulses)
	}
	// Enabling the interrupt with a byte waiting raises it.
	g.c.CtrlAltDel()
	g.command(cmdWriteRAM)
	g.write(ctrXlate | ctrKbdInt)
	if g.line.pulses != 1 {
		t.Fatalf("pulses = %d after enabling the interrupt with a byte waiting, want 1", g.line.pulses)
	}
}

func TestCtrlAltDelRefused(t *testing.T) {
	g := newGuest(t)
	g.write(kbdDisable)
	g.flush()
	if g.c.CtrlAltDel() {
		t.Fatal("keys sent while scanning is disabled")
	}
	g.write(kbdEnable)
	g.flush()
	for i := range 2 {
		if !g.c.CtrlAltDel() {
			t.Fatalf("CtrlAltDel %d refused with room in the buffer", i+1)
		}
	}
	// 8 bytes in the buffer: one went to the output buffer, 7 + 8 = 15
	// queued; a third sequence does not fit.
	if g.c.CtrlAltDel() {
		t.Fatal("CtrlAltDel accepted beyond the keyboard buffer")
	}
	if m := g.c.Metrics(); m.KeysDropped != 2 || m.CtrlAltDels != 2 {
		t.Fatalf("metrics %+v", m)
	}
}

func TestAttach(t *testing.T) {
	var bus devices.Bus
	c := New(Config{})
	if err := c.Attach(&bus); err != nil {
		t.Fatal(err)
	}
	b := []byte{0}
	if !bus.Read(layout.I8042Command, b) || b[0]&statusUnlock == 0 {
		t.Fatalf("status through the bus: %#x", b[0])
	}
	if bus.Read(0x61, b) {
		t.Fatal("port 0x61 claimed: it belongs to the in-kernel PIT")
	}
	if !bus.Write(layout.I8042Command, []byte{cmdSelfTest}) || !bus.Read(layout.I8042Data, b) || b[0] != 0x55 {
		t.Fatalf("self-test through the bus: %#x", b[0])
	}
}

func TestInterruptErrorsAreCounted(t *testing.T) {
	line := &pulseLine{err: errors.New("irqfd closed")}
	c := New(Config{IRQ: line})
	c.CtrlAltDel()
	if m := c.Metrics(); m.InterruptErrors != 1 || m.Interrupts != 0 {
		t.Fatalf("metrics %+v", m)
	}
}
