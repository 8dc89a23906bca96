// Package layout is the guest-physical and I/O-port map of a gureum VM: where
// RAM, boot structures, ACPI tables and device windows live. Every piece of the
// VMM that places something in the guest takes its address from here, so the
// whole machine can be read on one page (docs/design.md mirrors it).
//
// Guest-physical map (mem = configured RAM):
//
//	0x0000_0000 .. 0x0000_0fff   real-mode IVT / BDA (left zero)
//	0x0000_0500                  boot GDT (64-bit Linux entry)
//	0x0000_6000                  PVH hvm_start_info + module list + memory map
//	0x0000_7000                  Linux boot_params ("zero page")
//	0x0000_8ff0                  initial stack pointer (64-bit Linux entry)
//	0x0000_9000 .. 0x0000_bfff   identity page tables (PML4, PDPT, PD: first 1 GiB)
//	0x0002_0000                  kernel command line (up to CmdlineMax bytes)
//	0x0009_fc00 .. 0x000f_ffff   reserved (EBDA, ACPI tables at 0xe0000, BIOS area)
//	0x0010_0000 ..               kernel image; initrd at the top of low RAM
//	0xc000_0000 .. 0xdfff_ffff   32-bit PCI MMIO window (BARs are assigned here)
//	0xe000_0000 .. 0xefff_ffff   PCI ECAM (reserved for MMCONFIG; config is via 0xcf8)
//	0xfec0_0000                  IOAPIC (in-kernel irqchip)
//	0xfee0_0000                  local APICs (in-kernel irqchip)
//	0x1_0000_0000 ..             RAM above the 32-bit hole when mem > 3 GiB
//
// I/O ports handled by the VMM (the in-kernel irqchip owns the PIC at 0x20
// and 0xa0 and the PIT at 0x40..0x43 and 0x61):
//
//	0x0060, 0x0064   i8042 keyboard controller (reset, Ctrl-Alt-Del); IRQ 1
//	0x0070..0x0071   CMOS / RTC; IRQ 8
//	0x03f8..0x03ff   COM1 8250 UART; IRQ 4
//	0x0600           ACPI sleep control register (hardware-reduced ACPI)
//	0x0601           ACPI sleep status register
//	0x0cf8..0x0cff   PCI configuration mechanism #1
package layout

// Guest-physical addresses of boot structures.
const (
	BootGDT        = 0x500
	PVHStartInfo   = 0x6000
	PVHModList     = 0x6800 // one hvm_modlist_entry per module (initrd)
	PVHMemMap      = 0x6900 // hvm_memmap_table_entry array
	ZeroPage       = 0x7000
	BootStack      = 0x8ff0
	PML4           = 0x9000
	PDPT           = 0xa000
	PD             = 0xb000
	Cmdline        = 0x20000
	CmdlineMax     = 0x10000 // bytes, including the terminating NUL
	EBDAStart      = 0x9fc00
	ACPIStart      = 0xe0000 // RSDP first, then the other tables
	ACPIEnd        = 0x100000
	HighMemStart   = 0x100000 // first byte above the legacy 1 MiB
	KernelLoadAddr = 0x100000 // bzImage protected-mode code
)

// The 32-bit hole below 4 GiB that holds device windows.
const (
	MMIOHoleStart = 0xc000_0000
	PCIMMIOStart  = 0xc000_0000
	PCIMMIOSize   = 0x2000_0000
	PCIECAMStart  = 0xe000_0000
	PCIECAMSize   = 0x1000_0000
	IOAPICAddr    = 0xfec0_0000
	LAPICAddr     = 0xfee0_0000
	FourGiB       = 0x1_0000_0000
)

// I/O ports of VMM-emulated devices.
const (
	I8042Data    = 0x60
	I8042Command = 0x64
	CMOSIndex    = 0x70
	CMOSData     = 0x71
	COM1         = 0x3f8
	COM1Size     = 8
	ACPISleepCtl = 0x600
	ACPISleepSts = 0x601
	PCIConfAddr  = 0xcf8
	PCIConfData  = 0xcfc
)

// Legacy interrupt lines (GSIs on the in-kernel PIC and IOAPIC).
const (
	IRQKeyboard = 1
	IRQCOM1     = 4
	IRQRTC      = 8
	// FirstMSIGSI is the first GSI handed out for MSI-X vectors; 0..23 are
	// the IOAPIC pins.
	FirstMSIGSI = 24
)

// ACPI sleep types written to the sleep control register as
// (SLP_TYP << 2) | SLP_EN. The DSDT's \_S5 package carries SleepTypeS5.
const (
	SleepTypeS5      = 5
	SleepControlEn   = 0x20
	SleepTypeShift   = 2
	SleepTypeMask    = 0x1c
	SleepControlS5On = SleepTypeS5<<SleepTypeShift | SleepControlEn
)

// RAMRegions splits mem bytes of guest RAM around the 32-bit hole. It
// returns (start, size) pairs in ascending order.
func RAMRegions(mem uint64) [][2]uint64 {
	if mem <= MMIOHoleStart {
		return [][2]uint64{{0, mem}}
	}
	return [][2]uint64{{0, MMIOHoleStart}, {FourGiB, mem - MMIOHoleStart}}
}
