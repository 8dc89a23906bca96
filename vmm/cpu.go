package vmm

import (
	"encoding/binary"
	"fmt"

	"gureum/vmm/kvm"
	"gureum/vmm/layout"
)

// entryMode is how the boot vCPU starts.
type entryMode int

const (
	// entryPVH: 32-bit protected mode, paging off, EBX = hvm_start_info
	// (the Xen PVH boot ABI, used by our test guest and by vmlinux).
	entryPVH entryMode = iota
	// entryLinux64: 64-bit long mode on identity page tables, RSI =
	// boot_params (the Linux x86-64 boot protocol, used for bzImage).
	entryLinux64
)

// entryState is where and how the boot vCPU begins.
type entryState struct {
	mode entryMode
	rip  uint64
	arg  uint64 // EBX (PVH) or RSI (Linux)
}

// MSRs every vCPU starts with.
const (
	msrIA32MiscEnable = 0x1a0
	msrMTRRDefType    = 0x2ff
	miscEnableFastStr = 1 << 0
	mtrrEnable        = 1 << 11
	mtrrTypeWB        = 6
)

// setupVCPU gives vCPU id its CPUID table, MSRs, FPU state and local APIC
// wiring. Every vCPU needs this; only the boot vCPU also gets registers
// (setupBootRegs). The others wait in KVM's INIT state for the guest's
// INIT-SIPI-SIPI, handled by the in-kernel local APIC.
func setupVCPU(sys *kvm.System, cpu *kvm.VCPU, supported []kvm.CPUIDEntry, ncpus int) error {
	tsc, err := cpu.TSCKHz()
	if err != nil {
		tsc = 0 // the timing leaf is then left out
	}
	if err := cpu.SetCPUID(kvm.GuestCPUID(supported, cpu.ID, ncpus, tsc)); err != nil {
		return err
	}
	if err := cpu.SetMSRs([]kvm.MSREntry{
		{Index: msrIA32MiscEnable, Data: miscEnableFastStr},
		{Index: msrMTRRDefType, Data: mtrrEnable | mtrrTypeWB},
	}); err != nil {
		return err
	}
	// x87 control word and MXCSR as after FNINIT / reset.
	if err := cpu.SetFPU(kvm.FPU{FCW: 0x37f, MXCSR: 0x1f80}); err != nil {
		return err
	}
	return setupLAPIC(cpu)
}

// Local APIC registers and delivery modes for the LINT pins.
const (
	apicLVTLINT0   = 0x350
	apicLVTLINT1   = 0x360
	apicModeExtINT = 0x7 << 8
	apicModeNMI    = 0x4 << 8
)

// setupLAPIC wires LINT0 to the PIC (ExtINT) and LINT1 to NMI, the
// "virtual wire" of a PC, so PIC interrupts reach the boot CPU before the
// guest programs its IOAPIC.
func setupLAPIC(cpu *kvm.VCPU) error {
	l, err := cpu.LAPIC()
	if err != nil {
		return err
	}
	set := func(off int, mode uint32) {
		v := binary.LittleEndian.Uint32(l.Regs[off:])
		v = v&^0x700 | mode
		binary.LittleEndian.PutUint32(l.Regs[off:], v)
	}
	set(apicLVTLINT0, apicModeExtINT)
	set(apicLVTLINT1, apicModeNMI)
	return cpu.SetLAPIC(l)
}

// flatSegment is a base-0, 4 GiB segment.
func flatSegment(sel uint16, typ uint8, long bool) kvm.Segment {
	s := kvm.Segment{Base: 0, Limit: 0xffffffff, Selector: sel, Type: typ, Present: 1, S: 1, G: 1}
	if long {
		s.L = 1
	} else {
		s.DB = 1
	}
	return s
}

// Control register bits.
const (
	cr0PE   = 1 << 0
	cr0ET   = 1 << 4
	cr0PG   = 1 << 31
	cr4PAE  = 1 << 5
	eferLME = 1 << 8
	eferLMA = 1 << 10
)

// setupBootRegs puts the boot vCPU at the kernel's entry point.
func setupBootRegs(cpu *kvm.VCPU, e entryState) error {
	s, err := cpu.SRegs()
	if err != nil {
		return err
	}
	// A busy 32-bit TSS and an unusable LDT: entry checks want a valid TR
	// even though the guest loads its own before using it.
	s.TR = kvm.Segment{Limit: 0x67, Type: 0xb, Present: 1}
	s.LDT = kvm.Segment{Type: 0x2, Present: 1, Unusable: 1}
	regs := kvm.Regs{RFLAGS: 0x2, RIP: e.rip}
	switch e.mode {
	case entryPVH:
		// PVH: flat 32-bit code and data, protected mode without paging.
		s.CS = flatSegment(0x8, 0xb, false)
		data := flatSegment(0x10, 0x3, false)
		s.DS, s.ES, s.FS, s.GS, s.SS = data, data, data, data, data
		s.CR0 = cr0PE | cr0ET
		s.CR4, s.EFER = 0, 0
		regs.RBX = e.arg
	case entryLinux64:
		// Linux 64-bit entry: long mode on the identity page tables the
		// loader wrote, __BOOT_CS 0x10 and __BOOT_DS 0x18 from its GDT.
		s.CS = flatSegment(0x10, 0xb, true)
		data := flatSegment(0x18, 0x3, false)
		s.DS, s.ES, s.FS, s.GS, s.SS = data, data, data, data, data
		s.GDT = kvm.DTable{Base: layout.BootGDT, Limit: 4*8 - 1}
		s.CR3 = layout.PML4
		s.CR4 = cr4PAE
		s.CR0 = cr0PE | cr0ET | cr0PG
		s.EFER = eferLME | eferLMA
		regs.RSI = e.arg
		regs.RSP = layout.BootStack
		regs.RBP = layout.BootStack
	default:
		return fmt.Errorf("unknown entry mode %d", e.mode)
	}
	if err := cpu.SetSRegs(s); err != nil {
		return err
	}
	return cpu.SetRegs(regs)
}
