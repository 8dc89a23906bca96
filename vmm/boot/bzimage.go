package boot

import (
	"encoding/binary"
	"fmt"

	"gureum/vmm/guestmem"
	"gureum/vmm/layout"
)

// A bzImage is the file a Linux build leaves in arch/x86/boot/bzImage: a
// real-mode "setup" part of a few 512-byte sectors followed by the
// protected-mode part (a decompressor plus the compressed kernel). The
// setup part begins with the setup header at offset 0x1f1, which tells the
// loader what the kernel needs. A 64-bit loader like ours skips the
// real-mode code entirely: it copies the protected-mode part to 1 MiB, fills
// boot_params (the "zero page") itself, and jumps to the 64-bit entry at
// load address + 0x200 with RSI = &boot_params.
// Reference: Documentation/arch/x86/boot.rst in the Linux tree.

// Offsets in the bzImage file and, identically, in struct boot_params.
const (
	bzSetupSects      = 0x1f1
	bzVidMode         = 0x1fa
	bzBootFlag        = 0x1fe
	bzJump            = 0x200
	bzHeaderMagic     = 0x202
	bzVersion         = 0x206
	bzTypeOfLoader    = 0x210
	bzLoadFlags       = 0x211
	bzRamdiskImage    = 0x218
	bzRamdiskSize     = 0x21c
	bzCmdLinePtr      = 0x228
	bzInitrdAddrMax   = 0x22c
	bzKernelAlignment = 0x230
	bzRelocatable     = 0x234
	bzXLoadFlags      = 0x236
	bzCmdlineSize     = 0x238
	bzPrefAddress     = 0x258
	bzInitSize        = 0x260
	bzHeaderLimit     = 0x290 // boot_params reserves 0x1f1..0x290 for the header
)

// Offsets in struct boot_params outside the setup header.
const (
	bpACPIRSDPAddr    = 0x070
	bpExtRamdiskImage = 0x0c0
	bpExtRamdiskSize  = 0x0c4
	bpExtCmdLinePtr   = 0x0c8
	bpE820Entries     = 0x1e8
	bpE820Table       = 0x2d0
	bpE820Max         = 128
	bpE820EntrySize   = 20
	bootParamsSize    = 4096
)

// Setup header values.
const (
	bzMagic         = "HdrS"
	bzBootFlagValue = 0xaa55
	bzMinVersion    = 0x0206 // cmdline_size appears in 2.06
	bzLoadedHigh    = 0x01   // loadflags: protected-mode part runs at 1 MiB
	bzXLFKernel64   = 0x01   // xloadflags: has the 64-bit entry at +0x200
	bzLoaderUnknown = 0xff   // type_of_loader: a loader without an assigned ID
	bzVidModeNormal = 0xffff // vid_mode: "normal", do not ask the BIOS
	bzEntry64Offset = 0x200
	bzDefaultSetup  = 4 // setup_sects 0 means 4, for very old kernels
	bzSectorSize    = 512
	bzInitrdMaxOld  = 0x37ffffff // initrd_addr_max before protocol 2.03
)

// isBzImage reports whether img carries the setup header signature.
func isBzImage(img Image) bool {
	b := make([]byte, 4)
	if err := readInto(img, b, bzHeaderMagic, "setup header"); err != nil {
		return false
	}
	return string(b) == bzMagic
}

// setupHeader is the part of the setup header the loader acts on.
type setupHeader struct {
	raw             []byte // bytes 0..end of header, as in the file
	headerEnd       uint64 // first byte after the setup header
	setupSize       uint64 // real-mode part, in bytes: (setup_sects+1)*512
	version         uint16
	initrdAddrMax   uint64
	kernelAlignment uint64
	relocatable     bool
	cmdlineSize     uint64
	prefAddress     uint64
	initSize        uint64
}

// parseSetupHeader reads and validates the setup header.
func parseSetupHeader(img Image) (*setupHeader, error) {
	raw, err := readExact(img, 0, bzHeaderLimit, "setup header")
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	if string(raw[bzHeaderMagic:bzHeaderMagic+4]) != bzMagic {
		return nil, fmt.Errorf("%w: setup header signature is not \"HdrS\"", ErrUnsupported)
	}
	if v := le.Uint16(raw[bzBootFlag:]); v != bzBootFlagValue {
		return nil, fmt.Errorf("setup header: boot_flag %#x, want %#x", v, bzBootFlagValue)
	}
	h := &setupHeader{raw: raw, version: le.Uint16(raw[bzVersion:])}
	if h.version < bzMinVersion {
		return nil, fmt.Errorf("boot protocol %d.%02d is too old; need 2.06 or later", h.version>>8, h.version&0xff)
	}
	// The byte after the jump opcode at 0x200 is the jump's offset, which
	// the header format uses to give the header's own length.
	h.headerEnd = bzHeaderMagic + uint64(raw[bzJump+1])
	if h.headerEnd > bzHeaderLimit || h.headerEnd < bzCmdlineSize+4 {
		return nil, fmt.Errorf("setup header: length field gives end %#x, want %#x..%#x", h.headerEnd, bzCmdlineSize+4, bzHeaderLimit)
	}
	sects := uint64(raw[bzSetupSects])
	if sects == 0 {
		sects = bzDefaultSetup
	}
	h.setupSize = (sects + 1) * bzSectorSize
	if uint64(img.Size()) <= h.setupSize {
		return nil, fmt.Errorf("bzImage of %d bytes ends within its %d-byte setup part: truncated", img.Size(), h.setupSize)
	}
	if raw[bzLoadFlags]&bzLoadedHigh == 0 {
		return nil, fmt.Errorf("bzImage is a zImage (LOADED_HIGH clear): it must load below 1 MiB, which is not supported")
	}
	// xloadflags exists from protocol 2.12; every x86-64 kernel with an
	// older 2.06+ header already had its 64-bit entry at +0x200.
	if h.version >= 0x020c && le.Uint16(raw[bzXLoadFlags:])&bzXLFKernel64 == 0 {
		return nil, fmt.Errorf("bzImage has no 64-bit entry point (XLF_KERNEL_64 clear): a 32-bit kernel")
	}
	h.initrdAddrMax = uint64(le.Uint32(raw[bzInitrdAddrMax:]))
	h.kernelAlignment = uint64(le.Uint32(raw[bzKernelAlignment:]))
	h.relocatable = raw[bzRelocatable] != 0
	if h.relocatable && (h.kernelAlignment == 0 || h.kernelAlignment&(h.kernelAlignment-1) != 0) {
		return nil, fmt.Errorf("setup header: kernel_alignment %#x is not a power of two", h.kernelAlignment)
	}
	h.cmdlineSize = uint64(le.Uint32(raw[bzCmdlineSize:]))
	if h.version >= 0x020a {
		h.prefAddress = le.Uint64(raw[bzPrefAddress:])
		h.initSize = uint64(le.Uint32(raw[bzInitSize:]))
	}
	return h, nil
}

// kernelEnd is the end of the memory the kernel uses while it boots. The
// decompressor does not unpack in place: it picks an output address (the
// load address rounded up to kernel_alignment, but never below
// pref_address, LOAD_PHYSICAL_ADDR in the kernel) and needs init_size bytes
// there. The initrd must stay clear of all of it.
func (h *setupHeader) kernelEnd(pmSize uint64) uint64 {
	load := uint64(layout.KernelLoadAddr)
	end := load + pmSize
	if h.initSize == 0 {
		return end
	}
	out := h.prefAddress
	if h.relocatable {
		aligned := (load + h.kernelAlignment - 1) &^ (h.kernelAlignment - 1)
		out = max(aligned, h.prefAddress)
	}
	if out == 0 {
		out = load
	}
	return max(end, out+h.initSize)
}

// loadBzImage loads a Linux bzImage for the 64-bit boot protocol.
func loadBzImage(mem *guestmem.Memory, img Image, opts Options) (*Kernel, error) {
	h, err := parseSetupHeader(img)
	if err != nil {
		return nil, err
	}
	pmSize := uint64(img.Size()) - h.setupSize
	end := h.kernelEnd(pmSize)
	if end < layout.KernelLoadAddr || end > lowRAMEnd(mem) {
		return nil, fmt.Errorf("kernel needs memory up to %#x (init_size %#x); guest RAM below 4 GiB ends at %#x", end, h.initSize, lowRAMEnd(mem))
	}
	dst, err := mem.Slice(layout.KernelLoadAddr, pmSize)
	if err != nil {
		return nil, fmt.Errorf("protected-mode kernel of %d bytes at %#x: %w", pmSize, layout.KernelLoadAddr, err)
	}
	if err := readInto(img, dst, h.setupSize, "protected-mode kernel"); err != nil {
		return nil, err
	}

	// cmdline_size excludes the NUL; the limit passed on includes it. A
	// stock kernel gets the parameters this machine needs (LinuxCmdline).
	if err := writeCmdline(mem, LinuxCmdline(opts.Cmdline), h.cmdlineSize+1); err != nil {
		return nil, err
	}
	maxEnd := uint64(bzInitrdMaxOld) + 1
	if h.initrdAddrMax != 0 {
		maxEnd = h.initrdAddrMax + 1 // initrd_addr_max is the last byte it may occupy
	}
	initrdAddr, initrdSize, err := loadInitrd(mem, opts.Initrd, end, maxEnd)
	if err != nil {
		return nil, err
	}
	if err := writeBootParams(mem, h, opts.RSDP, initrdAddr, initrdSize); err != nil {
		return nil, err
	}

	cpu, err := SetupLongMode(mem)
	if err != nil {
		return nil, err
	}
	cpu.RIP = layout.KernelLoadAddr + bzEntry64Offset
	cpu.RSI = layout.ZeroPage
	cpu.RSP = layout.BootStack
	cpu.RBP = layout.BootStack
	return &Kernel{
		Format: FormatBzImage, Entry: cpu, Start: layout.KernelLoadAddr, End: end,
		InitrdAddr: initrdAddr, InitrdSize: initrdSize,
	}, nil
}

// writeBootParams builds struct boot_params at layout.ZeroPage. It starts
// from a zeroed page (hence "zero page"), copies the kernel's setup header
// into it as the protocol requires, then fills the fields a boot loader
// owns: loader type, command line and initrd pointers, video mode, the RSDP
// address and the e820 memory map.
func writeBootParams(mem *guestmem.Memory, h *setupHeader, rsdp, initrdAddr, initrdSize uint64) error {
	mm, err := MemoryMap(mem)
	if err != nil {
		return err
	}
	if len(mm) > bpE820Max {
		return fmt.Errorf("memory map has %d entries; boot_params has room for %d", len(mm), bpE820Max)
	}
	bp := make([]byte, bootParamsSize)
	copy(bp[bzSetupSects:h.headerEnd], h.raw[bzSetupSects:h.headerEnd])

	le := binary.LittleEndian
	bp[bzTypeOfLoader] = bzLoaderUnknown
	le.PutUint16(bp[bzVidMode:], bzVidModeNormal)
	le.PutUint32(bp[bzCmdLinePtr:], uint32(layout.Cmdline))
	le.PutUint32(bp[bpExtCmdLinePtr:], uint32(uint64(layout.Cmdline)>>32))
	le.PutUint32(bp[bzRamdiskImage:], uint32(initrdAddr))
	le.PutUint32(bp[bzRamdiskSize:], uint32(initrdSize))
	le.PutUint32(bp[bpExtRamdiskImage:], uint32(initrdAddr>>32))
	le.PutUint32(bp[bpExtRamdiskSize:], uint32(initrdSize>>32))
	// Kernels before protocol 2.14 ignore this and find the RSDP by scanning
	// 0xe0000..0xfffff, where the acpi package puts it anyway.
	le.PutUint64(bp[bpACPIRSDPAddr:], rsdp)

	bp[bpE820Entries] = byte(len(mm))
	for i, r := range mm {
		e := bp[bpE820Table+i*bpE820EntrySize:]
		le.PutUint64(e[0:], r.Addr)
		le.PutUint64(e[8:], r.Size)
		le.PutUint32(e[16:], r.Type)
	}
	if err := mem.WriteAt(bp, layout.ZeroPage); err != nil {
		return fmt.Errorf("write boot_params: %w", err)
	}
	return nil
}
