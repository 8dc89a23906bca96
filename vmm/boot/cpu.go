package boot

import (
	"encoding/binary"
	"fmt"

	"gureum/vmm/guestmem"
	"gureum/vmm/layout"
)

// Mode is the CPU mode a kernel expects at its entry point.
type Mode int

// Entry modes.
const (
	// Protected32 is 32-bit protected mode with paging off (PVH entry).
	Protected32 Mode = iota + 1
	// Long64 is 64-bit long mode with identity paging (Linux 64-bit entry).
	Long64
)

func (m Mode) String() string {
	switch m {
	case Protected32:
		return "32-bit protected mode"
	case Long64:
		return "64-bit long mode"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Segment is the hidden, cached part of a segment register as KVM holds it
// (struct kvm_segment without padding). Loading a selector on real hardware
// fills this cache from the GDT; since the boot vCPU never executes such a
// load, the VMM must set the cache directly, and it must agree with the GDT
// so that a later reload by the guest gives the same segment.
type Segment struct {
	Base     uint64
	Limit    uint32 // in bytes (already scaled by the granularity bit)
	Selector uint16
	Type     uint8 // descriptor type nibble: 0xb code exec/read accessed, 0x3 data read/write accessed, 0xb busy TSS for TR
	Present  uint8
	DPL      uint8
	DB       uint8 // default operand size 32-bit (must be 0 for 64-bit code)
	S        uint8 // 1 for code/data, 0 for system descriptors (TSS)
	L        uint8 // 64-bit code segment
	G        uint8 // limit counted in 4 KiB pages
	AVL      uint8
}

// DescriptorTable is a GDTR or IDTR value.
type DescriptorTable struct {
	Base  uint64
	Limit uint16
}

// CPUState is the register state the boot vCPU must have at the kernel's
// entry point. The VMM copies it onto KVM's register structures (KVM_SET_REGS
// and KVM_SET_SREGS); the other vCPUs stay in wait-for-SIPI and are started
// by the guest through its local APIC.
type CPUState struct {
	Mode Mode

	RIP, RSP, RBP, RSI, RBX, RFLAGS uint64

	CS, DS, ES, FS, GS, SS, TR Segment
	GDT, IDT                   DescriptorTable

	CR0, CR3, CR4, EFER uint64
}

// Control register and EFER bits used at entry.
const (
	CR0PE   = 1 << 0  // protected mode
	CR0ET   = 1 << 4  // extension type (always 1 on modern CPUs)
	CR0PG   = 1 << 31 // paging
	CR4PAE  = 1 << 5  // physical address extension, required for long mode
	EFERLME = 1 << 8  // long mode enable
	EFERLMA = 1 << 10 // long mode active
	// FlagsReserved is EFLAGS bit 1, which always reads as 1; every other
	// flag (notably IF) is clear at entry.
	FlagsReserved = 0x2
)

// Selectors of the boot GDT. Linux's 64-bit boot protocol names the code
// and data selectors __BOOT_CS (0x10) and __BOOT_DS (0x18); PVH leaves the
// values open, so both entries use the same layout.
const (
	SelectorCode = 0x10
	SelectorData = 0x18
	SelectorTSS  = 0x20
)

// Descriptor access/flags words (bits 8..15 and 20..23 of the descriptor's
// high dword, packed as in Firecracker and Linux's GDT_ENTRY macro): the
// low byte is P|DPL|S|Type, the high nibble is G|D/B|L|AVL.
const (
	accessCode64 = 0xa09b // G, L, present, code exec/read accessed
	accessCode32 = 0xc09b // G, D/B, present, code exec/read accessed
	accessData   = 0xc093 // G, D/B, present, data read/write accessed
	accessTSS    = 0x808b // G, present, system type 0xb: busy 64-bit TSS
)

// gdtEntry packs base, limit (in 4 KiB units when G is set) and the access
// word into the x86 segment descriptor format, whose fields are scattered
// across the 8 bytes for historical (80286) reasons.
func gdtEntry(access uint16, base, limit uint32) uint64 {
	return uint64(base&0xff000000)<<32 |
		uint64(access&0xf0ff)<<40 |
		uint64(limit&0x000f0000)<<32 |
		uint64(base&0x00ffffff)<<16 |
		uint64(limit&0x0000ffff)
}

// segmentFromEntry decodes a descriptor back into the cached form, so the
// register values handed to KVM are derived from exactly the bytes the guest
// sees in its GDT.
func segmentFromEntry(entry uint64, selector uint16) Segment {
	base := (entry>>16)&0xffffff | (entry>>32)&0xff000000
	limit := uint32(entry&0xffff | (entry>>32)&0xf0000)
	s := Segment{
		Base:     base,
		Selector: selector,
		Type:     uint8(entry>>40) & 0xf,
		S:        uint8(entry>>44) & 1,
		DPL:      uint8(entry>>45) & 3,
		Present:  uint8(entry>>47) & 1,
		AVL:      uint8(entry>>52) & 1,
		L:        uint8(entry>>53) & 1,
		DB:       uint8(entry>>54) & 1,
		G:        uint8(entry>>55) & 1,
	}
	if s.G == 1 {
		limit = limit<<12 | 0xfff
	}
	s.Limit = limit
	return s
}

// writeGDT writes the boot GDT at layout.BootGDT: two null entries, code at
// 0x10, data at 0x18 and a 16-byte TSS descriptor at 0x20 (KVM requires a
// usable task register even though the boot code never switches tasks).
func writeGDT(mem *guestmem.Memory, codeAccess uint16) (code, data, tss Segment, gdt DescriptorTable, err error) {
	entries := []uint64{
		0, 0,
		gdtEntry(codeAccess, 0, 0xfffff),
		gdtEntry(accessData, 0, 0xfffff),
		gdtEntry(accessTSS, 0, 0xfffff),
		0, // upper half of the 64-bit TSS descriptor: base bits 32..63
	}
	buf := make([]byte, 8*len(entries))
	for i, e := range entries {
		binary.LittleEndian.PutUint64(buf[8*i:], e)
	}
	if err = mem.WriteAt(buf, layout.BootGDT); err != nil {
		return code, data, tss, gdt, fmt.Errorf("write boot GDT: %w", err)
	}
	code = segmentFromEntry(entries[SelectorCode/8], SelectorCode)
	data = segmentFromEntry(entries[SelectorData/8], SelectorData)
	tss = segmentFromEntry(entries[SelectorTSS/8], SelectorTSS)
	gdt = DescriptorTable{Base: layout.BootGDT, Limit: uint16(len(buf) - 1)}
	return code, data, tss, gdt, nil
}

func flatState(mode Mode, code, data, tss Segment, gdt DescriptorTable) CPUState {
	return CPUState{
		Mode:   mode,
		RFLAGS: FlagsReserved,
		CS:     code,
		DS:     data, ES: data, FS: data, GS: data, SS: data,
		TR:  tss,
		GDT: gdt,
		// An empty IDT: any exception before the kernel installs its own
		// shuts the vCPU down, which the VMM reports, rather than jumping
		// through garbage.
		IDT: DescriptorTable{},
	}
}

// SetupProtectedMode writes the boot GDT with a flat 32-bit code segment and
// returns the register state of 32-bit protected mode with paging off, as
// the PVH boot ABI asks: CS and DS/ES/SS flat 4 GiB with base 0, CR0.PE,
// EFLAGS 0x2. The caller sets RIP and RBX.
func SetupProtectedMode(mem *guestmem.Memory) (CPUState, error) {
	code, data, tss, gdt, err := writeGDT(mem, accessCode32)
	if err != nil {
		return CPUState{}, err
	}
	s := flatState(Protected32, code, data, tss, gdt)
	s.CR0 = CR0PE | CR0ET
	return s, nil
}

// SetupLongMode writes the boot GDT with a 64-bit code segment and identity
// page tables for the first 1 GiB, and returns the register state of 64-bit
// long mode that Linux's 64-bit boot protocol asks for. The caller sets RIP,
// RSI and the stack.
//
// The page tables: PML4[0] points at the PDPT, PDPT[0] at one page
// directory, and its 512 entries each map a 2 MiB page (PS bit) to the same
// physical address. Long mode cannot run with paging off, so the kernel's
// first instructions need this identity map until they build their own.
func SetupLongMode(mem *guestmem.Memory) (CPUState, error) {
	const (
		present  = 1 << 0
		writable = 1 << 1
		huge     = 1 << 7 // PS: this PD entry maps a 2 MiB page
	)
	if err := mem.PutUint64(layout.PML4, layout.PDPT|present|writable); err != nil {
		return CPUState{}, fmt.Errorf("write PML4: %w", err)
	}
	if err := mem.PutUint64(layout.PDPT, layout.PD|present|writable); err != nil {
		return CPUState{}, fmt.Errorf("write PDPT: %w", err)
	}
	pd := make([]byte, 512*8)
	for i := range 512 {
		binary.LittleEndian.PutUint64(pd[8*i:], uint64(i)<<21|present|writable|huge)
	}
	if err := mem.WriteAt(pd, layout.PD); err != nil {
		return CPUState{}, fmt.Errorf("write page directory: %w", err)
	}
	code, data, tss, gdt, err := writeGDT(mem, accessCode64)
	if err != nil {
		return CPUState{}, err
	}
	s := flatState(Long64, code, data, tss, gdt)
	s.CR0 = CR0PE | CR0ET | CR0PG
	s.CR3 = layout.PML4
	s.CR4 = CR4PAE
	s.EFER = EFERLME | EFERLMA
	return s, nil
}
