// Package guestmem is guest RAM as the VMM sees it: one anonymous shared
// mapping (MAP_NORESERVE, so an idle guest costs only the pages it touched),
// cut into regions at guest-physical addresses.
//
// Every access a device makes on behalf of the guest goes through Slice or
// the helpers built on it, which check that the whole range lies inside one
// RAM region. A guest-supplied address that is out of range, wraps around or
// straddles the 32-bit hole gets ErrOutOfRange, never a read or write of host
// memory outside guest RAM.
//
// Memory is safe for concurrent use: its regions are fixed after New. The
// guest itself writes the same bytes at any time, so callers must treat what
// they read as untrusted and read each guest field once.
package guestmem

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ErrOutOfRange is returned for a guest-physical range that is not wholly
// inside guest RAM.
var ErrOutOfRange = errors.New("guest address out of range")

// Region is one contiguous piece of guest RAM.
type Region struct {
	GPA  uint64 // guest-physical address of Data[0]
	Data []byte // host view of the region
}

// Memory is the guest's RAM.
type Memory struct {
	regions []Region
	mapping []byte // nil when the regions were supplied by the caller
}

// New maps size bytes of guest RAM laid out by layout (pairs of start and
// length, as layout.RAMRegions returns them). The lengths must add up to size.
func New(size uint64, layout [][2]uint64) (*Memory, error) {
	var total uint64
	for _, r := range layout {
		total += r[1]
	}
	if total != size || size == 0 {
		return nil, fmt.Errorf("guest memory layout covers %d bytes, want %d", total, size)
	}
	b, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_SHARED|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("map %d bytes of guest memory: %w", size, err)
	}
	m := &Memory{mapping: b}
	var off uint64
	for _, r := range layout {
		m.regions = append(m.regions, Region{GPA: r[0], Data: b[off : off+r[1] : off+r[1]]})
		off += r[1]
	}
	return m, nil
}

// FromRegions makes a Memory over caller-owned buffers. Tests use it to give
// a device model a small, fully controlled guest RAM.
func FromRegions(regions ...Region) *Memory {
	return &Memory{regions: regions}
}

// Regions returns the RAM regions in ascending address order. The caller must
// not change the returned slice.
func (m *Memory) Regions() []Region { return m.regions }

// Size is the total RAM in bytes.
func (m *Memory) Size() uint64 {
	var n uint64
	for _, r := range m.regions {
		n += uint64(len(r.Data))
	}
	return n
}

// Close unmaps guest RAM. No access may follow.
func (m *Memory) Close() error {
	if m.mapping == nil {
		return nil
	}
	err := unix.Munmap(m.mapping)
	m.mapping, m.regions = nil, nil
	return err
}

// Slice returns the host view of [gpa, gpa+n). The range must lie inside one
// region; n may be zero only for an address inside RAM.
func (m *Memory) Slice(gpa, n uint64) ([]byte, error) {
	for _, r := range m.regions {
		size := uint64(len(r.Data))
		if gpa < r.GPA || gpa-r.GPA >= size {
			continue
		}
		off := gpa - r.GPA
		if n > size-off {
			break
		}
		return r.Data[off : off+n : off+n], nil
	}
	return nil, fmt.Errorf("%w: [%#x, +%#x)", ErrOutOfRange, gpa, n)
}

// ReadAt copies len(p) bytes of guest memory at gpa into p.
func (m *Memory) ReadAt(p []byte, gpa uint64) error {
	s, err := m.Slice(gpa, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(p, s)
	return nil
}

// WriteAt copies p into guest memory at gpa.
func (m *Memory) WriteAt(p []byte, gpa uint64) error {
	s, err := m.Slice(gpa, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(s, p)
	return nil
}

// Uint16 reads a little-endian 16-bit value.
func (m *Memory) Uint16(gpa uint64) (uint16, error) {
	s, err := m.Slice(gpa, 2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(s), nil
}

// Uint32 reads a little-endian 32-bit value.
func (m *Memory) Uint32(gpa uint64) (uint32, error) {
	s, err := m.Slice(gpa, 4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(s), nil
}

// Uint64 reads a little-endian 64-bit value.
func (m *Memory) Uint64(gpa uint64) (uint64, error) {
	s, err := m.Slice(gpa, 8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(s), nil
}

// PutUint16 writes a little-endian 16-bit value.
func (m *Memory) PutUint16(gpa uint64, v uint16) error {
	s, err := m.Slice(gpa, 2)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint16(s, v)
	return nil
}

// PutUint32 writes a little-endian 32-bit value.
func (m *Memory) PutUint32(gpa uint64, v uint32) error {
	s, err := m.Slice(gpa, 4)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(s, v)
	return nil
}

// PutUint64 writes a little-endian 64-bit value.
func (m *Memory) PutUint64(gpa uint64, v uint64) error {
	s, err := m.Slice(gpa, 8)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint64(s, v)
	return nil
}
