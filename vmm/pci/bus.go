// Package pci is gureum's PCI root bus: configuration mechanism #1 at I/O
// ports 0xcf8..0xcff, a host bridge in slot 0, and up to 31 devices with
// memory BARs in the 32-bit MMIO window.
//
// How a guest finds a device: it writes an address to port 0xcf8 (enable
// bit 31, bus in bits 23:16, device in 15:11, function in 10:8, register in
// 7:2) and then reads or writes the addressed dword, or a byte or word of
// it, at ports 0xcfc..0xcff. Reading vendor ID 0xffff means nothing is
// there. For each device it then sizes the BARs, reads the capability list
// and turns on memory decoding; from then on the device's registers are
// ordinary MMIO, served by the handlers the bus placed on the VM's MMIO bus.
package pci

import (
	"encoding/binary"
	"fmt"

	"gureum/vmm/devices"
	"gureum/vmm/layout"
)

// Device is what sits in a slot. Everything the bus needs (identity,
// configuration registers, BARs and their MMIO handlers) is in its
// ConfigSpace; the device reacts to guest writes through the space's hooks.
type Device interface {
	ConfigSpace() *ConfigSpace
}

// NumSlots is the number of device numbers on a bus.
const NumSlots = 32

// Identity of the host bridge in slot 0: Red Hat's "PCIe host bridge".
const (
	VendorRedHat        = 0x1b36
	DeviceHostBridge    = 0x0008
	ClassHostBridge     = 0x060000
	configAddressEnable = 1 << 31
)

// Bus is PCI bus 0. It is a devices.Device for the eight ports at
// layout.PCIConfAddr and owns BAR placement in the window starting at
// layout.PCIMMIOStart. It is used only as device code (under the event loop's device lock).
type Bus struct {
	mmio    *devices.Bus
	slots   [NumSlots]Device
	names   [NumSlots]string
	address uint32 // the last value written to 0xcf8
	nextBAR uint64 // next free address in the MMIO window
}

// NewBus returns bus 0 with a host bridge in slot 0. BAR handlers go on
// mmio.
func NewBus(mmio *devices.Bus) *Bus {
	b := &Bus{mmio: mmio, nextBAR: layout.PCIMMIOStart}
	b.slots[0] = hostBridge{NewConfigSpace(Header{
		VendorID: VendorRedHat, DeviceID: DeviceHostBridge, Class: ClassHostBridge,
	})}
	b.names[0] = "host bridge"
	return b
}

type hostBridge struct{ cs *ConfigSpace }

// ConfigSpace is the bridge's header: identity only, no BARs.
func (h hostBridge) ConfigSpace() *ConfigSpace { return h.cs }

// Add puts dev in the lowest free slot (1..31), assigns each of its BARs
// the next naturally aligned address in the MMIO window and maps it. It
// returns the slot number. Call it while building the VM.
func (b *Bus) Add(name string, dev Device) (int, error) {
	slot := -1
	for i := 1; i < NumSlots; i++ {
		if b.slots[i] == nil {
			slot = i
			break
		}
	}
	if slot < 0 {
		return 0, fmt.Errorf("add pci device %s: all %d slots in use", name, NumSlots-1)
	}
	cs := dev.ConfigSpace()
	next := b.nextBAR
	addrs := make(map[int]uint64)
	for i := range cs.bars {
		size := cs.bars[i].size
		if size == 0 {
			continue
		}
		base := (next + size - 1) &^ (size - 1)
		if base+size > layout.PCIMMIOStart+layout.PCIMMIOSize {
			return 0, fmt.Errorf("add pci device %s: bar %d of %#x bytes does not fit the MMIO window", name, i, size)
		}
		addrs[i] = base
		next = base + size
	}
	cs.mmio, cs.name = b.mmio, fmt.Sprintf("pci %02x.0 %s", slot, name)
	for i, a := range addrs {
		cs.setBARAddress(i, a)
	}
	cs.remap()
	for i := range addrs {
		if _, ok := cs.BARMapped(i); !ok {
			cs.unmapAll()
			return 0, fmt.Errorf("add pci device %s: bar %d at %#x overlaps another device", name, i, addrs[i])
		}
	}
	b.nextBAR = next
	b.slots[slot], b.names[slot] = dev, name
	return slot, nil
}

// Device returns the device in slot, or nil.
func (b *Bus) Device(slot int) Device {
	if slot < 0 || slot >= NumSlots {
		return nil
	}
	return b.slots[slot]
}

// target decodes the address register: the configuration space it selects
// and the dword-aligned register offset, or nil when nothing answers (enable
// bit clear, another bus, a function other than 0, an empty slot).
func (b *Bus) target() (*ConfigSpace, uint64) {
	a := b.address
	if a&configAddressEnable == 0 {
		return nil, 0
	}
	bus, slot, fn := (a>>16)&0xff, (a>>11)&0x1f, (a>>8)&0x7
	if bus != 0 || fn != 0 || b.slots[slot] == nil {
		return nil, 0
	}
	return b.slots[slot].ConfigSpace(), uint64(a & 0xfc)
}

// Read serves a guest IN from the configuration ports (offset 0 is 0xcf8).
func (b *Bus) Read(offset uint64, data []byte) {
	switch {
	case offset == 0 && len(data) == 4:
		binary.LittleEndian.PutUint32(data, b.address)
		return
	case offset >= 4 && offset-4+uint64(len(data)) <= 4:
		if cs, reg := b.target(); cs != nil {
			cs.Read(reg+offset-4, data)
			return
		}
	}
	for i := range data {
		data[i] = 0xff // no device: the bus floats high
	}
}

// Write serves a guest OUT to the configuration ports. Only a dword write
// at 0xcf8 sets the address register; other sizes there are not
// configuration cycles and are dropped.
func (b *Bus) Write(offset uint64, data []byte) {
	switch {
	case offset == 0 && len(data) == 4:
		b.address = binary.LittleEndian.Uint32(data)
	case offset >= 4 && offset-4+uint64(len(data)) <= 4:
		if cs, reg := b.target(); cs != nil {
			cs.Write(reg+offset-4, data)
		}
	}
}

var _ devices.Device = (*Bus)(nil)

// ECAMSize is the ECAM window for bus 0: 32 devices × 8 functions × 4 KiB.
const ECAMSize = 1 << 20

// ECAM returns bus 0's enhanced configuration access window, for the VMM
// to insert on the MMIO bus at layout.PCIECAMStart once the ACPI tables
// announce it (MCFG). There, configuration space is plain memory: the
// offset is dev<<15 | fn<<12 | register. Bytes past the 256 that a
// conventional function has read as zero (so the extended capability list
// is empty), and absent functions read all-ones.
func (b *Bus) ECAM() devices.Device { return ecamWindow{b} }

type ecamWindow struct{ b *Bus }

// function returns the configuration space an ECAM offset selects.
func (w ecamWindow) function(offset uint64) *ConfigSpace {
	slot, fn := (offset>>15)&0x1f, (offset>>12)&0x7
	if offset >= ECAMSize || fn != 0 || w.b.slots[slot] == nil {
		return nil
	}
	return w.b.slots[slot].ConfigSpace()
}

// Read serves a guest read of the window; absent functions read all-ones.
func (w ecamWindow) Read(offset uint64, data []byte) {
	cs := w.function(offset)
	if cs == nil || offset&0xfff+uint64(len(data)) > 0x1000 {
		for i := range data {
			data[i] = 0xff
		}
		return
	}
	cs.Read(offset&0xfff, data)
}

// Write serves a guest write of the window; absent functions ignore it.
func (w ecamWindow) Write(offset uint64, data []byte) {
	if cs := w.function(offset); cs != nil && offset&0xfff+uint64(len(data)) <= 0x1000 {
		cs.Write(offset&0xfff, data)
	}
}
