// Package kvm is gureum's binding of the Linux KVM API (Documentation/virt/kvm/api.rst):
// the only code in gureum that issues KVM ioctls. System, VM and VCPU own
// their file descriptors and mappings and release them in Close.
//
// The structs in this file mirror the kernel's ABI (linux/kvm.h and
// arch/x86/include/uapi/asm/kvm.h) field for field, with padding spelled
// out; abi_test.go checks every size and offset against the C headers.
// The ioctl plumbing that needs package unsafe lives in ioctl_unsafe.go.
package kvm

// KVMIO is the ioctl type byte of every KVM ioctl.
const kvmio = 0xae

func ioc(dir, nr, size uintptr) uintptr { return dir<<30 | size<<16 | kvmio<<8 | nr }
func io(nr uintptr) uintptr             { return ioc(0, nr, 0) }
func iow(nr, size uintptr) uintptr      { return ioc(1, nr, size) }
func ior(nr, size uintptr) uintptr      { return ioc(2, nr, size) }
func iowr(nr, size uintptr) uintptr     { return ioc(3, nr, size) }

// Ioctl request numbers (linux/kvm.h).
var (
	ioctlGetAPIVersion       = io(0x00)
	ioctlCreateVM            = io(0x01)
	ioctlCheckExtension      = io(0x03)
	ioctlGetVCPUMmapSize     = io(0x04)
	ioctlGetSupportedCPUID   = iowr(0x05, 8)
	ioctlGetMSRIndexList     = iowr(0x02, 4)
	ioctlCreateVCPU          = io(0x41)
	ioctlSetUserMemoryRegion = iow(0x46, 32)
	ioctlSetTSSAddr          = io(0x47)
	ioctlSetIdentityMapAddr  = iow(0x48, 8)
	ioctlCreateIRQChip       = io(0x60)
	ioctlIRQLine             = iow(0x61, 8)
	ioctlSetGSIRouting       = iow(0x6a, 8)
	ioctlIRQFD               = iow(0x76, 32)
	ioctlCreatePIT2          = iow(0x77, 64)
	ioctlIOEventFD           = iow(0x79, 64)
	ioctlSignalMSI           = iow(0xa5, 32)
	ioctlRun                 = io(0x80)
	ioctlGetRegs             = ior(0x81, 144)
	ioctlSetRegs             = iow(0x82, 144)
	ioctlGetSRegs            = ior(0x83, 312)
	ioctlSetSRegs            = iow(0x84, 312)
	ioctlGetMSRs             = iowr(0x88, 8)
	ioctlSetMSRs             = iow(0x89, 8)
	ioctlSetFPU              = iow(0x8d, 416)
	ioctlGetLAPIC            = ior(0x8e, 1024)
	ioctlSetLAPIC            = iow(0x8f, 1024)
	ioctlSetCPUID2           = iow(0x90, 8)
	ioctlGetMPState          = ior(0x98, 4)
	ioctlGetVCPUEvents       = ior(0x9f, 64)
	ioctlGetIRQChip          = iowr(0x62, 520)
	ioctlSetMPState          = iow(0x99, 4)
	ioctlGetTSCKHz           = io(0xa3)
	ioctlGetStatsFD          = io(0xce)
)

// APIVersion is the only KVM API version there has ever been.
const APIVersion = 12

// Capabilities gureum checks with KVM_CHECK_EXTENSION.
const (
	CapIRQChip        = 0
	CapUserMemory     = 3
	CapSetTSSAddr     = 4
	CapExtCPUID       = 7
	CapIRQRouting     = 25
	CapIRQFD          = 32
	CapPIT2           = 33
	CapIOEventFD      = 36
	CapGetTSCKHz      = 61
	CapSignalMSI      = 77
	CapImmediateExit  = 136
	CapBinaryStatsFD  = 203
	CapNrVCPUs        = 9
	CapMaxVCPUs       = 66
	CapAdjustClock    = 39
	CapIRQFDResample  = 82
	CapIOEventFDNoLen = 100 // a zero-length MMIO ioeventfd: any write at the address
)

// Exit reasons (kvm_run.exit_reason).
const (
	ExitUnknown       = 0
	ExitException     = 1
	ExitIO            = 2
	ExitHypercall     = 3
	ExitDebug         = 4
	ExitHLT           = 5
	ExitMMIO          = 6
	ExitIRQWindowOpen = 7
	ExitShutdown      = 8
	ExitFailEntry     = 9
	ExitIntr          = 10
	ExitSetTPR        = 11
	ExitTPRAccess     = 12
	ExitNMI           = 16
	ExitInternalError = 17
	ExitOSI           = 18
	ExitPaprHcall     = 19
	ExitWatchdog      = 21
	ExitEPR           = 23
	ExitSystemEvent   = 24
	ExitIOAPICEOI     = 26
	ExitHyperV        = 27
)

// ExitReasonName names an exit reason for metrics and errors.
func ExitReasonName(r uint32) string {
	switch r {
	case ExitUnknown:
		return "unknown"
	case ExitException:
		return "exception"
	case ExitIO:
		return "io"
	case ExitHypercall:
		return "hypercall"
	case ExitDebug:
		return "debug"
	case ExitHLT:
		return "hlt"
	case ExitMMIO:
		return "mmio"
	case ExitIRQWindowOpen:
		return "irq_window_open"
	case ExitShutdown:
		return "shutdown"
	case ExitFailEntry:
		return "fail_entry"
	case ExitIntr:
		return "intr"
	case ExitInternalError:
		return "internal_error"
	case ExitSystemEvent:
		return "system_event"
	case ExitIOAPICEOI:
		return "ioapic_eoi"
	}
	return "other"
}

// System event types (kvm_run.system_event.type).
const (
	SystemEventShutdown = 1
	SystemEventReset    = 2
	SystemEventCrash    = 3
)

// MP states (struct kvm_mp_state).
const (
	MPStateRunnable      = 0
	MPStateUninitialized = 1
	MPStateInitReceived  = 2
	MPStateHalted        = 3
	MPStateSIPIReceived  = 4
)

// UserspaceMemoryRegion mirrors struct kvm_userspace_memory_region.
type UserspaceMemoryRegion struct {
	Slot          uint32
	Flags         uint32
	GuestPhysAddr uint64
	MemorySize    uint64
	UserspaceAddr uint64
}

// Regs mirrors struct kvm_regs (x86).
type Regs struct {
	RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11, R12, R13, R14, R15   uint64
	RIP, RFLAGS                            uint64
}

// Segment mirrors struct kvm_segment.
type Segment struct {
	Base     uint64
	Limit    uint32
	Selector uint16
	Type     uint8
	Present  uint8
	DPL      uint8
	DB       uint8
	S        uint8
	L        uint8
	G        uint8
	AVL      uint8
	Unusable uint8
	_        uint8
}

// DTable mirrors struct kvm_dtable (GDTR/IDTR).
type DTable struct {
	Base  uint64
	Limit uint16
	_     [3]uint16
}

// SRegs mirrors struct kvm_sregs.
type SRegs struct {
	CS, DS, ES, FS, GS, SS Segment
	TR, LDT                Segment
	GDT, IDT               DTable
	CR0, CR2, CR3, CR4     uint64
	CR8                    uint64
	EFER                   uint64
	APICBase               uint64
	InterruptBitmap        [4]uint64
}

// FPU mirrors struct kvm_fpu.
type FPU struct {
	FPR        [8][16]uint8
	FCW        uint16
	FSW        uint16
	FTWX       uint8
	_          uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]uint8
	MXCSR      uint32
	_          uint32
}

// CPUIDEntry mirrors struct kvm_cpuid_entry2.
type CPUIDEntry struct {
	Function uint32
	Index    uint32
	Flags    uint32
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
	_        [3]uint32
}

// CPUIDFlagSignificantIndex marks a leaf whose subleaf (ECX) matters.
const CPUIDFlagSignificantIndex = 1

// MSREntry mirrors struct kvm_msr_entry.
type MSREntry struct {
	Index uint32
	_     uint32
	Data  uint64
}

// PITConfig mirrors struct kvm_pit_config.
type PITConfig struct {
	Flags uint32
	_     [15]uint32
}

// PITSpeakerDummy makes the in-kernel PIT emulate port 0x61 (speaker gate).
const PITSpeakerDummy = 1

// IRQFD mirrors struct kvm_irqfd.
type IRQFD struct {
	FD         uint32
	GSI        uint32
	Flags      uint32
	ResampleFD uint32
	_          [16]uint8
}

// IRQFD flags.
const (
	IRQFDFlagDeassign = 1
	IRQFDFlagResample = 2
)

// IOEventFD mirrors struct kvm_ioeventfd.
type IOEventFD struct {
	DataMatch uint64
	Addr      uint64
	Len       uint32
	FD        int32
	Flags     uint32
	_         [36]uint8
}

// IOEventFD flags.
const (
	IOEventFDFlagDataMatch = 1 << 0
	IOEventFDFlagPIO       = 1 << 1
	IOEventFDFlagDeassign  = 1 << 2
)

// MSI mirrors struct kvm_msi.
type MSI struct {
	AddressLo uint32
	AddressHi uint32
	Data      uint32
	Flags     uint32
	DevID     uint32
	_         [12]uint8
}

// IRQLevel mirrors struct kvm_irq_level.
type IRQLevel struct {
	IRQ   uint32
	Level uint32
}

// IRQRoutingEntry mirrors struct kvm_irq_routing_entry. U holds the union:
// for irqchip entries {irqchip, pin}, for MSI entries {address_lo,
// address_hi, data, devid}.
type IRQRoutingEntry struct {
	GSI   uint32
	Type  uint32
	Flags uint32
	_     uint32
	U     [8]uint32
}

// Routing entry types and irqchip numbers.
const (
	IRQRoutingIRQChip = 1
	IRQRoutingMSI     = 2
	IRQChipPICMaster  = 0
	IRQChipPICSlave   = 1
	IRQChipIOAPIC     = 2
)

// StatsHeader mirrors struct kvm_stats_header, at offset 0 of a stats fd.
type StatsHeader struct {
	Flags      uint32
	NameSize   uint32
	NumDesc    uint32
	IDOffset   uint32
	DescOffset uint32
	DataOffset uint32
}

// StatsDescSize is the fixed part of struct kvm_stats_desc before its name.
const StatsDescSize = 16

// LAPICState mirrors struct kvm_lapic_state (the xAPIC register page).
type LAPICState struct {
	Regs [1024]byte
}

// VCPUEvents mirrors struct kvm_vcpu_events: the exception, interrupt and
// NMI a vCPU has pending or is injecting. Read only, for diagnostics.
type VCPUEvents struct {
	ExceptionInjected, ExceptionNr, ExceptionHasErrorCode, ExceptionPending uint8
	ExceptionErrorCode                                                      uint32
	InterruptInjected, InterruptNr, InterruptSoft, InterruptShadow          uint8
	NMIInjected, NMIPending, NMIMasked, _                                   uint8
	SIPIVector                                                              uint32
	Flags                                                                   uint32
	SMI                                                                     [4]uint8
	TripleFaultPending                                                      uint8
	_                                                                       [26]uint8
	ExceptionHasPayload                                                     uint8
	ExceptionPayload                                                        uint64
}

// IRQChip mirrors struct kvm_irqchip: one in-kernel interrupt controller's
// state (IRQChipPICMaster, IRQChipPICSlave or IRQChipIOAPIC) as raw bytes.
type IRQChip struct {
	ChipID uint32
	_      uint32
	Chip   [512]byte
}

// Offsets in struct kvm_run (the mmap'ed page shared with KVM_RUN).
const (
	runImmediateExit = 1
	runExitReason    = 8
	runUnion         = 32
)

// Directions of an I/O exit.
const (
	ExitIOIn  = 0
	ExitIOOut = 1
)
