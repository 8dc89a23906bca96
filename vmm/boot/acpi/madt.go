package acpi

import (
	"encoding/binary"

	"gureum/vmm/layout"
)

// The MADT (Multiple APIC Description Table, signature "APIC") lists the
// interrupt controllers. It is how the OS learns the number of CPUs (one
// enabled Processor Local APIC entry each) and where the I/O APIC is; the
// interrupt source overrides say where ISA IRQs deviate from "IRQ n is
// I/O APIC input n". On a PC, and in KVM's in-kernel irqchip, the timer
// (PIT, ISA IRQ 0) is wired to I/O APIC input 2.

// MADT entry types and sizes.
const (
	madtRevision          = 5
	madtLocalAPICType     = 0
	madtLocalAPICLen      = 8
	madtIOAPICType        = 1
	madtIOAPICLen         = 12
	madtOverrideType      = 2
	madtOverrideLen       = 10
	madtLocalNMIType      = 4
	madtLocalNMILen       = 6
	madtPCATCompat        = 1 // the machine also has dual 8259 PICs (KVM's in-kernel PIC)
	madtLocalAPICEnabled  = 1
	madtNMIAllProcessors  = 0xff
	madtOverrideConforms  = 0 // polarity and trigger as the bus defines (ISA: high, edge)
	isaTimerIRQ           = 0
	isaTimerGSI           = 2
	lint1                 = 1
	madtHeaderExtra       = 8 // local APIC address + flags after the header
	madtFixedEntriesBytes = madtIOAPICLen + madtOverrideLen + madtLocalNMILen
)

// buildMADT lists one local APIC per vCPU (APIC ID = vCPU index), the I/O
// APIC (ID = number of vCPUs, so IDs do not collide), the IRQ0 -> GSI2
// override and the LINT1 NMI wiring every PC has.
func buildMADT(cfg Config) []byte {
	n := headerSize + madtHeaderExtra + cfg.CPUs*madtLocalAPICLen + madtFixedEntriesBytes
	b := newTable("APIC", madtRevision, n)
	le := binary.LittleEndian
	le.PutUint32(b[headerSize:], layout.LAPICAddr)
	le.PutUint32(b[headerSize+4:], madtPCATCompat)
	off := headerSize + madtHeaderExtra
	for i := range cfg.CPUs {
		e := b[off:]
		e[0], e[1] = madtLocalAPICType, madtLocalAPICLen
		e[2] = byte(i) // ACPI processor UID
		e[3] = byte(i) // local APIC ID
		le.PutUint32(e[4:], madtLocalAPICEnabled)
		off += madtLocalAPICLen
	}
	e := b[off:]
	e[0], e[1] = madtIOAPICType, madtIOAPICLen
	e[2] = byte(cfg.CPUs) // I/O APIC ID
	le.PutUint32(e[4:], layout.IOAPICAddr)
	le.PutUint32(e[8:], 0) // GSI base: inputs 0..23 are GSIs 0..23
	off += madtIOAPICLen

	e = b[off:]
	e[0], e[1] = madtOverrideType, madtOverrideLen
	e[2] = 0 // bus: ISA
	e[3] = isaTimerIRQ
	le.PutUint32(e[4:], isaTimerGSI)
	le.PutUint16(e[8:], madtOverrideConforms)
	off += madtOverrideLen

	e = b[off:]
	e[0], e[1] = madtLocalNMIType, madtLocalNMILen
	e[2] = madtNMIAllProcessors
	le.PutUint16(e[3:], 0) // flags: conforms to the bus
	e[5] = lint1
	return finish(b)
}
