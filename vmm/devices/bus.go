// Package devices holds what every emulated device shares: the bus a device
// sits on and the interrupt line it raises. Devices see these two things and
// never the machine (vCPUs, KVM fds, other devices).
package devices

import (
	"fmt"
	"sort"
)

// Device is a register block on the port-I/O or MMIO bus. Offsets are
// relative to the base the device was inserted at; len(data) is 1, 2, 4 or 8.
//
// Read and Write are called only from device code (under the VM's device
// lock), so a device needs no lock for state that only they touch.
type Device interface {
	Read(offset uint64, data []byte)
	Write(offset uint64, data []byte)
}

// Line is an edge-triggered interrupt line (an irqfd on a GSI of the
// in-kernel irqchip). Trigger may be called from any goroutine.
type Line interface {
	Trigger() error
}

type busRange struct {
	base, size uint64
	dev        Device
	name       string
}

// Bus maps address ranges to devices. It is used only as device code
// (under the VM's device lock: a vCPU's exit takes it), so it needs no
// lock of its own, and a PCI BAR that the guest moves can be re-inserted
// while the VM runs.
type Bus struct {
	ranges []busRange // sorted by base, non-overlapping
}

// Insert places dev at [base, base+size). Overlapping an existing range is
// an error.
func (b *Bus) Insert(name string, base, size uint64, dev Device) error {
	if size == 0 || base+size < base {
		return fmt.Errorf("insert %s: bad range [%#x, +%#x)", name, base, size)
	}
	i := sort.Search(len(b.ranges), func(i int) bool { return b.ranges[i].base >= base })
	if i > 0 && b.ranges[i-1].base+b.ranges[i-1].size > base {
		return fmt.Errorf("insert %s at %#x: overlaps %s", name, base, b.ranges[i-1].name)
	}
	if i < len(b.ranges) && base+size > b.ranges[i].base {
		return fmt.Errorf("insert %s at %#x: overlaps %s", name, base, b.ranges[i].name)
	}
	b.ranges = append(b.ranges, busRange{})
	copy(b.ranges[i+1:], b.ranges[i:])
	b.ranges[i] = busRange{base: base, size: size, dev: dev, name: name}
	return nil
}

// Remove takes the device at base off the bus (used when a BAR moves).
func (b *Bus) Remove(base uint64) {
	for i, r := range b.ranges {
		if r.base == base {
			b.ranges = append(b.ranges[:i], b.ranges[i+1:]...)
			return
		}
	}
}

func (b *Bus) find(addr uint64, n int) (busRange, bool) {
	i := sort.Search(len(b.ranges), func(i int) bool { return b.ranges[i].base+b.ranges[i].size > addr })
	if i == len(b.ranges) {
		return busRange{}, false
	}
	r := b.ranges[i]
	if addr < r.base || addr+uint64(n) > r.base+r.size {
		return busRange{}, false
	}
	return r, true
}

// Read dispatches a guest read. It reports false when no device claims the
// whole access; the caller then returns all-ones to the guest.
func (b *Bus) Read(addr uint64, data []byte) bool {
	r, ok := b.find(addr, len(data))
	if !ok {
		return false
	}
	r.dev.Read(addr-r.base, data)
	return true
}

// Write dispatches a guest write. It reports false when no device claims the
// whole access; the write is then dropped.
func (b *Bus) Write(addr uint64, data []byte) bool {
	r, ok := b.find(addr, len(data))
	if !ok {
		return false
	}
	r.dev.Write(addr-r.base, data)
	return true
}
