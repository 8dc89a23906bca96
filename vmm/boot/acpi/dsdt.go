package acpi

import (
	"encoding/binary"
	"fmt"

	"gureum/vmm/layout"
)

// The DSDT (Differentiated System Description Table) carries the AML
// namespace: objects the OS evaluates. Ours holds:
//
//	Name (\_S5, Package (4) { 5, 0, 0, 0 })  // SLP_TYP for soft-off
//	Scope (\_SB) {
//	    Device (COM1) {                        // the 8250 UART
//	        Name (_HID, EisaId ("PNP0501"))
//	        Name (_UID, 0)
//	        Name (_CRS, ResourceTemplate () { IO (0x3f8, 8 ports), IRQNoFlags () {4} })
//	    }
//	    Device (KBD0) {                        // the i8042 keyboard controller
//	        Name (_HID, EisaId ("PNP0303"))
//	        Name (_CRS, ResourceTemplate () { IO (0x60, 1 port), IO (0x64, 1 port), IRQNoFlags () {1} })
//	    }
//	    Device (PCI0) {                        // only with a PCI bus
//	        Name (_HID, EisaId ("PNP0A03"))    // a PCI host bridge
//	        Name (_UID, 0)  Name (_SEG, 0)  Name (_BBN, 0)
//	        Name (_CRS, ResourceTemplate () { bus numbers, 0xcf8 ports,
//	                                          I/O ranges, MMIO window })
//	        Name (_PRT, Package () { ... })    // only with INTx routes
//	    }
//	}
//
// Linux discovers PCI through this device when ACPI is on: see
// docs/boot.md ("Why the DSDT describes the PCI host bridge").

const dsdtRevision = 2 // 2 and above: AML integers are 64-bit

func buildDSDT(cfg Config) ([]byte, error) {
	// \_S5: SLP_TYP for PM1a (our sleep control register) is
	// layout.SleepTypeS5; the PM1b value and two reserved slots are 0.
	// Bytes: 08 '_S5_' 12 07 04 0a 05 00 00 00.
	aml := amlName("_S5_", amlPackage(
		amlInteger(layout.SleepTypeS5), amlInteger(0), amlInteger(0), amlInteger(0)))
	com1, err := serialPort()
	if err != nil {
		return nil, err
	}
	kbd, err := keyboardController()
	if err != nil {
		return nil, err
	}
	devices := [][]byte{com1, kbd}
	if cfg.PCI != nil {
		dev, err := pciRootBridge(cfg.PCI)
		if err != nil {
			return nil, err
		}
		devices = append(devices, dev)
	}
	aml = append(aml, amlScope(string(amlRootChar)+"_SB_", devices...)...)
	b := newTable("DSDT", dsdtRevision, headerSize+len(aml))
	copy(b[headerSize:], aml)
	return finish(b), nil
}

// serialPort encodes Device(COM1). In hardware-reduced mode Linux sets up
// no legacy PIC and no identity mapping of ISA IRQs onto the I/O APIC, so
// the UART's interrupt only works once a device in the namespace claims it:
// the 8250 PNP driver binds to PNP0501, reads this _CRS and registers GSI 4.
func serialPort() ([]byte, error) {
	crs := ioPort(nil, layout.COM1, layout.COM1Size)
	return isaDevice("COM1", "PNP0501", irqNoFlags(crs, layout.IRQCOM1))
}

// keyboardController encodes Device(KBD0) for the i8042. Linux's i8042
// driver finds the controller through PNP (PNP0303 is "IBM Enhanced
// keyboard (101/102-key, PS/2 mouse support)"); without this device a
// hardware-reduced ACPI machine has no i8042 as far as Linux knows, so the
// atkbd driver never binds and the VMM's Ctrl-Alt-Del (a key sequence
// typed into the controller) would reach nobody. The data port, the
// command/status port and IRQ 1 are the PC's.
func keyboardController() ([]byte, error) {
	crs := ioPort(nil, layout.I8042Data, 1)
	crs = ioPort(crs, layout.I8042Command, 1)
	return isaDevice("KBD0", "PNP0303", irqNoFlags(crs, layout.IRQKeyboard))
}

// isaDevice encodes Device(name) with an EISA _HID, _UID 0 and a _CRS of
// the given resource descriptors (the end tag is added here).
func isaDevice(name, eisaID string, resources []byte) ([]byte, error) {
	hid, err := amlEISAID(eisaID)
	if err != nil {
		return nil, err
	}
	crs := append(resources, resEndTag, 0)
	return amlDevice(name,
		amlName("_HID", hid),
		amlName("_UID", amlInteger(0)),
		amlName("_CRS", amlBuffer(crs)),
	), nil
}

// ioPort appends IO(Decode16, base, base, 1, n): n ports at a fixed base.
func ioPort(b []byte, base uint16, n uint8) []byte {
	le := binary.LittleEndian
	b = append(b, resIOPort, resDecode16)
	b = le.AppendUint16(b, base)
	b = le.AppendUint16(b, base)
	return append(b, 1, n)
}

// irqNoFlags appends IRQNoFlags(){irq}: small item 0x22 (IRQ descriptor,
// 2 data bytes), then a 16-bit mask with one bit per ISA IRQ; edge
// triggered, active high.
func irqNoFlags(b []byte, irq uint8) []byte {
	b = append(b, resIRQ)
	return binary.LittleEndian.AppendUint16(b, 1<<irq)
}

// pciRootBridge encodes Device(PCI0) for the host bridge.
func pciRootBridge(p *PCIHostBridge) ([]byte, error) {
	if p.MMIOSize == 0 || p.MMIOBase+p.MMIOSize > layout.FourGiB || p.MMIOBase+p.MMIOSize < p.MMIOBase {
		return nil, fmt.Errorf("PCI MMIO window [%#x, +%#x) must be non-empty and below 4 GiB", p.MMIOBase, p.MMIOSize)
	}
	hid, err := amlEISAID("PNP0A03")
	if err != nil {
		return nil, err
	}
	terms := [][]byte{
		amlName("_HID", hid),
		amlName("_UID", amlInteger(0)),
		amlName("_SEG", amlInteger(0)), // PCI segment (domain) 0
		amlName("_BBN", amlInteger(0)), // first bus number
		amlName("_CRS", amlBuffer(pciResources(p))),
	}
	if len(p.Interrupts) > 0 {
		prt, err := pciRoutingTable(p.Interrupts)
		if err != nil {
			return nil, err
		}
		terms = append(terms, amlName("_PRT", prt))
	}
	return amlDevice("PCI0", terms...), nil
}

// Resource descriptor constants (ACPI 6.5, section 6.4).
const (
	resIOPort         = 0x47 // small item: I/O port, 7 bytes of data
	resIRQ            = 0x22 // small item: IRQ mask, 2 bytes of data
	resDecode16       = 0x01
	resWordAddress    = 0x88 // large item: 16-bit address space
	resDWordAddress   = 0x87 // large item: 32-bit address space
	resEndTag         = 0x79 // small item: end, then a checksum byte
	resTypeMemory     = 0
	resTypeIO         = 1
	resTypeBusNumber  = 2
	resProducerFixed  = 0x0c // producer, positive decode, min and max fixed
	resIOEntireRange  = 0x03 // the I/O window passes ISA and non-ISA ports
	resMemReadWrite   = 0x01 // read-write, non-cacheable
	wordAddressBody   = 13   // bytes after the 3-byte large-item header
	dwordAddressBody  = 23
	pciConfigPortSize = 8
)

// pciResources builds the _CRS ResourceTemplate of the host bridge: what it
// decodes and passes down to the bus. Linux uses these windows as the only
// places it may put (or accept) BARs.
func pciResources(p *PCIHostBridge) []byte {
	le := binary.LittleEndian
	var b []byte
	// WordBusNumber: buses 0..LastBus.
	b = wordAddress(b, resTypeBusNumber, 0, 0, uint16(p.LastBus))
	// IO(Decode16, 0xcf8, 0xcf8, 1, 8): configuration mechanism #1.
	b = ioPort(b, layout.PCIConfAddr, pciConfigPortSize)
	// WordIO: all other ports go through the bridge too, as on a PC.
	b = wordAddress(b, resTypeIO, resIOEntireRange, 0x0000, layout.PCIConfAddr-1)
	b = wordAddress(b, resTypeIO, resIOEntireRange, layout.PCIConfAddr+pciConfigPortSize, 0xffff)
	// DWordMemory: the 32-bit MMIO window for BARs.
	b = append(b, resDWordAddress)
	b = le.AppendUint16(b, dwordAddressBody)
	b = append(b, resTypeMemory, resProducerFixed, resMemReadWrite)
	b = le.AppendUint32(b, 0) // granularity
	b = le.AppendUint32(b, uint32(p.MMIOBase))
	b = le.AppendUint32(b, uint32(p.MMIOBase+p.MMIOSize-1))
	b = le.AppendUint32(b, 0) // translation offset
	b = le.AppendUint32(b, uint32(p.MMIOSize))
	// End tag; a checksum of 0 means "not checksummed".
	return append(b, resEndTag, 0)
}

// wordAddress appends a Word Address Space Descriptor for [min, max].
func wordAddress(b []byte, resType, typeFlags byte, lo, hi uint16) []byte {
	le := binary.LittleEndian
	b = append(b, resWordAddress)
	b = le.AppendUint16(b, wordAddressBody)
	b = append(b, resType, resProducerFixed, typeFlags)
	b = le.AppendUint16(b, 0) // granularity
	b = le.AppendUint16(b, lo)
	b = le.AppendUint16(b, hi)
	b = le.AppendUint16(b, 0) // translation offset
	return le.AppendUint16(b, hi-lo+1)
}

// pciRoutingTable builds _PRT: one Package(4){address, pin, source, GSI}
// per routed pin. The address is the device in the high word with 0xffff
// (any function) in the low word; a source of 0 means the last field is a
// GSI rather than an interrupt link device.
func pciRoutingTable(routes []PCIInterrupt) ([]byte, error) {
	if len(routes) > 255 {
		return nil, fmt.Errorf("%d PCI interrupt routes; at most 255", len(routes))
	}
	var entries [][]byte
	for _, r := range routes {
		if r.Slot > 31 || r.Pin > 3 || r.GSI >= layout.FirstMSIGSI {
			return nil, fmt.Errorf("PCI interrupt route slot %d pin %d GSI %d out of range", r.Slot, r.Pin, r.GSI)
		}
		entries = append(entries, amlPackage(
			amlDWord(uint32(r.Slot)<<16|0xffff),
			amlInteger(uint64(r.Pin)),
			amlInteger(0),
			amlInteger(uint64(r.GSI)),
		))
	}
	return amlPackage(entries...), nil
}
