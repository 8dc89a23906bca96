package boot

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"gureum/vmm/guestmem"
	"gureum/vmm/layout"
)

func mustUint32(t *testing.T, mem *guestmem.Memory, gpa uint64) uint32 {
	t.Helper()
	v, err := mem.Uint32(gpa)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustUint64(t *testing.T, mem *guestmem.Memory, gpa uint64) uint64 {
	t.Helper()
	v, err := mem.Uint64(gpa)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestLoadPVH(t *testing.T) {
	mem := newMem(t, testRAM)
	initrd := bytes.Repeat([]byte("initrd!!"), 1000) // 8000 bytes, not page-sized
	k, err := LoadKernel(mem, bytes.NewReader(testPVH()), Options{
		Cmdline: "console=ttyS0 quiet",
		Initrd:  bytes.NewReader(initrd),
		RSDP:    layout.ACPIStart,
	})
	if err != nil {
		t.Fatal(err)
	}
	if k.Format != FormatPVH || k.Entry.Mode != Protected32 {
		t.Fatalf("format %v mode %v, want PVH in protected mode", k.Format, k.Entry.Mode)
	}
	if k.Entry.RIP != layout.HighMemStart+4 || k.Entry.RBX != layout.PVHStartInfo {
		t.Errorf("RIP %#x RBX %#x", k.Entry.RIP, k.Entry.RBX)
	}
	if k.Start != layout.HighMemStart || k.End != layout.HighMemStart+0x2000 {
		t.Errorf("image [%#x, %#x)", k.Start, k.End)
	}

	// Segment: file bytes, then zeros to p_memsz, then untouched memory.
	got, _ := mem.Slice(layout.HighMemStart, 0x2001)
	if string(got[:16]) != "0123456789abcdef" {
		t.Errorf("segment content %q", got[:16])
	}
	if !bytes.Equal(got[16:0x2000], make([]byte, 0x2000-16)) {
		t.Error("bss not zeroed")
	}
	if got[0x2000] != 0xaa {
		t.Error("write past p_memsz")
	}

	// hvm_start_info.
	si := uint64(layout.PVHStartInfo)
	for _, c := range []struct {
		name string
		off  uint64
		want uint64
		size int
	}{
		{"magic", 0, PVHStartInfoMagic, 4},
		{"version", 4, 1, 4},
		{"flags", 8, 0, 4},
		{"nr_modules", 12, 1, 4},
		{"modlist_paddr", 16, layout.PVHModList, 8},
		{"cmdline_paddr", 24, layout.Cmdline, 8},
		{"rsdp_paddr", 32, layout.ACPIStart, 8},
		{"memmap_paddr", 40, layout.PVHMemMap, 8},
		{"memmap_entries", 48, 3, 4},
	} {
		var v uint64
		if c.size == 4 {
			v = uint64(mustUint32(t, mem, si+c.off))
		} else {
			v = mustUint64(t, mem, si+c.off)
		}
		if v != c.want {
			t.Errorf("start_info.%s = %#x, want %#x", c.name, v, c.want)
		}
	}

	// Module list: the initrd, page-aligned at the top of RAM.
	modAddr := mustUint64(t, mem, layout.PVHModList)
	modSize := mustUint64(t, mem, layout.PVHModList+8)
	if modSize != uint64(len(initrd)) || modAddr != k.InitrdAddr || modAddr%pageSize != 0 {
		t.Fatalf("module [%#x, +%#x), kernel says %#x", modAddr, modSize, k.InitrdAddr)
	}
	if modAddr+modSize > testRAM || testRAM-(modAddr+modSize) >= pageSize {
		t.Errorf("initrd at %#x is not the highest page-aligned fit below %#x", modAddr, testRAM)
	}
	placed, _ := mem.Slice(modAddr, modSize)
	if !bytes.Equal(placed, initrd) {
		t.Error("initrd content differs")
	}

	// Memory map.
	want := []MemoryRegion{
		{0, layout.EBDAStart, MemoryRAM},
		{layout.EBDAStart, layout.HighMemStart - layout.EBDAStart, MemoryReserved},
		{layout.HighMemStart, testRAM - layout.HighMemStart, MemoryRAM},
	}
	for i, w := range want {
		e := uint64(layout.PVHMemMap + i*pvhMemMapEntSize)
		g := MemoryRegion{mustUint64(t, mem, e), mustUint64(t, mem, e+8), mustUint32(t, mem, e+16)}
		if g != w {
			t.Errorf("memmap[%d] = %+v, want %+v", i, g, w)
		}
	}

	// Command line, NUL-terminated.
	cl, _ := mem.Slice(layout.Cmdline, 20)
	if string(cl) != "console=ttyS0 quiet\x00" {
		t.Errorf("cmdline %q", cl)
	}

	// Entry state of the PVH ABI.
	e := k.Entry
	if e.CR0&CR0PE == 0 || e.CR0&CR0PG != 0 || e.EFER != 0 || e.RFLAGS != 0x2 {
		t.Errorf("CR0 %#x EFER %#x RFLAGS %#x", e.CR0, e.EFER, e.RFLAGS)
	}
	if e.CS.Base != 0 || e.CS.Limit != 0xffffffff || e.CS.DB != 1 || e.CS.L != 0 || e.CS.Type != 0xb || e.CS.Selector != 0x10 {
		t.Errorf("CS %+v", e.CS)
	}
	for _, s := range []Segment{e.DS, e.ES, e.SS} {
		if s.Base != 0 || s.Limit != 0xffffffff || s.Type != 0x3 || s.Present != 1 || s.Selector != 0x18 {
			t.Errorf("data segment %+v", s)
		}
	}
}

func TestLoadPVHNoteInSectionAndNoInitrd(t *testing.T) {
	mem := newMem(t, testRAM)
	elf := buildELF([]testSegment{{paddr: 0x200000, data: []byte{0xf4}, memsz: 16}},
		pvhNote(0x200000, 4), true)
	k, err := LoadKernel(mem, bytes.NewReader(elf), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if k.Entry.RIP != 0x200000 || k.InitrdSize != 0 {
		t.Errorf("RIP %#x initrd %d", k.Entry.RIP, k.InitrdSize)
	}
	if n := mustUint32(t, mem, layout.PVHStartInfo+12); n != 0 {
		t.Errorf("nr_modules %d without initrd", n)
	}
	if b, _ := mem.Slice(layout.Cmdline, 1); b[0] != 0 {
		t.Error("empty command line not NUL-terminated")
	}
}

func TestLoadPVHErrors(t *testing.T) {
	valid := testPVH()
	code := []byte("code")
	note := pvhNote(layout.HighMemStart, 8)
	withClass := append([]byte(nil), valid...)
	withClass[4] = 1
	cases := []struct {
		name   string
		kernel []byte
		opts   Options
		want   string
		is     error
	}{
		{"empty", nil, Options{}, "not a bzImage", ErrUnsupported},
		{"garbage", bytes.Repeat([]byte{0x5a}, 4096), Options{}, "not a bzImage", ErrUnsupported},
		{"truncated header", valid[:40], Options{}, "truncated", nil},
		{"truncated program headers", valid[:100], Options{}, "truncated", nil},
		{"truncated segment", valid[:len(valid)-30], Options{}, "truncated", nil},
		{"32-bit ELF", withClass, Options{}, "not 64-bit", ErrUnsupported},
		{"no PVH note", buildELF([]testSegment{{paddr: layout.HighMemStart, data: code}}, nil, false), Options{}, "no PVH entry note", ErrUnsupported},
		{"wrong note type", buildELF([]testSegment{{paddr: layout.HighMemStart, data: code}},
			bytes.Replace(note, []byte{18, 0, 0, 0}, []byte{17, 0, 0, 0}, 1), false), Options{}, "no PVH entry note", ErrUnsupported},
		{"bad note size", buildELF([]testSegment{{paddr: layout.HighMemStart, data: code}}, pvhNote(0, 8)[:20], false), Options{}, "overruns", nil},
		{"segment below 1 MiB", buildELF([]testSegment{{paddr: 0x8000, data: code}}, pvhNote(0x8000, 4), false), Options{}, "below 1 MiB", nil},
		{"segment outside RAM", buildELF([]testSegment{{paddr: 0x40000000, data: code}}, pvhNote(0x40000000, 4), false), Options{}, "not inside guest RAM", nil},
		{"huge memsz", buildELF([]testSegment{{paddr: layout.HighMemStart, data: code, memsz: 1 << 62}}, note, false), Options{}, "not inside guest RAM", nil},
		{"wrapping memsz", buildELF([]testSegment{{paddr: layout.HighMemStart, data: code, memsz: ^uint64(0)}}, note, false), Options{}, "wraps", nil},
		{"filesz over memsz", buildELF([]testSegment{{paddr: layout.HighMemStart, data: code, memsz: 2}}, note, false), Options{}, "exceeds memory size", nil},
		{"huge filesz", buildELF([]testSegment{{paddr: layout.HighMemStart, data: code, rawSize: 1 << 40}}, note, false), Options{}, "truncated", nil},
		{"overlapping", buildELF([]testSegment{
			{paddr: layout.HighMemStart, data: code, memsz: 0x1000},
			{paddr: layout.HighMemStart + 0x800, data: code},
		}, note, false), Options{}, "overlap", nil},
		{"entry outside image", buildELF([]testSegment{{paddr: layout.HighMemStart, data: code}}, pvhNote(0x300000, 4), false), Options{}, "outside the loaded image", nil},
		{"entry above 4 GiB", buildELF([]testSegment{{paddr: layout.HighMemStart, data: code}}, pvhNote(1<<32, 8), false), Options{}, "not a 32-bit address", nil},
		{"cmdline too long", valid, Options{Cmdline: strings.Repeat("x", layout.CmdlineMax)}, "command line is", nil},
		{"cmdline with NUL", valid, Options{Cmdline: "a\x00b"}, "NUL", nil},
		{"initrd too big", valid, Options{Initrd: bytes.NewReader(make([]byte, testRAM))}, "does not fit", nil},
		{"initrd over kernel", valid, Options{Initrd: bytes.NewReader(make([]byte, testRAM-layout.HighMemStart-0x1000))}, "does not fit between the kernel", nil},
		{"empty initrd", valid, Options{Initrd: bytes.NewReader(nil)}, "empty", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadKernel(newMem(t, testRAM), bytes.NewReader(c.kernel), c.opts)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %q is not %v", err, c.is)
			}
		})
	}
}

func TestMemoryMapHighRAM(t *testing.T) {
	low := make([]byte, 4<<20)
	high := make([]byte, 1<<20)
	mem := guestmem.FromRegions(guestmem.Region{GPA: 0, Data: low}, guestmem.Region{GPA: layout.FourGiB, Data: high})
	mm, err := MemoryMap(mem)
	if err != nil {
		t.Fatal(err)
	}
	if len(mm) != 4 || mm[3] != (MemoryRegion{layout.FourGiB, 1 << 20, MemoryRAM}) {
		t.Errorf("memory map %+v", mm)
	}
	if _, err := MemoryMap(newMem(t, 1<<20)); err == nil {
		t.Error("1 MiB guest accepted")
	}
}

func TestGDTMatchesSegments(t *testing.T) {
	mem := newMem(t, testRAM)
	s, err := SetupLongMode(mem)
	if err != nil {
		t.Fatal(err)
	}
	// The cached segments must decode from the bytes in the guest's GDT.
	for _, seg := range []Segment{s.CS, s.DS, s.TR} {
		raw := mustUint64(t, mem, layout.BootGDT+uint64(seg.Selector))
		if got := segmentFromEntry(raw, seg.Selector); got != seg {
			t.Errorf("selector %#x: GDT says %+v, state says %+v", seg.Selector, got, seg)
		}
	}
	if s.CS.L != 1 || s.CS.DB != 0 || s.CS.Selector != 0x10 || s.DS.Selector != 0x18 {
		t.Errorf("CS %+v DS %+v", s.CS, s.DS)
	}
	if s.TR.Type != 0xb || s.TR.S != 0 || s.TR.Present != 1 {
		t.Errorf("TR %+v", s.TR)
	}
	if s.GDT.Base != layout.BootGDT || s.GDT.Limit != 6*8-1 {
		t.Errorf("GDTR %+v", s.GDT)
	}
	if s.CR0&(CR0PE|CR0PG) != CR0PE|CR0PG || s.CR4&CR4PAE == 0 || s.EFER != EFERLME|EFERLMA || s.CR3 != layout.PML4 {
		t.Errorf("CR0 %#x CR4 %#x EFER %#x CR3 %#x", s.CR0, s.CR4, s.EFER, s.CR3)
	}
	// Identity map: PML4[0] -> PDPT, PDPT[0] -> PD, PD[i] maps i*2 MiB.
	if v := mustUint64(t, mem, layout.PML4); v&^0xfff != layout.PDPT || v&3 != 3 {
		t.Errorf("PML4[0] %#x", v)
	}
	if v := mustUint64(t, mem, layout.PDPT); v&^0xfff != layout.PD || v&3 != 3 {
		t.Errorf("PDPT[0] %#x", v)
	}
	for _, i := range []uint64{0, 1, 511} {
		if v := mustUint64(t, mem, layout.PD+8*i); v != i<<21|0x83 {
			t.Errorf("PD[%d] %#x", i, v)
		}
	}
}
