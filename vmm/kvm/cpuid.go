package kvm

// CPUID leaves and bits gureum adjusts.
const (
	cpuidHypervisorBase = 0x40000000 // "KVMKVMKVM" signature, max hypervisor leaf
	cpuidKVMFeatures    = 0x40000001 // KVM paravirt features (kvm-clock, ...)
	cpuidTiming         = 0x40000010 // TSC and APIC bus frequency in kHz
	cpuid1ECXHypervisor = 1 << 31
	cpuid1EDXHTT        = 1 << 28

	// KVM paravirt feature bits of leaf 0x40000001 EAX
	// (Documentation/virt/kvm/x86/cpuid.rst).
	KVMFeatureClockSource2         = 3
	KVMFeatureClockSourceStableBit = 24
)

// GuestCPUID derives vCPU id's CPUID table from the leaves KVM supports on
// this host (System.SupportedCPUID). It keeps what KVM can virtualise,
// including the KVM paravirt leaves that give the guest kvm-clock, and
// fixes what must differ per machine and per vCPU:
//   - leaf 1: the hypervisor bit, the initial APIC ID and logical CPU count;
//   - leaves 0xb and 0x1f: the x2APIC ID of this vCPU;
//   - leaf 0x40000010: the TSC frequency (kHz) and the 1 GHz APIC bus of
//     KVM's local APIC timer, so a guest need not calibrate them.
func GuestCPUID(supported []CPUIDEntry, id, ncpus int, tscKHz uint32) []CPUIDEntry {
	out := make([]CPUIDEntry, 0, len(supported)+1)
	hasTiming := false
	for _, e := range supported {
		switch e.Function {
		case 1:
			e.ECX |= cpuid1ECXHypervisor
			e.EBX = e.EBX&0x0000ffff | uint32(id)<<24 | uint32(ncpus&0xff)<<16
			if ncpus > 1 {
				e.EDX |= cpuid1EDXHTT
			}
		case 0xb, 0x1f:
			e.EDX = uint32(id)
		case cpuidHypervisorBase:
			if e.EAX < cpuidTiming {
				e.EAX = cpuidTiming
			}
		case cpuidTiming:
			hasTiming = true
			e.EAX, e.EBX = tscKHz, 1000000
		}
		out = append(out, e)
	}
	if !hasTiming && tscKHz != 0 {
		out = append(out, CPUIDEntry{Function: cpuidTiming, EAX: tscKHz, EBX: 1000000})
	}
	return out
}
