package boot

import (
	"encoding/binary"
	"fmt"
	"sort"

	"gureum/vmm/guestmem"
	"gureum/vmm/layout"
)

// PVH is the boot protocol Xen defined for its "PVH" guests and that KVM
// VMMs (QEMU, Firecracker, Cloud Hypervisor) reuse: the kernel is an ELF
// whose note XEN_ELFNOTE_PHYS32_ENTRY gives a 32-bit physical entry point.
// The VMM loads the segments, fills struct hvm_start_info and jumps there in
// 32-bit protected mode with paging off and EBX = &hvm_start_info. No
// real-mode setup code and no decompressor run, which is why PVH starts
// faster than a bzImage.

// PVH ABI constants (xen/include/public/arch-x86/hvm/start_info.h, elfnote.h).
const (
	pvhNoteName       = "Xen"
	pvhNotePhys32     = 18 // XEN_ELFNOTE_PHYS32_ENTRY
	PVHStartInfoMagic = 0x336ec578
	pvhVersion        = 1
	pvhStartInfoSize  = 56
	pvhModEntrySize   = 32
	pvhMemMapEntSize  = 24
	pvhMaxMemMap      = (layout.ZeroPage - layout.PVHMemMap) / pvhMemMapEntSize
)

// pvhEntry finds the PHYS32_ENTRY note, first in PT_NOTE segments (what a
// loader is meant to read) and then in SHT_NOTE sections (some linkers do
// not emit a note segment).
func pvhEntry(img Image, f *elfFile) (uint32, bool, error) {
	var areas [][2]uint64
	for _, s := range f.Segments {
		if s.Type == elfPTNote {
			areas = append(areas, [2]uint64{s.Offset, s.FileSize})
		}
	}
	secs, err := f.noteSections(img)
	if err != nil {
		return 0, false, err
	}
	areas = append(areas, secs...)
	for _, a := range areas {
		if a[1] > elfMaxNoteSize {
			return 0, false, fmt.Errorf("ELF note area of %d bytes is too large", a[1])
		}
		b, err := readExact(img, a[0], a[1], "ELF notes")
		if err != nil {
			return 0, false, err
		}
		notes, err := parseNotes(b)
		if err != nil {
			return 0, false, err
		}
		for _, n := range notes {
			if n.Name != pvhNoteName || n.Type != pvhNotePhys32 {
				continue
			}
			// Linux emits the entry as a pointer-sized value (8 bytes on
			// x86-64), others as 4 bytes; either way it must fit in 32 bits.
			var entry uint64
			switch len(n.Desc) {
			case 4:
				entry = uint64(binary.LittleEndian.Uint32(n.Desc))
			case 8:
				entry = binary.LittleEndian.Uint64(n.Desc)
			default:
				return 0, false, fmt.Errorf("PVH entry note has a %d-byte descriptor, want 4 or 8", len(n.Desc))
			}
			if entry > 0xffffffff {
				return 0, false, fmt.Errorf("PVH entry point %#x is not a 32-bit address", entry)
			}
			return uint32(entry), true, nil
		}
	}
	return 0, false, nil
}

// loadPVH loads an ELF kernel with a PVH entry note.
func loadPVH(mem *guestmem.Memory, img Image, opts Options) (*Kernel, error) {
	f, err := parseELF(img)
	if err != nil {
		return nil, err
	}
	entry, ok, err := pvhEntry(img, f)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: ELF has no PVH entry note (Xen, type %d)", ErrUnsupported, pvhNotePhys32)
	}
	start, end, err := loadSegments(mem, img, f)
	if err != nil {
		return nil, err
	}
	if uint64(entry) < start || uint64(entry) >= end {
		return nil, fmt.Errorf("PVH entry point %#x is outside the loaded image [%#x, %#x)", entry, start, end)
	}
	if err := writeCmdline(mem, opts.Cmdline, layout.CmdlineMax); err != nil {
		return nil, err
	}
	initrdAddr, initrdSize, err := loadInitrd(mem, opts.Initrd, end, initrdCeiling)
	if err != nil {
		return nil, err
	}
	if err := writeStartInfo(mem, opts.RSDP, initrdAddr, initrdSize); err != nil {
		return nil, err
	}
	cpu, err := SetupProtectedMode(mem)
	if err != nil {
		return nil, err
	}
	cpu.RIP = uint64(entry)
	cpu.RBX = layout.PVHStartInfo
	return &Kernel{
		Format: FormatPVH, Entry: cpu, Start: start, End: end,
		InitrdAddr: initrdAddr, InitrdSize: initrdSize,
	}, nil
}

// loadSegments copies every PT_LOAD segment to its physical address: the
// file bytes first, then zeros up to the segment's memory size (that is the
// kernel's .bss). Segments must lie in RAM at or above 1 MiB, where no boot
// structure lives, and must not overlap each other. It returns the lowest
// and highest address the image covers.
func loadSegments(mem *guestmem.Memory, img Image, f *elfFile) (start, end uint64, err error) {
	var loads []elfSegment
	for _, s := range f.Segments {
		if s.Type == elfPTLoad && s.MemSize > 0 {
			loads = append(loads, s)
		}
	}
	if len(loads) == 0 {
		return 0, 0, fmt.Errorf("ELF has no loadable segment")
	}
	sort.Slice(loads, func(i, j int) bool { return loads[i].PAddr < loads[j].PAddr })
	for i, s := range loads {
		if s.FileSize > s.MemSize {
			return 0, 0, fmt.Errorf("ELF segment at %#x: file size %#x exceeds memory size %#x", s.PAddr, s.FileSize, s.MemSize)
		}
		if s.PAddr < layout.HighMemStart {
			return 0, 0, fmt.Errorf("ELF segment at %#x is below 1 MiB, where the boot structures live", s.PAddr)
		}
		if s.PAddr+s.MemSize < s.PAddr {
			return 0, 0, fmt.Errorf("ELF segment at %#x: size %#x wraps around", s.PAddr, s.MemSize)
		}
		if i > 0 && loads[i-1].PAddr+loads[i-1].MemSize > s.PAddr {
			return 0, 0, fmt.Errorf("ELF segments at %#x and %#x overlap", loads[i-1].PAddr, s.PAddr)
		}
		// Slice checks the whole segment lies inside one RAM region: a
		// huge p_memsz or an address in the MMIO hole fails here.
		dst, err := mem.Slice(s.PAddr, s.MemSize)
		if err != nil {
			return 0, 0, fmt.Errorf("ELF segment [%#x, +%#x) is not inside guest RAM: %w", s.PAddr, s.MemSize, err)
		}
		if err := readInto(img, dst[:s.FileSize], s.Offset, "ELF segment"); err != nil {
			return 0, 0, err
		}
		clear(dst[s.FileSize:])
	}
	last := loads[len(loads)-1]
	return loads[0].PAddr, last.PAddr + last.MemSize, nil
}

// writeStartInfo fills struct hvm_start_info, the module list (one entry,
// the initrd) and the memory map. Field offsets follow start_info.h,
// version 1.
func writeStartInfo(mem *guestmem.Memory, rsdp, initrdAddr, initrdSize uint64) error {
	mm, err := MemoryMap(mem)
	if err != nil {
		return err
	}
	if len(mm) > pvhMaxMemMap {
		return fmt.Errorf("memory map has %d entries; room for %d", len(mm), pvhMaxMemMap)
	}
	le := binary.LittleEndian
	table := make([]byte, len(mm)*pvhMemMapEntSize)
	for i, r := range mm {
		e := table[i*pvhMemMapEntSize:]
		le.PutUint64(e[0:], r.Addr)
		le.PutUint64(e[8:], r.Size)
		le.PutUint32(e[16:], r.Type)
	}
	if err := mem.WriteAt(table, layout.PVHMemMap); err != nil {
		return fmt.Errorf("write PVH memory map: %w", err)
	}

	si := make([]byte, pvhStartInfoSize)
	le.PutUint32(si[0:], PVHStartInfoMagic)
	le.PutUint32(si[4:], pvhVersion)
	// flags (8) stay 0: not a privileged (dom0) guest.
	if initrdSize > 0 {
		mod := make([]byte, pvhModEntrySize)
		le.PutUint64(mod[0:], initrdAddr)
		le.PutUint64(mod[8:], initrdSize)
		// cmdline_paddr (16) 0: the module has no command line of its own.
		if err := mem.WriteAt(mod, layout.PVHModList); err != nil {
			return fmt.Errorf("write PVH module list: %w", err)
		}
		le.PutUint32(si[12:], 1) // nr_modules
		le.PutUint64(si[16:], layout.PVHModList)
	}
	le.PutUint64(si[24:], layout.Cmdline)
	le.PutUint64(si[32:], rsdp)
	le.PutUint64(si[40:], layout.PVHMemMap)
	le.PutUint32(si[48:], uint32(len(mm)))
	if err := mem.WriteAt(si, layout.PVHStartInfo); err != nil {
		return fmt.Errorf("write hvm_start_info: %w", err)
	}
	return nil
}
