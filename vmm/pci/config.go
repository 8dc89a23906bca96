package pci

import (
	"encoding/binary"
	"fmt"

	"gureum/vmm/devices"
)

// Offsets in a type-0 configuration header (PCI Local Bus 3.0, 6.1).
const (
	RegVendorID      = 0x00
	RegDeviceID      = 0x02
	RegCommand       = 0x04
	RegStatus        = 0x06
	RegRevision      = 0x08
	RegClass         = 0x09 // prog-if, subclass, class: three bytes
	RegCacheLineSize = 0x0c
	RegLatencyTimer  = 0x0d
	RegHeaderType    = 0x0e
	RegBAR0          = 0x10
	RegSubsystemVID  = 0x2c
	RegSubsystemID   = 0x2e
	RegCapPointer    = 0x34
	RegInterruptLine = 0x3c
	RegInterruptPin  = 0x3d
)

// Command and status bits.
const (
	CommandMemory      = 1 << 1  // respond to accesses in memory BARs
	CommandBusMaster   = 1 << 2  // the device may do DMA and send MSIs
	CommandINTxDisable = 1 << 10 // (we have no INTx; the bit is only stored)
	StatusCapList      = 1 << 4  // the capability list at RegCapPointer is valid
)

// Capability IDs.
const (
	CapVendor = 0x09
	CapMSIX   = 0x11
)

// ConfigSize is the size of a conventional configuration space: all that
// configuration mechanism #1 can reach.
const ConfigSize = 256

// NumBARs is the number of base address registers in a type-0 header.
const NumBARs = 6

const firstCapOffset = 0x40

// Header is the identity a device shows in its configuration header.
type Header struct {
	VendorID, DeviceID             uint16
	Revision                       uint8
	Class                          uint32 // class<<16 | subclass<<8 | prog-if
	SubsystemVendorID, SubsystemID uint16
	InterruptPin                   uint8 // 0: no INTx
}

// bar is one memory BAR as the device declared it.
type bar struct {
	size    uint64 // 0: unused
	is64    bool   // occupies this and the next register
	handler devices.Device
	mapped  bool
	base    uint64 // where handler sits on the MMIO bus when mapped
}

// ConfigSpace is a type-0 configuration space with memory BARs and a
// capability list. It keeps the bytes the guest sees and, per byte, which
// bits the guest may change: a write changes only those bits, so read-only
// fields stay read-only without per-register code.
//
// BAR sizing falls out of the same rule. A BAR's writable bits are its
// address bits above the region size; when the guest writes all-ones and
// reads back, the size bits and the type bits read as zero, which is the
// size mask the guest is looking for.
//
// A ConfigSpace is used only as device code (under the event loop's device lock).
type ConfigSpace struct {
	data     [ConfigSize]byte
	writable [ConfigSize]byte
	bars     [NumBARs]bar
	lastCap  int // offset of the last capability, 0 if none
	nextCap  int // where the next capability goes
	mmio     *devices.Bus
	name     string
	onWrite  func(offset uint64, n int)
}

// NewConfigSpace returns a header with h's identity. Memory decoding starts
// enabled, as firmware would leave it, so BARs the bus assigns are live at
// once.
func NewConfigSpace(h Header) *ConfigSpace {
	c := &ConfigSpace{nextCap: firstCapOffset}
	binary.LittleEndian.PutUint16(c.data[RegVendorID:], h.VendorID)
	binary.LittleEndian.PutUint16(c.data[RegDeviceID:], h.DeviceID)
	c.data[RegRevision] = h.Revision
	c.data[RegClass] = byte(h.Class)
	c.data[RegClass+1] = byte(h.Class >> 8)
	c.data[RegClass+2] = byte(h.Class >> 16)
	binary.LittleEndian.PutUint16(c.data[RegSubsystemVID:], h.SubsystemVendorID)
	binary.LittleEndian.PutUint16(c.data[RegSubsystemID:], h.SubsystemID)
	c.data[RegInterruptPin] = h.InterruptPin
	binary.LittleEndian.PutUint16(c.data[RegCommand:], CommandMemory)
	binary.LittleEndian.PutUint16(c.writable[RegCommand:], CommandMemory|CommandBusMaster|CommandINTxDisable)
	// Scratch registers the guest may use freely.
	c.writable[RegCacheLineSize] = 0xff
	c.writable[RegLatencyTimer] = 0xff
	c.writable[RegInterruptLine] = 0xff
	return c
}

// AddBAR declares memory BAR index of size bytes (a power of two, at least
// 16) served by handler. A 64-bit BAR also takes register index+1. It must
// be called before the device is added to a Bus, which assigns the address.
func (c *ConfigSpace) AddBAR(index int, size uint64, is64 bool, handler devices.Device) error {
	last := index
	if is64 {
		last++
	}
	if index < 0 || last >= NumBARs {
		return fmt.Errorf("add bar %d: index out of range", index)
	}
	if size < 16 || size&(size-1) != 0 || (!is64 && size > 1<<31) {
		return fmt.Errorf("add bar %d: bad size %#x", index, size)
	}
	for i := index; i <= last; i++ {
		if c.bars[i].size != 0 || (i > 0 && c.bars[i-1].is64) {
			return fmt.Errorf("add bar %d: register %d already in use", index, i)
		}
	}
	c.bars[index] = bar{size: size, is64: is64, handler: handler}
	reg := RegBAR0 + 4*index
	var typeBits uint32 // bit 0 = 0: memory space; bits 2:1: 00 32-bit, 10 64-bit
	if is64 {
		typeBits = 0x4
	}
	binary.LittleEndian.PutUint32(c.data[reg:], typeBits)
	binary.LittleEndian.PutUint32(c.writable[reg:], uint32(^(size-1))&^0xf)
	if is64 {
		binary.LittleEndian.PutUint32(c.writable[reg+4:], uint32(^(size-1)>>32))
	}
	return nil
}

// AddCapability appends a capability with the given ID. body is everything
// after the ID and next-pointer bytes; writable (nil, or as long as body)
// says which of its bits the guest may change. It returns the capability's
// offset in configuration space.
func (c *ConfigSpace) AddCapability(id uint8, body, writable []byte) (uint64, error) {
	if writable != nil && len(writable) != len(body) {
		return 0, fmt.Errorf("add capability %#x: writable mask of %d bytes for %d-byte body", id, len(writable), len(body))
	}
	off := c.nextCap
	end := off + 2 + len(body)
	if end > ConfigSize {
		return 0, fmt.Errorf("add capability %#x: configuration space full", id)
	}
	c.data[off] = id
	copy(c.data[off+2:], body)
	copy(c.writable[off+2:], writable)
	if c.lastCap == 0 {
		c.data[RegCapPointer] = byte(off)
		c.data[RegStatus] |= StatusCapList
	} else {
		c.data[c.lastCap+1] = byte(off)
	}
	c.lastCap = off
	c.nextCap = (end + 3) &^ 3 // capabilities are dword aligned
	return uint64(off), nil
}

// SetWriteHook installs fn, called after every guest write with the range
// written, so a device can react to its own capability registers (MSI-X
// enable and mask, for example).
func (c *ConfigSpace) SetWriteHook(fn func(offset uint64, n int)) { c.onWrite = fn }

// Read copies configuration bytes at offset into data. Bytes beyond the
// space read as zero.
func (c *ConfigSpace) Read(offset uint64, data []byte) {
	for i := range data {
		data[i] = 0
		if o := offset + uint64(i); o < ConfigSize {
			data[i] = c.data[o]
		}
	}
}

// Write applies a guest write: only writable bits change. A write that
// touches the command register or a BAR re-maps the BARs.
func (c *ConfigSpace) Write(offset uint64, data []byte) {
	if offset >= ConfigSize || uint64(len(data)) > ConfigSize-offset {
		return
	}
	for i, v := range data {
		o := offset + uint64(i)
		m := c.writable[o]
		c.data[o] = c.data[o]&^m | v&m
	}
	end := offset + uint64(len(data))
	touches := func(lo, hi uint64) bool { return offset < hi && end > lo }
	if touches(RegCommand, RegCommand+2) || touches(RegBAR0, RegBAR0+4*NumBARs) {
		c.remap()
	}
	if c.onWrite != nil {
		c.onWrite(offset, len(data))
	}
}

// Uint16 and Uint32 read configuration registers for the device model.
func (c *ConfigSpace) Uint16(offset uint64) uint16 {
	var b [2]byte
	c.Read(offset, b[:])
	return binary.LittleEndian.Uint16(b[:])
}

// Uint32 reads a 32-bit configuration register.
func (c *ConfigSpace) Uint32(offset uint64) uint32 {
	var b [4]byte
	c.Read(offset, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

// Command is the command register.
func (c *ConfigSpace) Command() uint16 { return c.Uint16(RegCommand) }

// BARAddress is the guest-physical address programmed into BAR index (the
// type bits masked off).
func (c *ConfigSpace) BARAddress(index int) uint64 {
	if index < 0 || index >= NumBARs {
		return 0
	}
	reg := uint64(RegBAR0 + 4*index)
	addr := uint64(c.Uint32(reg) &^ 0xf)
	if c.bars[index].is64 {
		addr |= uint64(c.Uint32(reg+4)) << 32
	}
	return addr
}

// BARMapped reports whether BAR index is live on the MMIO bus, and where.
func (c *ConfigSpace) BARMapped(index int) (base uint64, ok bool) {
	if index < 0 || index >= NumBARs {
		return 0, false
	}
	return c.bars[index].base, c.bars[index].mapped
}

// setBARAddress programs BAR index (used by the bus at build time).
func (c *ConfigSpace) setBARAddress(index int, addr uint64) {
	reg := RegBAR0 + 4*index
	low := binary.LittleEndian.Uint32(c.data[reg:])&0xf | uint32(addr)&^0xf
	binary.LittleEndian.PutUint32(c.data[reg:], low)
	if c.bars[index].is64 {
		binary.LittleEndian.PutUint32(c.data[reg+4:], uint32(addr>>32))
	}
}

// remap puts every BAR's handler where the guest programmed it, or takes it
// off the bus while memory decoding is disabled. A BAR the guest moves onto
// another device's range stays unmapped until it is moved somewhere free:
// a guest can break its own devices this way, but not someone else's.
func (c *ConfigSpace) remap() {
	if c.mmio == nil {
		return
	}
	enabled := c.Command()&CommandMemory != 0
	for i := range c.bars {
		b := &c.bars[i]
		if b.size == 0 {
			continue
		}
		want := c.BARAddress(i)
		if b.mapped && (!enabled || b.base != want) {
			c.mmio.Remove(b.base)
			b.mapped = false
		}
		if enabled && !b.mapped {
			err := c.mmio.Insert(fmt.Sprintf("%s bar%d", c.name, i), want, b.size, b.handler)
			if err != nil {
				continue // overlap or wrap: the guest's own doing; stay unmapped
			}
			b.mapped, b.base = true, want
		}
	}
}

// unmapAll takes every BAR off the MMIO bus (a failed Bus.Add).
func (c *ConfigSpace) unmapAll() {
	for i := range c.bars {
		if b := &c.bars[i]; b.mapped {
			c.mmio.Remove(b.base)
			b.mapped = false
		}
	}
	c.mmio = nil
}
