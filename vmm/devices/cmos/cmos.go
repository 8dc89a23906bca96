// Package cmos emulates the PC's MC146818 real-time clock and its 128 bytes
// of battery-backed CMOS RAM, at ports 0x70 (index) and 0x71 (data). The
// guest reads the wall-clock time from it at boot; firmware-style loaders
// also read the memory size bytes.
//
// The clock is the host's UTC clock plus an offset the guest sets by writing
// the time registers, so `hwclock --systohc` in the guest sticks for the
// life of the VM. Periodic, alarm and update-ended interrupts (IRQ 8) are
// not emulated: their enable bits in register B are stored and do nothing,
// register C always reads 0, and the update-in-progress bit never sets.
// Linux copes: it reads the time twice around its UIP checks and compares
// the seconds, and its rtc-cmos driver works without the interrupt.
package cmos

import (
	"fmt"
	"time"

	"gureum/vmm/devices"
	"gureum/vmm/layout"
)

// Register indexes. 0x00..0x09 are the clock, 0x0a..0x0d its status and
// control, the rest general RAM with a few fields of PC convention.
const (
	regSeconds = 0x00
	regMinutes = 0x02
	regHours   = 0x04
	regWeekday = 0x06 // 1 = Sunday
	regDay     = 0x07
	regMonth   = 0x08
	regYear    = 0x09 // two digits
	regA       = 0x0a
	regB       = 0x0b
	regC       = 0x0c
	regD       = 0x0d
	// regCentury is where PCs keep the century; ACPI's FADT points here.
	regCentury = 0x32

	regBaseMemory     = 0x15 // 0x15..0x16: KiB below 1 MiB
	regExtMemory      = 0x17 // 0x17..0x18: KiB above 1 MiB, at most 0xffff
	regExtMemoryCopy  = 0x30 // 0x30..0x31: the same again
	regMemAbove16M    = 0x34 // 0x34..0x35: 64 KiB units above 16 MiB, below the 32-bit hole
	regMemAbove4G     = 0x5b // 0x5b..0x5d: 64 KiB units above 4 GiB
	ramSize           = 128
	indexMask         = 0x7f // bit 7 of the index port disables NMI on PCs; ignored
	baseMemoryKiB     = 640
	sixteenMiB        = 16 << 20
	mem64KiB          = 64 << 10
	maxExtMemoryKiB   = 0xffff
	maxMemAbove16M    = 0xffff
	maxMemAbove4GUnit = 0xffffff
)

// Register A, B and D bits.
const (
	regAUIP     = 0x80 // update in progress: never set here
	regAPowerOn = 0x26 // 32.768 kHz time base, 1024 Hz periodic rate
	regBSet     = 0x80 // the guest is setting the clock: updates stop
	regBBinary  = 0x04 // data mode: binary instead of BCD
	regB24Hour  = 0x02 // 24-hour instead of 12-hour with a PM bit
	regBPowerOn = regB24Hour
	regDValid   = 0x80 // valid RAM and time: the battery is good
	hourPM      = 0x80 // in 12-hour mode, the hours register's PM flag
)

// clockRegisters are the registers that hold the time, in the order
// encodeTime fills them.
var clockRegisters = []byte{regSeconds, regMinutes, regHours, regWeekday, regDay, regMonth, regYear, regCentury}

// Config is what the VMM gives the RTC.
type Config struct {
	// MemoryBytes is the guest's RAM size, reported in the memory size
	// bytes split around the 32-bit hole as layout.RAMRegions splits it.
	MemoryBytes uint64
	// Now is the host clock; nil means time.Now. Tests pass a fake one.
	Now func() time.Time
}

// RTC is the emulated MC146818 and CMOS RAM. Read and Write must be called
// as device code (under the VM's device lock).
type RTC struct {
	now    func() time.Time
	index  byte
	ram    [ramSize]byte
	offset time.Duration // guest clock minus host clock
}

// New makes an RTC with its RAM in the state firmware leaves it.
func New(cfg Config) *RTC {
	r := &RTC{now: cfg.Now}
	if r.now == nil {
		r.now = time.Now
	}
	r.ram[regA] = regAPowerOn
	r.ram[regB] = regBPowerOn
	r.ram[regD] = regDValid
	r.setMemorySize(cfg.MemoryBytes)
	return r
}

// Attach inserts the RTC on the I/O bus at layout.CMOSIndex (two ports).
func (r *RTC) Attach(bus *devices.Bus) error {
	if err := bus.Insert("cmos", layout.CMOSIndex, 2, r); err != nil {
		return fmt.Errorf("attach cmos: %w", err)
	}
	return nil
}

func (r *RTC) setMemorySize(mem uint64) {
	var low, high uint64
	for _, reg := range layout.RAMRegions(mem) {
		if reg[0] < layout.FourGiB {
			low += reg[1]
		} else {
			high += reg[1]
		}
	}
	put16(r.ram[regBaseMemory:], baseMemoryKiB)
	var ext uint64
	if low > layout.HighMemStart {
		ext = min((low-layout.HighMemStart)>>10, maxExtMemoryKiB)
	}
	put16(r.ram[regExtMemory:], ext)
	put16(r.ram[regExtMemoryCopy:], ext)
	var above16M uint64
	if low > sixteenMiB {
		above16M = min((low-sixteenMiB)/mem64KiB, maxMemAbove16M)
	}
	put16(r.ram[regMemAbove16M:], above16M)
	above4G := min(high/mem64KiB, maxMemAbove4GUnit)
	r.ram[regMemAbove4G] = byte(above4G)
	r.ram[regMemAbove4G+1] = byte(above4G >> 8)
	r.ram[regMemAbove4G+2] = byte(above4G >> 16)
}

func put16(b []byte, v uint64) {
	b[0] = byte(v)
	b[1] = byte(v >> 8)
}

// Read handles a guest read: offset 0 is the index port (write-only on the
// chip, reads as 0xff), offset 1 the data port. A wider access covers the
// following port too.
func (r *RTC) Read(offset uint64, data []byte) {
	for i := range data {
		if offset+uint64(i) == 1 {
			data[i] = r.readRegister(r.index)
		} else {
			data[i] = 0xff
		}
	}
}

// Write handles a guest write: offset 0 selects a register, offset 1 writes
// it.
func (r *RTC) Write(offset uint64, data []byte) {
	for i, v := range data {
		switch offset + uint64(i) {
		case 0:
			r.index = v & indexMask
		case 1:
			r.writeRegister(r.index, v)
		}
	}
}

func (r *RTC) readRegister(i byte) byte {
	switch {
	case isClockRegister(i) && r.ram[regB]&regBSet == 0:
		r.latchTime()
		return r.ram[i]
	case i == regA:
		return r.ram[regA] &^ regAUIP
	case i == regC:
		return 0 // no interrupt flags: none are emulated
	case i == regD:
		return regDValid
	}
	return r.ram[i]
}

func (r *RTC) writeRegister(i, v byte) {
	switch {
	case isClockRegister(i):
		if r.ram[regB]&regBSet == 0 {
			// Setting one field of a running clock: start from the
			// current time so the other fields keep their values.
			r.latchTime()
			r.ram[i] = v
			r.adoptGuestTime()
			return
		}
		r.ram[i] = v
	case i == regA:
		r.ram[regA] = v &^ regAUIP
	case i == regB:
		wasSet := r.ram[regB]&regBSet != 0
		if v&regBSet != 0 && !wasSet {
			// Updates stop: the registers freeze at the current time
			// (in the new format) and the guest edits them.
			r.ram[regB] = v
			r.latchTime()
			return
		}
		r.ram[regB] = v
		if wasSet && v&regBSet == 0 {
			r.adoptGuestTime()
		}
	case i == regC, i == regD:
		// Read-only.
	default:
		r.ram[i] = v
	}
}

func isClockRegister(i byte) bool {
	for _, c := range clockRegisters {
		if c == i {
			return true
		}
	}
	return false
}

// latchTime writes the guest's current time into the clock registers in the
// format register B asks for.
func (r *RTC) latchTime() {
	encodeTime(r.now().UTC().Add(r.offset), r.ram[regB], &r.ram)
}

// adoptGuestTime makes the time in the clock registers the guest's clock
// from now on. Values that are not a valid date leave the clock as it was.
func (r *RTC) adoptGuestTime() {
	t, ok := decodeTime(&r.ram, r.ram[regB])
	if !ok {
		return
	}
	r.offset = t.Sub(r.now().UTC().Truncate(time.Second))
}
