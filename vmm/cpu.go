package vmm

import (
	"encoding/binary"

	"gureum/vmm/boot"
	"gureum/vmm/kvm"
)

// MSRs every vCPU starts with, and those DebugState reads.
const (
	msrTSC            = 0x10
	msrIA32MiscEnable = 0x1a0
	msrMTRRDefType    = 0x2ff
	msrTSCDeadline    = 0x6e0
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

// Local APIC register offsets (Intel SDM vol. 3, table 11-1): setupLAPIC
// wires the LINT pins, DebugState reads the rest. ISR, TMR and IRR are
// 256-bit vectors, eight registers 16 bytes apart.
const (
	apicID       = 0x20
	apicTPR      = 0x80
	apicSVR      = 0xf0
	apicISR      = 0x100
	apicTMR      = 0x180
	apicIRR      = 0x200
	apicLVTTimer = 0x320
	apicLVTLINT0 = 0x350
	apicLVTLINT1 = 0x360
	apicTMICT    = 0x380
	apicTMCCT    = 0x390
)

// Delivery modes for the LINT pins.
const (
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

func segment(s boot.Segment) kvm.Segment {
	return kvm.Segment{
		Base: s.Base, Limit: s.Limit, Selector: s.Selector, Type: s.Type,
		Present: s.Present, DPL: s.DPL, DB: s.DB, S: s.S, L: s.L, G: s.G, AVL: s.AVL,
	}
}

// setupBootRegs puts the boot vCPU at the kernel's entry point, in the CPU
// mode and with the registers the boot protocol prescribes (vmm/boot).
func setupBootRegs(cpu *kvm.VCPU, e boot.CPUState) error {
	s, err := cpu.SRegs()
	if err != nil {
		return err
	}
	s.CS, s.DS, s.ES, s.FS, s.GS, s.SS = segment(e.CS), segment(e.DS), segment(e.ES), segment(e.FS), segment(e.GS), segment(e.SS)
	s.TR = segment(e.TR)
	s.LDT = kvm.Segment{Type: 0x2, Present: 1, Unusable: 1}
	s.GDT = kvm.DTable{Base: e.GDT.Base, Limit: e.GDT.Limit}
	s.IDT = kvm.DTable{Base: e.IDT.Base, Limit: e.IDT.Limit}
	s.CR0, s.CR3, s.CR4, s.EFER = e.CR0, e.CR3, e.CR4, e.EFER
	if err := cpu.SetSRegs(s); err != nil {
		return err
	}
	return cpu.SetRegs(kvm.Regs{RIP: e.RIP, RSP: e.RSP, RBP: e.RBP, RSI: e.RSI, RBX: e.RBX, RFLAGS: e.RFLAGS})
}
