package vmm

import (
	"reflect"
	"strings"
	"unicode"

	"gureum/vmm/devices/i8042"
	"gureum/vmm/devices/serial"
	"gureum/vmm/layout"
)

// addDevices builds this boot's devices over the VM's backends and puts
// them on the buses: the legacy PC devices first, then PCI with virtio.
func (v *VM) addDevices(m *machine) error {
	if err := v.addLegacyDevices(m); err != nil {
		return err
	}
	return v.addPCIDevices(m)
}

func (v *VM) addLegacyDevices(m *machine) error {
	// COM1: the console.
	com1IRQ, err := m.newIRQLine(layout.IRQCOM1)
	if err != nil {
		return err
	}
	in := &consoleInput{}
	uart := serial.New(serial.Config{Output: v.console, IRQ: com1IRQ, RXSpace: func() { in.feed() }})
	in.uart = uart
	if err := m.pio.Insert("com1", layout.COM1, layout.COM1Size, uart); err != nil {
		return err
	}
	v.console.setInput(func(p []byte) { m.loop.Post(func() { in.add(p) }) })
	m.onCleanup(func() { v.console.setInput(nil) })
	m.addMetrics("serial0", func() any { return uart.Metrics() })
	m.addDescriber("serial0", uart)

	// i8042: reset line and Ctrl-Alt-Del.
	kbdIRQ, err := m.newIRQLine(layout.IRQKeyboard)
	if err != nil {
		return err
	}
	kbd := i8042.New(i8042.Config{IRQ: kbdIRQ, Reset: func() {
		m.guestEvent(event{kind: EndReboot, reason: "guest reset through the keyboard controller"})
	}})
	if err := kbd.Attach(&m.pio); err != nil {
		return err
	}
	m.ctrlAltDelKeys = func() { kbd.CtrlAltDel() }
	m.addMetrics("i8042", func() any { return kbd.Metrics() })
	return v.addPlatformDevices(m)
}

// consoleInput holds typed bytes the UART's FIFO could not take yet. Used
// only on the event loop.
type consoleInput struct {
	uart    *serial.UART
	pending []byte
}

func (c *consoleInput) add(p []byte) {
	c.pending = append(c.pending, p...)
	if len(c.pending) > 64<<10 { // nobody is reading: drop the oldest
		c.pending = c.pending[len(c.pending)-64<<10:]
	}
	c.feed()
}

func (c *consoleInput) feed() {
	if len(c.pending) == 0 || c.uart == nil {
		return
	}
	n := c.uart.Enqueue(c.pending)
	c.pending = c.pending[n:]
}

// addMetrics registers a device's counters for the metrics API. read runs
// on the event loop and returns a struct of uint64 counters.
func (m *machine) addMetrics(name string, read func() any) {
	m.devices = append(m.devices, deviceCounters{name: name, read: func() map[string]uint64 { return counterMap(read()) }})
}

// addDescriber registers a device's state description for DebugState.
func (m *machine) addDescriber(name string, dev describer) {
	m.describers = append(m.describers, namedDescriber{name, dev})
}

// counterMap turns a struct of uint64 counters into a map keyed by the
// fields' snake_case names (BytesOut -> bytes_out).
func counterMap(v any) map[string]uint64 {
	out := map[string]uint64{}
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Struct {
		return out
	}
	for i := 0; i < rv.NumField(); i++ {
		f := rv.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		switch fv := rv.Field(i); fv.Kind() {
		case reflect.Uint64, reflect.Uint32, reflect.Uint, reflect.Uint16:
			out[snake(f.Name)] = fv.Uint()
		case reflect.Int64, reflect.Int:
			out[snake(f.Name)] = uint64(fv.Int())
		}
	}
	return out
}

func snake(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		if unicode.IsUpper(r) {
			if i > 0 && (unicode.IsLower(rs[i-1]) || (i+1 < len(rs) && unicode.IsLower(rs[i+1]))) {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}
