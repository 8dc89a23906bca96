package pci

import (
	"encoding/binary"
	"testing"

	"gureum/vmm/devices"
	"gureum/vmm/layout"
)

// guest drives the bus through ports 0xcf8/0xcfc as a guest kernel does.
type guest struct {
	t   *testing.T
	bus *Bus
}

func (g guest) addr(slot, fn int, reg uint64) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], configAddressEnable|uint32(slot)<<11|uint32(fn)<<8|uint32(reg&0xfc))
	g.bus.Write(0, b[:])
}

func (g guest) read(slot int, reg uint64, size int) uint32 {
	g.addr(slot, 0, reg)
	b := make([]byte, 4)
	g.bus.Read(4+reg&3, b[:size])
	return binary.LittleEndian.Uint32(b)
}

func (g guest) write(slot int, reg uint64, size int, v uint32) {
	g.addr(slot, 0, reg)
	b := make([]byte, 4)
	binary.LittleEndian.PutUint32(b, v)
	g.bus.Write(4+reg&3, b[:size])
}

// recorder is an MMIO handler that remembers the last offset it saw.
type recorder struct{ last uint64 }

func (r *recorder) Read(off uint64, data []byte) { r.last = off; data[0] = 0x5a }
func (r *recorder) Write(off uint64, _ []byte)   { r.last = off }

type testDevice struct{ cs *ConfigSpace }

func (d testDevice) ConfigSpace() *ConfigSpace { return d.cs }

func newTestDevice(t *testing.T, h *recorder) testDevice {
	t.Helper()
	cs := NewConfigSpace(Header{VendorID: 0x1af4, DeviceID: 0x1042, Revision: 1, Class: 0x010000,
		SubsystemVendorID: 0x1af4, SubsystemID: 0x1100})
	if err := cs.AddBAR(0, 0x4000, true, h); err != nil {
		t.Fatal(err)
	}
	if err := cs.AddBAR(2, 0x1000, false, &recorder{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AddCapability(CapVendor, []byte{4, 1, 0, 0}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AddCapability(CapMSIX, []byte{0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0}, []byte{0, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	return testDevice{cs}
}

func TestEnumerate(t *testing.T) {
	mmio := &devices.Bus{}
	bus := NewBus(mmio)
	g := guest{t, bus}
	slot, err := bus.Add("blk", newTestDevice(t, &recorder{}))
	if err != nil || slot != 1 {
		t.Fatalf("add: slot %d, %v", slot, err)
	}
	var found []int
	for s := 0; s < NumSlots; s++ {
		if v := g.read(s, RegVendorID, 4); v != 0xffffffff {
			found = append(found, s)
		}
	}
	if len(found) != 2 || found[0] != 0 || found[1] != 1 {
		t.Fatalf("found slots %v, want [0 1]", found)
	}
	if v := g.read(0, 0, 4); v != DeviceHostBridge<<16|VendorRedHat {
		t.Errorf("host bridge id %#x", v)
	}
	if v := g.read(0, RegRevision, 4) >> 8; v != ClassHostBridge {
		t.Errorf("host bridge class %#x", v)
	}
	if v := g.read(1, RegDeviceID, 2); v != 0x1042 {
		t.Errorf("device id (word read) %#x", v)
	}
	if v := g.read(1, RegClass+2, 1); v != 0x01 {
		t.Errorf("class byte %#x", v)
	}
	if v := g.read(1, RegSubsystemID, 2); v != 0x1100 {
		t.Errorf("subsystem id %#x", v)
	}
	// Function 1 and another bus are absent.
	g.addr(1, 1, 0)
	b := make([]byte, 4)
	bus.Read(4, b)
	if binary.LittleEndian.Uint32(b) != 0xffffffff {
		t.Error("function 1 answered")
	}
	var a [4]byte
	binary.LittleEndian.PutUint32(a[:], configAddressEnable|1<<16|1<<11)
	bus.Write(0, a[:])
	bus.Read(4, b)
	if binary.LittleEndian.Uint32(b) != 0xffffffff {
		t.Error("bus 1 answered")
	}
	// Without the enable bit nothing answers either.
	binary.LittleEndian.PutUint32(a[:], 1<<11)
	bus.Write(0, a[:])
	bus.Read(4, b)
	if binary.LittleEndian.Uint32(b) != 0xffffffff {
		t.Error("disabled address answered")
	}
	// The address register reads back.
	bus.Read(0, b)
	if binary.LittleEndian.Uint32(b) != 1<<11 {
		t.Errorf("address register %#x", b)
	}
}

func TestReadOnlyFields(t *testing.T) {
	bus := NewBus(&devices.Bus{})
	g := guest{t, bus}
	if _, err := bus.Add("blk", newTestDevice(t, &recorder{})); err != nil {
		t.Fatal(err)
	}
	g.write(1, RegVendorID, 4, 0x12345678)
	g.write(1, RegRevision, 4, 0xffffffff)
	g.write(1, RegCapPointer, 1, 0x80)
	if v := g.read(1, RegVendorID, 4); v != 0x10421af4 {
		t.Errorf("vendor/device changed to %#x", v)
	}
	if v := g.read(1, RegRevision, 4); v != 0x01000001 {
		t.Errorf("class/revision changed to %#x", v)
	}
	if v := g.read(1, RegCapPointer, 1); v != firstCapOffset {
		t.Errorf("capability pointer changed to %#x", v)
	}
	g.write(1, RegInterruptLine, 1, 11)
	if v := g.read(1, RegInterruptLine, 1); v != 11 {
		t.Errorf("interrupt line scratch %d", v)
	}
	if v := g.read(1, RegInterruptPin, 1); v != 0 {
		t.Errorf("interrupt pin %d, want 0 (no INTx)", v)
	}
	// Unused BARs and the expansion ROM read zero and ignore writes.
	g.write(1, RegBAR0+16, 4, 0xffffffff)
	g.write(1, 0x30, 4, 0xffffffff)
	if v := g.read(1, RegBAR0+16, 4); v != 0 {
		t.Errorf("unused bar 4 = %#x", v)
	}
	if v := g.read(1, 0x30, 4); v != 0 {
		t.Errorf("expansion rom = %#x", v)
	}
}

func TestBARSizingAndMove(t *testing.T) {
	mmio := &devices.Bus{}
	bus := NewBus(mmio)
	g := guest{t, bus}
	h := &recorder{}
	if _, err := bus.Add("blk", newTestDevice(t, h)); err != nil {
		t.Fatal(err)
	}
	lo := g.read(1, RegBAR0, 4)
	hi := g.read(1, RegBAR0+4, 4)
	if lo&0xf != 0x4 {
		t.Fatalf("bar0 type bits %#x, want 64-bit memory", lo&0xf)
	}
	base := uint64(hi)<<32 | uint64(lo&^0xf)
	if base != layout.PCIMMIOStart {
		t.Fatalf("bar0 at %#x, want %#x", base, layout.PCIMMIOStart)
	}
	bar2 := uint64(g.read(1, RegBAR0+8, 4))
	if bar2&0xf != 0 || bar2 != layout.PCIMMIOStart+0x4000 {
		t.Fatalf("bar2 = %#x", bar2)
	}
	// The handler answers at the assigned address.
	b := make([]byte, 4)
	if !mmio.Read(base+0x10, b) || h.last != 0x10 || b[0] != 0x5a {
		t.Fatal("bar0 handler not mapped")
	}

	// Size it the way Linux does: decode off, all-ones, read, restore.
	g.write(1, RegCommand, 2, 0)
	if mmio.Read(base, b) {
		t.Fatal("bar still decoded with memory disabled")
	}
	g.write(1, RegBAR0, 4, 0xffffffff)
	g.write(1, RegBAR0+4, 4, 0xffffffff)
	mlo, mhi := g.read(1, RegBAR0, 4), g.read(1, RegBAR0+4, 4)
	if size := ^(uint64(mhi)<<32 | uint64(mlo&^0xf)) + 1; size != 0x4000 || mlo&0xf != 0x4 {
		t.Fatalf("sized bar0: mask %#x:%#x -> size %#x", mhi, mlo, size)
	}
	g.write(1, RegBAR0+8, 4, 0xffffffff)
	if m := g.read(1, RegBAR0+8, 4); m != 0xfffff000 {
		t.Fatalf("bar2 mask %#x", m)
	}
	// The guest moves bar0 to a new place and enables decoding.
	const moved = 0xd000_0000
	g.write(1, RegBAR0, 4, moved)
	g.write(1, RegBAR0+4, 4, 0)
	g.write(1, RegBAR0+8, 4, uint32(bar2))
	g.write(1, RegCommand, 2, CommandMemory|CommandBusMaster)
	if mmio.Read(base, b) {
		t.Fatal("old bar0 address still decoded")
	}
	if !mmio.Read(moved+0x20, b) || h.last != 0x20 {
		t.Fatal("bar0 handler not at the new address")
	}
	if got, ok := bus.Device(1).ConfigSpace().BARMapped(0); !ok || got != moved {
		t.Fatalf("BARMapped = %#x %v", got, ok)
	}
	// Moving bar0 onto bar2 leaves it unmapped rather than stealing bar2.
	g.write(1, RegBAR0, 4, uint32(bar2))
	if _, ok := bus.Device(1).ConfigSpace().BARMapped(0); ok {
		t.Fatal("overlapping bar0 was mapped")
	}
	g.write(1, RegBAR0, 4, moved)
	if _, ok := bus.Device(1).ConfigSpace().BARMapped(0); !ok {
		t.Fatal("bar0 not remapped after moving back")
	}
}

func TestCapabilityWalk(t *testing.T) {
	bus := NewBus(&devices.Bus{})
	g := guest{t, bus}
	if _, err := bus.Add("blk", newTestDevice(t, &recorder{})); err != nil {
		t.Fatal(err)
	}
	if g.read(1, RegStatus, 2)&StatusCapList == 0 {
		t.Fatal("status does not announce a capability list")
	}
	var ids []uint32
	seen := map[uint32]bool{}
	for p := g.read(1, RegCapPointer, 1); p != 0; p = g.read(1, uint64(p)+1, 1) {
		if seen[p] || p < 0x40 || p&3 != 0 {
			t.Fatalf("bad capability pointer %#x", p)
		}
		seen[p] = true
		ids = append(ids, g.read(1, uint64(p), 1))
	}
	if len(ids) != 2 || ids[0] != CapVendor || ids[1] != CapMSIX {
		t.Fatalf("capabilities %v", ids)
	}
	// Only the writable bits of the MSI-X message control change.
	msix := uint64(0x48)
	g.write(1, msix+2, 2, 0xffff)
	if v := g.read(1, msix+2, 2); v != 0xc001 {
		t.Fatalf("msi-x control = %#x, want 0xc001", v)
	}
	// The host bridge has no capabilities.
	if g.read(0, RegStatus, 2)&StatusCapList != 0 || g.read(0, RegCapPointer, 1) != 0 {
		t.Fatal("host bridge claims capabilities")
	}
}

func TestBARPlacementAndLimits(t *testing.T) {
	mmio := &devices.Bus{}
	bus := NewBus(mmio)
	// BARs are naturally aligned even when a smaller one came first.
	small := NewConfigSpace(Header{VendorID: 1})
	if err := small.AddBAR(0, 0x100, false, &recorder{}); err != nil {
		t.Fatal(err)
	}
	big := NewConfigSpace(Header{VendorID: 1})
	if err := big.AddBAR(0, 0x10000, true, &recorder{}); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Add("small", testDevice{small}); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Add("big", testDevice{big}); err != nil {
		t.Fatal(err)
	}
	if a := big.BARAddress(0); a != layout.PCIMMIOStart+0x10000 {
		t.Fatalf("big bar at %#x", a)
	}
	bad := NewConfigSpace(Header{})
	for _, tc := range []struct {
		idx  int
		size uint64
		is64 bool
	}{{0, 0x3000, false}, {0, 8, false}, {5, 0x1000, true}, {6, 0x1000, false}, {-1, 0x1000, false}} {
		if err := bad.AddBAR(tc.idx, tc.size, tc.is64, &recorder{}); err == nil {
			t.Errorf("AddBAR(%d, %#x, %v) accepted", tc.idx, tc.size, tc.is64)
		}
	}
	if err := bad.AddBAR(0, 0x1000, true, &recorder{}); err != nil {
		t.Fatal(err)
	}
	if err := bad.AddBAR(1, 0x1000, false, &recorder{}); err == nil {
		t.Error("AddBAR on the upper half of a 64-bit BAR accepted")
	}
	// Fill every slot; the 32nd device finds none.
	for i := 3; i < NumSlots; i++ {
		if _, err := bus.Add("filler", testDevice{NewConfigSpace(Header{VendorID: 1})}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := bus.Add("extra", testDevice{NewConfigSpace(Header{VendorID: 1})}); err == nil {
		t.Fatal("added a device with every slot in use")
	}
}

func TestECAM(t *testing.T) {
	mmio := &devices.Bus{}
	bus := NewBus(mmio)
	if _, err := bus.Add("blk", newTestDevice(t, &recorder{})); err != nil {
		t.Fatal(err)
	}
	if err := mmio.Insert("ecam", layout.PCIECAMStart, ECAMSize, bus.ECAM()); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	read := func(slot, fn, reg uint64) uint32 {
		if !mmio.Read(layout.PCIECAMStart+slot<<15|fn<<12|reg, b) {
			t.Fatal("ecam read unclaimed")
		}
		return binary.LittleEndian.Uint32(b)
	}
	if v := read(1, 0, 0); v != 0x10421af4 {
		t.Fatalf("slot 1 ids %#x", v)
	}
	if v := read(2, 0, 0); v != 0xffffffff {
		t.Fatalf("empty slot %#x", v)
	}
	if v := read(1, 1, 0); v != 0xffffffff {
		t.Fatalf("function 1 %#x", v)
	}
	if v := read(1, 0, 0x100); v != 0 {
		t.Fatalf("extended capability header %#x, want 0", v)
	}
	// Writes through ECAM reach the same registers as port I/O.
	binary.LittleEndian.PutUint32(b, 0)
	mmio.Write(layout.PCIECAMStart+1<<15|RegCommand, b[:2])
	if bus.Device(1).ConfigSpace().Command()&CommandMemory != 0 {
		t.Fatal("command write through ECAM lost")
	}
}
