// Package i8042 emulates the PC's keyboard controller just far enough for
// what a cloud VM needs from it: the guest can reset the machine through it
// (Linux's reboot=k, and the 0xfe command most kernels try), the VMM can
// press Ctrl-Alt-Del to ask the guest to shut down, and Linux's i8042 and
// atkbd drivers probe it without waiting on timeouts. There is no mouse (aux)
// port and no real typing.
//
// The controller is a small microcontroller between the CPU and the
// keyboard. The CPU sees two ports: 0x60 (data, both directions) and 0x64
// (status when read, command when written). Everything the controller or the
// keyboard says to the CPU passes through a one-byte output buffer; the
// status register's OBF bit says it is full, and while it is full and the
// command byte enables it, the controller's IRQ 1 output is high.
package i8042

import (
	"fmt"

	"gureum/vmm/devices"
	"gureum/vmm/layout"
)

// Status register bits (port 0x64, read).
const (
	statusOBF     = 0x01 // output buffer full: port 0x60 has a byte for the CPU
	statusIBF     = 0x02 // input buffer full: we consume writes at once, so never set
	statusSYS     = 0x04 // system flag: copy of the command byte's bit 2
	statusCommand = 0x08 // the last write went to port 0x64 (a command), not 0x60
	statusUnlock  = 0x10 // keyboard not inhibited by a key lock
	statusAuxData = 0x20 // the byte in the output buffer came from the mouse: never, here
)

// Command byte bits (controller RAM byte 0, read with 0x20, written with 0x60).
const (
	ctrKbdInt  = 0x01 // raise IRQ 1 when a byte for the CPU is in the output buffer
	ctrAuxInt  = 0x02 // same for the mouse port on IRQ 12 (no mouse here)
	ctrSys     = 0x04
	ctrKbdDis  = 0x10 // keyboard interface disabled: keyboard bytes are held back
	ctrAuxDis  = 0x20
	ctrXlate   = 0x40 // translate keyboard scan code set 2 into set 1
	ctrPowerOn = ctrXlate | ctrSys | ctrKbdInt
)

// Controller commands (port 0x64, write).
const (
	cmdReadRAM      = 0x20 // 0x20..0x3f: read controller RAM byte (byte 0 is the command byte)
	cmdWriteRAM     = 0x60 // 0x60..0x7f: write controller RAM byte; the value follows on 0x60
	cmdAuxDisable   = 0xa7
	cmdAuxEnable    = 0xa8
	cmdAuxTest      = 0xa9
	cmdSelfTest     = 0xaa
	cmdKbdTest      = 0xab
	cmdKbdDisable   = 0xad
	cmdKbdEnable    = 0xae
	cmdReadOutPort  = 0xd0
	cmdWriteOutPort = 0xd1 // the value follows on 0x60; bit 0 is the CPU reset line
	cmdWriteKbdOut  = 0xd2 // the value follows on 0x60 and comes back as keyboard data
	cmdPulseOutPort = 0xf0 // 0xf0..0xff: pulse the output lines whose bits are clear; 0xfe pulses reset
)

// Controller answers.
const (
	selfTestPassed = 0x55
	kbdTestPassed  = 0x00
	// auxTestFailed answers the aux interface test. Any non-zero answer is a
	// failure, which tells the guest there is no usable mouse port; Linux
	// then skips the aux port instead of probing it through timeouts.
	auxTestFailed = 0x55
)

// outPortPowerOn has the CPU reset line (bit 0, active low) and the A20 gate
// (bit 1) high.
const outPortPowerOn = 0x03

// Config is what the VMM gives the controller.
type Config struct {
	// IRQ is the keyboard interrupt line (IRQ 1). Nil means no interrupts.
	IRQ devices.Line
	// Reset runs when the guest pulses the CPU reset line (command 0xfe,
	// or an output port write with bit 0 clear). It is called on the event
	// loop, must not block, and should make the VMM reset or stop the VM.
	Reset func()
}

// Controller is the emulated i8042 and the keyboard behind it. All methods
// except Metrics must be called as device code (under the VM's device lock).
type Controller struct {
	irq   devices.Line
	reset func()

	ram     [32]byte // controller RAM; ram[0] is the command byte
	outPort byte

	out         byte // the output buffer
	full        bool // OBF
	lastCommand bool // status bit 3
	// waitingFor is a controller command that takes a value on port 0x60
	// (cmdWriteRAM.., cmdWriteOutPort, cmdWriteKbdOut), or 0.
	waitingFor byte
	// replies are controller answers not yet in the output buffer. They
	// pass ahead of keyboard bytes.
	replies []byte

	kbd keyboard

	irqLevel bool // the IRQ 1 output as last computed

	counters counters
}

// New makes a controller in its power-on state.
func New(cfg Config) *Controller {
	c := &Controller{irq: cfg.IRQ, reset: cfg.Reset}
	c.Reset()
	return c
}

// Reset returns the controller and keyboard to their power-on state: the
// state firmware leaves them in, with translation on and the keyboard
// interrupt enabled. Metrics keep counting.
func (c *Controller) Reset() {
	c.ram = [32]byte{}
	c.ram[0] = ctrPowerOn
	c.outPort = outPortPowerOn
	c.out, c.full, c.lastCommand, c.waitingFor = 0, false, false, 0
	c.replies = c.replies[:0]
	c.kbd.reset()
	c.irqLevel = false
}

// Attach inserts the controller's two ports on the I/O bus at
// layout.I8042Data and layout.I8042Command. They are separate one-byte
// devices because port 0x61, between them, belongs to the in-kernel PIT.
func (c *Controller) Attach(bus *devices.Bus) error {
	if err := bus.Insert("i8042 data", layout.I8042Data, 1, c.DataPort()); err != nil {
		return fmt.Errorf("attach i8042: %w", err)
	}
	if err := bus.Insert("i8042 command", layout.I8042Command, 1, c.CommandPort()); err != nil {
		bus.Remove(layout.I8042Data)
		return fmt.Errorf("attach i8042: %w", err)
	}
	return nil
}

// DataPort is the device for port 0x60.
func (c *Controller) DataPort() devices.Device { return dataPort{c} }

// CommandPort is the device for port 0x64 (status on read, command on write).
func (c *Controller) CommandPort() devices.Device { return commandPort{c} }

type dataPort struct{ c *Controller }

func (p dataPort) Read(_ uint64, data []byte) {
	fillOnes(data)
	data[0] = p.c.readData()
}

func (p dataPort) Write(_ uint64, data []byte) { p.c.writeData(data[0]) }

type commandPort struct{ c *Controller }

func (p commandPort) Read(_ uint64, data []byte) {
	fillOnes(data)
	data[0] = p.c.status()
}

func (p commandPort) Write(_ uint64, data []byte) { p.c.writeCommand(data[0]) }

// fillOnes makes the bytes of a wider-than-one-byte access beyond the port
// read as all-ones, like an undecoded ISA port. The bus passes at least one
// byte.
func fillOnes(data []byte) {
	for i := range data {
		data[i] = 0xff
	}
}

func (c *Controller) commandByte() byte { return c.ram[0] }

func (c *Controller) status() byte {
	s := byte(statusUnlock)
	if c.full {
		s |= statusOBF
	}
	if c.commandByte()&ctrSys != 0 {
		s |= statusSYS
	}
	if c.lastCommand {
		s |= statusCommand
	}
	return s
}

// readData takes the byte in the output buffer and lets the next waiting
// byte in. Reading an empty buffer returns the last byte again, as the chip
// does.
func (c *Controller) readData() byte {
	v := c.out
	if c.full {
		c.full = false
		c.updateInterrupt() // the output falls, so the next byte is a new edge
		c.fill()
	}
	return v
}

// writeData handles a write to port 0x60: the value of a pending controller
// command, or else a byte for the keyboard.
func (c *Controller) writeData(v byte) {
	c.lastCommand = false
	cmd := c.waitingFor
	c.waitingFor = 0
	switch {
	case cmd >= cmdWriteRAM && cmd < cmdWriteRAM+32:
		c.ram[cmd-cmdWriteRAM] = v
	case cmd == cmdWriteOutPort:
		c.outPort = v
		if v&0x01 == 0 {
			c.pulseReset()
		}
	case cmd == cmdWriteKbdOut:
		c.replies = append(c.replies, v)
	default:
		// Sending to the keyboard re-enables the keyboard interface,
		// as the chip's firmware does, so the answer can come back.
		c.ram[0] &^= ctrKbdDis
		c.kbd.receive(v, c.commandByte()&ctrXlate != 0)
	}
	c.fill()
}

// writeCommand handles a controller command written to port 0x64.
func (c *Controller) writeCommand(cmd byte) {
	c.lastCommand = true
	c.waitingFor = 0
	switch {
	case cmd >= cmdReadRAM && cmd < cmdReadRAM+32:
		c.reply(c.ram[cmd-cmdReadRAM])
	case cmd >= cmdWriteRAM && cmd < cmdWriteRAM+32, cmd == cmdWriteOutPort, cmd == cmdWriteKbdOut:
		c.waitingFor = cmd
	case cmd == cmdAuxDisable:
		c.ram[0] |= ctrAuxDis
	case cmd == cmdAuxEnable:
		c.ram[0] &^= ctrAuxDis
	case cmd == cmdAuxTest:
		c.reply(auxTestFailed)
	case cmd == cmdSelfTest:
		c.ram[0] |= ctrSys
		c.reply(selfTestPassed)
	case cmd == cmdKbdTest:
		c.reply(kbdTestPassed)
	case cmd == cmdKbdDisable:
		c.ram[0] |= ctrKbdDis
	case cmd == cmdKbdEnable:
		c.ram[0] &^= ctrKbdDis
	case cmd == cmdReadOutPort:
		c.reply(c.outPort)
	case cmd >= cmdPulseOutPort:
		if cmd&0x01 == 0 {
			c.pulseReset()
		}
	default:
		// Mouse commands (0xd3 loop, 0xd4 send) and vendor commands
		// are not emulated. A value that follows on port 0x60 goes to
		// the keyboard, as on AT controllers without a mouse port.
		c.counters.unknownCommands.Add(1)
	}
	c.fill()
}

func (c *Controller) pulseReset() {
	c.counters.resets.Add(1)
	if c.reset != nil {
		c.reset()
	}
}

// reply queues a controller answer for the output buffer. The queue is
// bounded so that a guest issuing commands without reading the answers
// cannot grow it; the oldest unread answer is dropped.
func (c *Controller) reply(v byte) {
	if len(c.replies) >= maxReplies {
		c.replies = append(c.replies[:0], c.replies[1:]...)
	}
	c.replies = append(c.replies, v)
}

const maxReplies = 16

// fill moves the next waiting byte into an empty output buffer (controller
// answers first, then keyboard bytes unless the keyboard interface is
// disabled) and updates the interrupt.
func (c *Controller) fill() {
	if !c.full {
		switch {
		case len(c.replies) > 0:
			c.out, c.full = c.replies[0], true
			c.replies = append(c.replies[:0], c.replies[1:]...)
		case c.commandByte()&ctrKbdDis == 0:
			if b, ok := c.kbd.next(); ok {
				c.out, c.full = b, true
			}
		}
	}
	c.updateInterrupt()
}

// updateInterrupt pulses IRQ 1 when the controller's interrupt output
// rises: the output buffer became full while the keyboard interrupt is
// enabled, or the guest enabled the interrupt with a byte already waiting.
// The line is a pulse on an edge-triggered input, so one pulse per byte is
// what the guest's handler expects.
func (c *Controller) updateInterrupt() {
	level := c.full && c.commandByte()&ctrKbdInt != 0
	rising := level && !c.irqLevel
	c.irqLevel = level
	if !rising || c.irq == nil {
		return
	}
	if err := c.irq.Trigger(); err != nil {
		c.counters.interruptErrors.Add(1)
		return
	}
	c.counters.interrupts.Add(1)
}
