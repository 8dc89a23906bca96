// Package boot puts a kernel into guest memory and describes the machine to
// it, playing the part firmware and a boot loader play on a real PC.
//
// Two kernel formats are understood:
//
//   - PVH: an uncompressed ELF (vmlinux, or any small kernel) that carries a
//     "Xen" ELF note of type XEN_ELFNOTE_PHYS32_ENTRY. Its segments are
//     copied to their physical addresses and it is entered in 32-bit
//     protected mode with EBX pointing at struct hvm_start_info.
//   - bzImage: the compressed Linux image, booted through the x86 64-bit
//     boot protocol. Its protected-mode part is copied to 1 MiB and entered
//     in long mode at offset 0x200 with RSI pointing at boot_params.
//
// Both get the command line, an optional initrd placed at the top of low
// RAM, and a memory map. ACPI tables are written by the acpi subpackage; the
// loader only passes their address on.
//
// Kernel and initrd files are untrusted input: a malformed file yields an
// error that names the problem, never a panic and never a write outside
// guest RAM. All functions here run once, on the VMM's build path, before any
// vCPU runs; none is safe to call concurrently on the same Memory.
package boot

import (
	"errors"
	"fmt"
	"strings"

	"gureum/vmm/guestmem"
	"gureum/vmm/layout"
)

// ErrUnsupported is wrapped by LoadKernel's error when the kernel file is
// neither a bzImage nor an ELF with a PVH entry note.
var ErrUnsupported = errors.New("not a bzImage or PVH ELF")

// Format says which boot protocol a kernel was loaded with.
type Format int

// Kernel formats.
const (
	FormatPVH Format = iota + 1
	FormatBzImage
)

func (f Format) String() string {
	switch f {
	case FormatPVH:
		return "PVH ELF"
	case FormatBzImage:
		return "bzImage"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// Options are what the loader passes to the kernel besides the kernel itself.
type Options struct {
	// Cmdline is the kernel command line, without a terminating NUL.
	Cmdline string
	// Initrd is the initial RAM disk, or nil for none.
	Initrd Image
	// RSDP is the guest-physical address of the ACPI RSDP, or 0 when the
	// machine has no ACPI tables.
	RSDP uint64
}

// Kernel describes a loaded kernel: how to enter it and where its pieces are.
type Kernel struct {
	Format Format
	// Entry is the boot vCPU's register state at the entry point.
	Entry CPUState
	// Start and End bound the memory the kernel occupies or will use while
	// it decompresses itself ([Start, End)).
	Start, End uint64
	// InitrdAddr and InitrdSize locate the initrd; both are 0 without one.
	InitrdAddr, InitrdSize uint64
}

// LoadKernel detects the kernel's format, loads it with the command line and
// initrd from opts, writes the boot structures for that format, and returns
// the entry state. On error guest memory may be partly written and must not
// be run.
func LoadKernel(mem *guestmem.Memory, kernel Image, opts Options) (*Kernel, error) {
	if kernel == nil {
		return nil, fmt.Errorf("load kernel: no kernel image")
	}
	magic := make([]byte, 4)
	if kernel.Size() >= 4 {
		if err := readInto(kernel, magic, 0, "kernel magic"); err != nil {
			return nil, fmt.Errorf("load kernel: %w", err)
		}
	}
	var (
		k   *Kernel
		err error
	)
	switch {
	case string(magic) == elfMagic:
		k, err = loadPVH(mem, kernel, opts)
	case isBzImage(kernel):
		k, err = loadBzImage(mem, kernel, opts)
	default:
		err = fmt.Errorf("%w: no ELF magic and no \"HdrS\" setup header signature", ErrUnsupported)
	}
	if err != nil {
		return nil, fmt.Errorf("load kernel: %w", err)
	}
	return k, nil
}

// writeCmdline writes the command line NUL-terminated at layout.Cmdline.
// limit is the most bytes, NUL included, the kernel accepts.
func writeCmdline(mem *guestmem.Memory, cmdline string, limit uint64) error {
	limit = min(limit, layout.CmdlineMax)
	if strings.IndexByte(cmdline, 0) >= 0 {
		return fmt.Errorf("command line contains a NUL byte")
	}
	if uint64(len(cmdline))+1 > limit {
		return fmt.Errorf("command line is %d bytes; this kernel accepts at most %d", len(cmdline), limit-1)
	}
	buf := append([]byte(cmdline), 0)
	if err := mem.WriteAt(buf, layout.Cmdline); err != nil {
		return fmt.Errorf("write command line: %w", err)
	}
	return nil
}

// initrdCeiling is the highest end address any loader gives an initrd: the
// start of the 32-bit hole, so the initrd is reachable by a 32-bit pointer.
const initrdCeiling = layout.MMIOHoleStart

// loadInitrd copies the initrd to the highest page-aligned address where it
// ends at or below min(end of low RAM, maxEnd, initrdCeiling), and checks
// that it stays clear of the kernel, which ends at kernelEnd. Loaders put the
// initrd high so the kernel, which decompresses upward from low memory, has
// the most room. It returns the address and size, or zeros without initrd.
func loadInitrd(mem *guestmem.Memory, initrd Image, kernelEnd, maxEnd uint64) (addr, size uint64, err error) {
	if initrd == nil {
		return 0, 0, nil
	}
	if initrd.Size() <= 0 {
		return 0, 0, fmt.Errorf("initrd is empty")
	}
	size = uint64(initrd.Size())
	limit := min(lowRAMEnd(mem), maxEnd, initrdCeiling)
	if size > limit {
		return 0, 0, fmt.Errorf("initrd of %d bytes does not fit below %#x", size, limit)
	}
	addr = (limit - size) &^ (pageSize - 1)
	if addr < kernelEnd {
		return 0, 0, fmt.Errorf("initrd of %d bytes does not fit between the kernel (ends at %#x) and %#x", size, kernelEnd, limit)
	}
	dst, err := mem.Slice(addr, size)
	if err != nil {
		return 0, 0, fmt.Errorf("initrd at %#x: %w", addr, err)
	}
	if err := readInto(initrd, dst, 0, "initrd"); err != nil {
		return 0, 0, err
	}
	return addr, size, nil
}

const pageSize = 4096
