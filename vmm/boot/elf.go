package boot

import (
	"encoding/binary"
	"fmt"
)

// This file is a deliberately small ELF64 reader: only what a PVH loader
// needs (program headers, section headers, notes), with every offset and
// count checked against the file before use. The standard library's
// debug/elf would work too, but a loader for untrusted files is clearer
// when each check is visible.

const elfMagic = "\x7fELF"

// ELF constants (System V ABI, x86-64 supplement).
const (
	elfClass64     = 2
	elfDataLSB     = 1
	elfMachineX86  = 62 // EM_X86_64
	elfTypeExec    = 2  // ET_EXEC
	elfHeaderSize  = 64
	elfPhdrSize    = 56
	elfShdrSize    = 64
	elfPTLoad      = 1
	elfPTNote      = 4
	elfSHTNote     = 7
	elfMaxPhdrs    = 256 // a kernel has a handful; more means corruption
	elfMaxShdrs    = 4096
	elfMaxNoteSize = 1 << 20
)

// elfSegment is one program header entry.
type elfSegment struct {
	Type              uint32
	Offset, PAddr     uint64
	FileSize, MemSize uint64
}

// elfFile is the parsed part of an ELF64 executable.
type elfFile struct {
	Entry    uint64
	Segments []elfSegment
	shoff    uint64
	shnum    uint16
}

// parseELF reads and checks the ELF header and program headers.
func parseELF(img Image) (*elfFile, error) {
	h, err := readExact(img, 0, elfHeaderSize, "ELF header")
	if err != nil {
		return nil, err
	}
	if string(h[:4]) != elfMagic {
		return nil, fmt.Errorf("ELF header: bad magic")
	}
	if h[4] != elfClass64 || h[5] != elfDataLSB {
		return nil, fmt.Errorf("%w: ELF is not 64-bit little-endian (class %d, data %d)", ErrUnsupported, h[4], h[5])
	}
	le := binary.LittleEndian
	if m := le.Uint16(h[0x12:]); m != elfMachineX86 {
		return nil, fmt.Errorf("%w: ELF machine %d is not x86-64", ErrUnsupported, m)
	}
	if t := le.Uint16(h[0x10:]); t != elfTypeExec {
		return nil, fmt.Errorf("%w: ELF type %d is not an executable", ErrUnsupported, t)
	}
	f := &elfFile{Entry: le.Uint64(h[0x18:])}
	phoff := le.Uint64(h[0x20:])
	f.shoff = le.Uint64(h[0x28:])
	phentsize := le.Uint16(h[0x36:])
	phnum := le.Uint16(h[0x38:])
	shentsize := le.Uint16(h[0x3a:])
	f.shnum = le.Uint16(h[0x3c:])
	if phnum == 0 || phnum > elfMaxPhdrs {
		return nil, fmt.Errorf("ELF header: %d program headers (want 1..%d)", phnum, elfMaxPhdrs)
	}
	if phentsize != elfPhdrSize {
		return nil, fmt.Errorf("ELF header: program header size %d, want %d", phentsize, elfPhdrSize)
	}
	if f.shnum != 0 && shentsize != elfShdrSize {
		return nil, fmt.Errorf("ELF header: section header size %d, want %d", shentsize, elfShdrSize)
	}
	if f.shnum > elfMaxShdrs {
		return nil, fmt.Errorf("ELF header: %d section headers is too many", f.shnum)
	}
	ph, err := readExact(img, phoff, uint64(phnum)*elfPhdrSize, "ELF program headers")
	if err != nil {
		return nil, err
	}
	for i := range int(phnum) {
		p := ph[i*elfPhdrSize:]
		s := elfSegment{
			Type:     le.Uint32(p[0:]),
			Offset:   le.Uint64(p[0x08:]),
			PAddr:    le.Uint64(p[0x18:]),
			FileSize: le.Uint64(p[0x20:]),
			MemSize:  le.Uint64(p[0x28:]),
		}
		if s.Type == elfPTLoad || s.Type == elfPTNote {
			if s.Offset > uint64(img.Size()) || s.FileSize > uint64(img.Size())-s.Offset {
				return nil, fmt.Errorf("ELF segment %d: file range [%#x, +%#x) is beyond the end of the file: truncated", i, s.Offset, s.FileSize)
			}
		}
		f.Segments = append(f.Segments, s)
	}
	return f, nil
}

// noteSections returns (offset, size) of every SHT_NOTE section.
func (f *elfFile) noteSections(img Image) ([][2]uint64, error) {
	if f.shnum == 0 {
		return nil, nil
	}
	sh, err := readExact(img, f.shoff, uint64(f.shnum)*elfShdrSize, "ELF section headers")
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	var out [][2]uint64
	for i := range int(f.shnum) {
		s := sh[i*elfShdrSize:]
		if le.Uint32(s[4:]) != elfSHTNote {
			continue
		}
		out = append(out, [2]uint64{le.Uint64(s[0x18:]), le.Uint64(s[0x20:])})
	}
	return out, nil
}

// elfNote is one entry of a note segment or section.
type elfNote struct {
	Name string
	Type uint32
	Desc []byte
}

// parseNotes splits a note area: each note is namesz, descsz, type (three
// 32-bit words), then the name and the descriptor, each padded to 4 bytes.
func parseNotes(b []byte) ([]elfNote, error) {
	le := binary.LittleEndian
	var out []elfNote
	for len(b) > 0 {
		if len(b) < 12 {
			return nil, fmt.Errorf("ELF note: %d trailing bytes, too short for a note header", len(b))
		}
		namesz, descsz, typ := uint64(le.Uint32(b)), uint64(le.Uint32(b[4:])), le.Uint32(b[8:])
		b = b[12:]
		nameEnd := align4(namesz)
		if nameEnd > uint64(len(b)) {
			return nil, fmt.Errorf("ELF note: name of %d bytes overruns the note area", namesz)
		}
		name := b[:namesz]
		// The name is NUL-terminated and namesz counts the NUL.
		if n := len(name); n > 0 && name[n-1] == 0 {
			name = name[:n-1]
		}
		b = b[nameEnd:]
		descEnd := align4(descsz)
		if descEnd > uint64(len(b)) {
			// The last note may omit padding after its descriptor.
			if descsz > uint64(len(b)) {
				return nil, fmt.Errorf("ELF note %q: descriptor of %d bytes overruns the note area", name, descsz)
			}
			descEnd = uint64(len(b))
		}
		out = append(out, elfNote{Name: string(name), Type: typ, Desc: b[:descsz]})
		b = b[descEnd:]
	}
	return out, nil
}

func align4(n uint64) uint64 { return (n + 3) &^ 3 }
