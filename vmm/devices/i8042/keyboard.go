package i8042

// Keyboard commands (port 0x60 writes that the controller passes on).
const (
	kbdSetLEDs      = 0xed // value follows
	kbdEcho         = 0xee
	kbdScanCodeSet  = 0xf0 // value follows: 0 asks for the current set
	kbdGetID        = 0xf2
	kbdTypematic    = 0xf3 // value follows
	kbdEnable       = 0xf4
	kbdDisable      = 0xf5 // stop scanning and restore defaults
	kbdSetDefaults  = 0xf6
	kbdResend       = 0xfe
	kbdReset        = 0xff
	kbdFirstCommand = kbdSetLEDs
)

// Keyboard answers.
const (
	kbdAck         = 0xfa
	kbdResendReply = 0xfe // "I did not understand that"
	kbdSelfTestOK  = 0xaa // basic assurance test passed, after a reset
	kbdIDFirst     = 0xab // an MF2 keyboard identifies as 0xab 0x83
	kbdIDSecond    = 0x83
	// kbdIDSecondTranslated is 0x83 after the controller's set 2 to set 1
	// translation, which is what a driver reads with translation on.
	kbdIDSecondTranslated = 0x41
)

// Ctrl-Alt-Del as make and break codes. Set 1 is what the guest reads with
// the controller translating (the default); set 2 is what the keyboard
// itself sends, seen when the guest turned translation off.
var (
	ctrlAltDelSet1 = []byte{
		0x1d, 0x38, 0xe0, 0x53, // press Ctrl, Alt, Delete
		0xe0, 0xd3, 0xb8, 0x9d, // release Delete, Alt, Ctrl (break = make | 0x80)
	}
	ctrlAltDelSet2 = []byte{
		0x14, 0x11, 0xe0, 0x71,
		0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14, // break = 0xf0 prefix
	}
)

// maxKeyboardQueue is how many bytes the keyboard buffers for the
// controller, like the 16-key buffer of a real keyboard.
const maxKeyboardQueue = 16

// keyboard is the PS/2 keyboard behind the controller: a command
// interpreter and a queue of bytes waiting for the output buffer.
type keyboard struct {
	queue      []byte
	waitingFor byte // command whose value byte comes next, or 0
	scanning   bool // keys are reported (enabled by 0xf4, disabled by 0xf5)
	scanSet    byte
	leds       byte
	last       byte // last byte sent, for the resend command
}

func (k *keyboard) reset() {
	k.queue = k.queue[:0]
	k.waitingFor = 0
	k.scanning = true
	k.scanSet = 2
	k.leds = 0
}

// send queues a byte for the controller; beyond the buffer it is lost.
func (k *keyboard) send(b ...byte) {
	for _, v := range b {
		if len(k.queue) < maxKeyboardQueue {
			k.queue = append(k.queue, v)
		}
	}
}

// next hands the controller the oldest queued byte.
func (k *keyboard) next() (byte, bool) {
	if len(k.queue) == 0 {
		return 0, false
	}
	b := k.queue[0]
	k.queue = append(k.queue[:0], k.queue[1:]...)
	k.last = b
	return b, true
}

// receive interprets a byte the guest sent to the keyboard. translated says
// whether the controller translates keyboard bytes to set 1, which changes
// how the ID reads.
func (k *keyboard) receive(v byte, translated bool) {
	// A command byte always starts a new command, even when a value was
	// expected: every value byte is below 0x80, every command above 0xec.
	if cmd := k.waitingFor; cmd != 0 && v < kbdFirstCommand {
		k.waitingFor = 0
		k.receiveValue(cmd, v)
		return
	}
	k.waitingFor = 0
	switch v {
	case kbdSetLEDs, kbdTypematic, kbdScanCodeSet:
		k.waitingFor = v
		k.send(kbdAck)
	case kbdEcho:
		k.send(kbdEcho)
	case kbdGetID:
		second := byte(kbdIDSecond)
		if translated {
			second = kbdIDSecondTranslated
		}
		k.send(kbdAck, kbdIDFirst, second)
	case kbdEnable:
		k.send(kbdAck)
		k.scanning = true
	case kbdDisable:
		k.queue = k.queue[:0]
		k.send(kbdAck)
		k.scanning = false
		k.leds = 0
	case kbdSetDefaults:
		k.queue = k.queue[:0]
		k.send(kbdAck)
		k.scanning = true
	case kbdResend:
		k.send(k.last)
	case kbdReset:
		k.reset()
		k.send(kbdAck, kbdSelfTestOK)
	default:
		if v >= kbdFirstCommand {
			k.send(kbdAck) // 0xf7..0xfd: per-key set-3 modes, accepted and ignored
			return
		}
		k.send(kbdResendReply)
	}
}

func (k *keyboard) receiveValue(cmd, v byte) {
	switch cmd {
	case kbdSetLEDs:
		k.leds = v & 0x07
		k.send(kbdAck)
	case kbdTypematic:
		k.send(kbdAck)
	case kbdScanCodeSet:
		switch {
		case v == 0:
			// The set number is sent untranslated; drivers that
			// ask run with translation off.
			k.send(kbdAck, k.scanSet)
		case v <= 3:
			k.scanSet = v
			k.send(kbdAck)
		default:
			k.send(kbdResendReply)
		}
	}
}

// CtrlAltDel presses and releases Ctrl-Alt-Delete on the keyboard: the
// eight bytes (eleven without translation) go to the guest one at a time,
// with an interrupt for each if the guest enabled the keyboard interrupt.
// Linux hands the combination to init (SIGINT to PID 1), whose
// Ctrl-Alt-Del action is a clean reboot by default; that is how the VMM
// asks a guest to shut down cleanly.
//
// It reports false, sending nothing, when the guest has disabled scanning
// or the keyboard's buffer cannot take the whole sequence. Call it on the
// event loop goroutine.
func (c *Controller) CtrlAltDel() bool {
	seq := ctrlAltDelSet1
	if c.commandByte()&ctrXlate == 0 {
		seq = ctrlAltDelSet2
	}
	if !c.kbd.scanning || len(c.kbd.queue)+len(seq) > maxKeyboardQueue {
		c.counters.keysDropped.Add(1)
		return false
	}
	c.kbd.send(seq...)
	c.counters.ctrlAltDels.Add(1)
	c.fill()
	return true
}
