// Package acpi writes the ACPI tables of a gureum VM into guest memory.
//
// ACPI is how a PC tells the operating system what hardware it has when
// that hardware cannot be discovered by probing. A gureum VM needs only a
// few answers: how many CPUs there are and where the interrupt controllers
// sit (MADT), how to power the machine off (FADT sleep registers plus the
// \_S5 object in the DSDT), which interrupt the UART uses and where the PCI
// host bridge is (DSDT). The
// tables form a tree rooted at the RSDP, which the kernel finds either
// through the boot protocol (hvm_start_info.rsdp_paddr, boot_params.
// acpi_rsdp_addr) or by scanning 0xe0000..0xfffff for "RSD PTR ":
//
//	RSDP ──▶ XSDT ──▶ FADT ──▶ DSDT (AML: \_S5, COM1, PCI root bridge)
//	              └─▶ MADT (local APICs, I/O APIC, interrupt overrides)
//
// The machine is "hardware-reduced" ACPI (FADT flag HW_REDUCED_ACPI): there
// is no PM1 event/control block, no SCI, no FACS, no legacy ACPI mode
// switch. The only ACPI registers are the two sleep registers, which the VMM
// implements at layout.ACPISleepCtl and layout.ACPISleepSts.
//
// Write runs once, on the VMM's build path, before any vCPU runs.
package acpi

import (
	"encoding/binary"
	"fmt"

	"gureum/vmm/guestmem"
	"gureum/vmm/layout"
)

// Identity strings written into every table header.
const (
	OEMID         = "GUREUM"   // 6 bytes
	OEMTableID    = "GUREUMVM" // 8 bytes
	CreatorID     = "GRUM"     // 4 bytes
	oemRevision   = 1
	creatorRev    = 1
	headerSize    = 36
	rsdpSize      = 36
	tableAlign    = 16
	maxCPUs       = 254 // xAPIC IDs are 8 bits and the I/O APIC takes the ID after the last CPU
	rsdpRevision2 = 2   // ACPI 2.0+ RSDP, with the 64-bit XSDT pointer
)

// Config describes the machine to the tables.
type Config struct {
	// CPUs is the number of vCPUs; vCPU i has local APIC ID i.
	CPUs int
	// PCI describes the PCI host bridge, or is nil when the machine has no
	// PCI bus. See docs/boot.md for why Linux needs it in the DSDT.
	PCI *PCIHostBridge
}

// PCIHostBridge is the PCI root complex as the DSDT describes it: a PNP0A03
// device whose _CRS lists the bus numbers, the configuration ports and the
// MMIO window behind it.
type PCIHostBridge struct {
	// LastBus is the highest bus number behind the bridge (0 for a single
	// bus with no bridges).
	LastBus uint8
	// MMIOBase and MMIOSize bound the 32-bit window where BARs are placed
	// (layout.PCIMMIOStart, layout.PCIMMIOSize).
	MMIOBase, MMIOSize uint64
	// Interrupts routes legacy INTx pins to GSIs in a _PRT. Leave it empty
	// when every device uses MSI-X, as virtio-pci does.
	Interrupts []PCIInterrupt
}

// PCIInterrupt says that pin Pin (0 = INTA .. 3 = INTD) of device Slot on
// bus 0 raises I/O APIC input GSI (level-triggered, active low, as PCI
// interrupts are).
type PCIInterrupt struct {
	Slot uint8
	Pin  uint8
	GSI  uint32
}

// Tables reports where Write put each table.
type Tables struct {
	RSDP, XSDT, FADT, DSDT, MADT uint64
	End                          uint64 // first byte after the last table
}

// Write builds all tables and writes them at layout.ACPIStart (RSDP first,
// where a legacy scan finds it), checking they end before layout.ACPIEnd.
// It returns their addresses; pass Tables.RSDP to the kernel loader.
func Write(mem *guestmem.Memory, cfg Config) (Tables, error) {
	if cfg.CPUs < 1 || cfg.CPUs > maxCPUs {
		return Tables{}, fmt.Errorf("acpi: %d CPUs, want 1..%d", cfg.CPUs, maxCPUs)
	}
	dsdt, err := buildDSDT(cfg)
	if err != nil {
		return Tables{}, fmt.Errorf("acpi: %w", err)
	}
	var t Tables
	next := uint64(layout.ACPIStart)
	place := func(size int) uint64 {
		at := next
		next = (next + uint64(size) + tableAlign - 1) &^ (tableAlign - 1)
		return at
	}
	t.RSDP = place(rsdpSize)
	t.XSDT = place(headerSize + 2*8)
	t.FADT = place(fadtSize)
	t.DSDT = place(len(dsdt))
	madt := buildMADT(cfg)
	t.MADT = place(len(madt))
	t.End = next
	if t.End > layout.ACPIEnd {
		return Tables{}, fmt.Errorf("acpi: tables need %d bytes; only %d are reserved", t.End-layout.ACPIStart, layout.ACPIEnd-layout.ACPIStart)
	}
	for _, w := range []struct {
		name string
		at   uint64
		data []byte
	}{
		{"RSDP", t.RSDP, buildRSDP(t.XSDT)},
		{"XSDT", t.XSDT, buildXSDT(t.FADT, t.MADT)},
		{"FADT", t.FADT, buildFADT(t.DSDT)},
		{"DSDT", t.DSDT, dsdt},
		{"MADT", t.MADT, madt},
	} {
		if err := mem.WriteAt(w.data, w.at); err != nil {
			return Tables{}, fmt.Errorf("acpi: write %s at %#x: %w", w.name, w.at, err)
		}
	}
	return t, nil
}

// Checksum returns the byte that makes b sum to zero modulo 256, which is
// how every ACPI structure protects itself.
func Checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}

// newTable returns a table of length bytes with its standard 36-byte
// header filled in except the checksum (see finish).
//
//	0 Signature[4]  4 Length  8 Revision  9 Checksum  10 OEMID[6]
//	16 OEM Table ID[8]  24 OEM Revision  28 Creator ID[4]  32 Creator Revision
func newTable(sig string, revision byte, length int) []byte {
	b := make([]byte, length)
	copy(b[0:4], sig)
	binary.LittleEndian.PutUint32(b[4:], uint32(length))
	b[8] = revision
	copy(b[10:16], OEMID)
	copy(b[16:24], OEMTableID)
	binary.LittleEndian.PutUint32(b[24:], oemRevision)
	copy(b[28:32], CreatorID)
	binary.LittleEndian.PutUint32(b[32:], creatorRev)
	return b
}

// finish sets the header checksum once the table body is complete.
func finish(b []byte) []byte {
	b[9] = 0
	b[9] = Checksum(b)
	return b
}

// buildRSDP makes the Root System Description Pointer, revision 2:
//
//	0 "RSD PTR "  8 Checksum (bytes 0..19)  9 OEMID[6]  15 Revision
//	16 RsdtAddress  20 Length  24 XsdtAddress  32 Extended Checksum (all 36)
//
// We give only the XSDT (64-bit pointers); RsdtAddress stays 0, which ACPI
// 2.0+ operating systems accept.
func buildRSDP(xsdt uint64) []byte {
	b := make([]byte, rsdpSize)
	copy(b[0:8], "RSD PTR ")
	copy(b[9:15], OEMID)
	b[15] = rsdpRevision2
	binary.LittleEndian.PutUint32(b[20:], rsdpSize)
	binary.LittleEndian.PutUint64(b[24:], xsdt)
	b[8] = Checksum(b[:20])
	b[32] = Checksum(b)
	return b
}

// buildXSDT makes the Extended System Description Table: a header followed
// by 64-bit addresses of the other tables (the DSDT is reached through the
// FADT, not listed here).
func buildXSDT(tables ...uint64) []byte {
	b := newTable("XSDT", 1, headerSize+8*len(tables))
	for i, a := range tables {
		binary.LittleEndian.PutUint64(b[headerSize+8*i:], a)
	}
	return finish(b)
}
