package boot

import (
	"fmt"

	"gureum/vmm/guestmem"
	"gureum/vmm/layout"
)

// Memory-map entry types, shared by the Linux e820 table and the PVH
// hvm_memmap_table_entry (both use the ACPI address range types).
const (
	MemoryRAM      = 1 // usable by the kernel
	MemoryReserved = 2 // the kernel must not use it (firmware area, tables)
)

// MemoryRegion is one entry of the guest's memory map: what a BIOS would
// report through int 0x15, e820.
type MemoryRegion struct {
	Addr uint64
	Size uint64
	Type uint32
}

// minRAM is the smallest guest the loaders accept: the legacy first MiB plus
// room for a kernel.
const minRAM = 2 << 20

// MemoryMap describes mem to the guest. The first MiB is split the way a PC
// firmware splits it: conventional memory up to the EBDA is RAM; the EBDA,
// the ACPI tables at 0xe0000 and the BIOS area up to 1 MiB are reserved so
// the kernel never hands them out. Everything from 1 MiB to the end of low
// RAM, and RAM above 4 GiB if the guest has any, is usable. The 32-bit hole
// (PCI MMIO, ECAM, APICs) is simply absent from the map, which is how Linux
// learns it may place PCI BARs there.
func MemoryMap(mem *guestmem.Memory) ([]MemoryRegion, error) {
	var out []MemoryRegion
	for _, r := range mem.Regions() {
		size := uint64(len(r.Data))
		if r.GPA != 0 {
			out = append(out, MemoryRegion{Addr: r.GPA, Size: size, Type: MemoryRAM})
			continue
		}
		if size < minRAM {
			return nil, fmt.Errorf("guest RAM below 4 GiB is %d bytes; at least %d are needed", size, minRAM)
		}
		out = append(out,
			MemoryRegion{Addr: 0, Size: layout.EBDAStart, Type: MemoryRAM},
			MemoryRegion{Addr: layout.EBDAStart, Size: layout.HighMemStart - layout.EBDAStart, Type: MemoryReserved},
			MemoryRegion{Addr: layout.HighMemStart, Size: size - layout.HighMemStart, Type: MemoryRAM},
		)
	}
	if len(out) == 0 || out[0].Addr != 0 {
		return nil, fmt.Errorf("guest RAM does not start at address 0")
	}
	return out, nil
}

// lowRAMEnd is the first address past the RAM region that starts at 0: the
// top of memory a 32-bit boot structure (initrd, kernel) may use.
func lowRAMEnd(mem *guestmem.Memory) uint64 {
	for _, r := range mem.Regions() {
		if r.GPA == 0 {
			return uint64(len(r.Data))
		}
	}
	return 0
}
