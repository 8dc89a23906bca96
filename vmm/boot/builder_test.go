package boot

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"testing"

	"gureum/vmm/guestmem"
	"gureum/vmm/layout"
)

// Test fixtures: tiny guest memories and hand-built kernel images.

const testRAM = 32 << 20

// newMem returns guest RAM of size bytes starting at 0, filled with 0xaa so
// that tests can tell written bytes from untouched ones.
func newMem(t testing.TB, size int) *guestmem.Memory {
	t.Helper()
	buf := bytes.Repeat([]byte{0xaa}, size)
	return guestmem.FromRegions(guestmem.Region{GPA: 0, Data: buf})
}

type testSegment struct {
	paddr   uint64
	data    []byte
	memsz   uint64
	typ     uint32 // 0 means PT_LOAD
	rawOff  uint64 // if nonzero, p_offset is forced to this value
	rawSize uint64 // if nonzero, p_filesz is forced to this value
}

// pvhNote returns a "Xen" PHYS32_ENTRY note with an entry of descSize bytes.
func pvhNote(entry uint64, descSize int) []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	binary.Write(&b, le, uint32(4))
	binary.Write(&b, le, uint32(descSize))
	binary.Write(&b, le, uint32(pvhNotePhys32))
	b.WriteString("Xen\x00")
	d := make([]byte, (descSize+3)&^3)
	if descSize == 8 {
		le.PutUint64(d, entry)
	} else {
		le.PutUint32(d, uint32(entry))
	}
	b.Write(d)
	return b.Bytes()
}

// buildELF makes an ELF64 x86-64 executable with the given segments. If
// noteInSection is set, notes is placed in a SHT_NOTE section instead of a
// PT_NOTE segment.
func buildELF(segs []testSegment, notes []byte, noteInSection bool) []byte {
	le := binary.LittleEndian
	all := append([]testSegment(nil), segs...)
	if notes != nil && !noteInSection {
		all = append(all, testSegment{typ: elfPTNote, data: notes})
	}
	phoff := uint64(elfHeaderSize)
	dataOff := phoff + uint64(len(all))*elfPhdrSize
	var body bytes.Buffer
	ph := make([]byte, len(all)*elfPhdrSize)
	for i, s := range all {
		typ := s.typ
		if typ == 0 {
			typ = elfPTLoad
		}
		off := dataOff + uint64(body.Len())
		body.Write(s.data)
		filesz := uint64(len(s.data))
		if s.rawOff != 0 {
			off = s.rawOff
		}
		if s.rawSize != 0 {
			filesz = s.rawSize
		}
		memsz := s.memsz
		if memsz == 0 && typ == elfPTLoad {
			memsz = uint64(len(s.data))
		}
		p := ph[i*elfPhdrSize:]
		le.PutUint32(p[0:], typ)
		le.PutUint64(p[0x08:], off)
		le.PutUint64(p[0x10:], s.paddr)
		le.PutUint64(p[0x18:], s.paddr)
		le.PutUint64(p[0x20:], filesz)
		le.PutUint64(p[0x28:], memsz)
	}
	var shoff uint64
	var shnum uint16
	var sh []byte
	if notes != nil && noteInSection {
		noteOff := dataOff + uint64(body.Len())
		body.Write(notes)
		shoff = dataOff + uint64(body.Len())
		shnum = 2 // a null section, then the note section
		sh = make([]byte, 2*elfShdrSize)
		n := sh[elfShdrSize:]
		le.PutUint32(n[4:], elfSHTNote)
		le.PutUint64(n[0x18:], noteOff)
		le.PutUint64(n[0x20:], uint64(len(notes)))
	}
	h := make([]byte, elfHeaderSize)
	copy(h, elfMagic)
	h[4], h[5], h[6] = elfClass64, elfDataLSB, 1
	le.PutUint16(h[0x10:], elfTypeExec)
	le.PutUint16(h[0x12:], elfMachineX86)
	le.PutUint32(h[0x14:], 1)
	le.PutUint64(h[0x20:], phoff)
	le.PutUint64(h[0x28:], shoff)
	le.PutUint16(h[0x34:], elfHeaderSize)
	le.PutUint16(h[0x36:], elfPhdrSize)
	le.PutUint16(h[0x38:], uint16(len(all)))
	le.PutUint16(h[0x3a:], elfShdrSize)
	le.PutUint16(h[0x3c:], shnum)
	out := append(h, ph...)
	out = append(out, body.Bytes()...)
	return append(out, sh...)
}

// testPVH is a valid PVH kernel: 16 bytes of code at 1 MiB and 0x2000 bytes
// of memory, entered at 1 MiB + 4.
func testPVH() []byte {
	code := []byte("0123456789abcdef")
	return buildELF([]testSegment{{paddr: layout.HighMemStart, data: code, memsz: 0x2000}},
		pvhNote(layout.HighMemStart+4, 8), false)
}

type bzParams struct {
	setupSects  byte
	version     uint16
	xloadflags  uint16
	loadflags   byte
	cmdlineSize uint32
	initrdMax   uint32
	initSize    uint32
	prefAddress uint64
	alignment   uint32
	pmSize      int
}

func defaultBz() bzParams {
	return bzParams{
		setupSects: 1, version: 0x020f, xloadflags: bzXLFKernel64, loadflags: bzLoadedHigh,
		cmdlineSize: 2047, initrdMax: 0x7fffffff, initSize: 0x400000, prefAddress: 0x1000000,
		alignment: 0x200000, pmSize: 4096,
	}
}

// buildBzImage makes a bzImage whose protected-mode part is pmSize bytes of
// a recognizable pattern.
func buildBzImage(p bzParams) []byte {
	sects := int(p.setupSects)
	if sects == 0 {
		sects = bzDefaultSetup
	}
	setup := (sects + 1) * bzSectorSize
	b := make([]byte, setup+p.pmSize)
	le := binary.LittleEndian
	b[bzSetupSects] = p.setupSects
	le.PutUint16(b[bzBootFlag:], bzBootFlagValue)
	b[bzJump], b[bzJump+1] = 0xeb, 0x6a // jmp to the end of a 0x26c-byte header
	copy(b[bzHeaderMagic:], bzMagic)
	le.PutUint16(b[bzVersion:], p.version)
	b[bzLoadFlags] = p.loadflags
	le.PutUint32(b[bzInitrdAddrMax:], p.initrdMax)
	le.PutUint32(b[bzKernelAlignment:], p.alignment)
	b[bzRelocatable] = 1
	le.PutUint16(b[bzXLoadFlags:], p.xloadflags)
	le.PutUint32(b[bzCmdlineSize:], p.cmdlineSize)
	le.PutUint64(b[bzPrefAddress:], p.prefAddress)
	le.PutUint32(b[bzInitSize:], p.initSize)
	for i := setup; i < len(b); i++ {
		b[i] = byte(i * 7)
	}
	return b
}

func newSection(f *os.File, size int64) *io.SectionReader { return io.NewSectionReader(f, 0, size) }
