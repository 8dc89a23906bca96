package boot

import (
	"bytes"
	"testing"

	"gureum/vmm/guestmem"
	"gureum/vmm/layout"
)

// The fuzz targets feed arbitrary bytes to the loaders. The property is the
// one that matters for untrusted input: no panic, and a successful load
// describes an entry point and image inside guest RAM. (Writes outside RAM
// are impossible by construction: guestmem bounds-checks every one.)

const fuzzRAM = 8 << 20

func checkLoaded(t *testing.T, mem *guestmem.Memory, k *Kernel) {
	if _, err := mem.Slice(k.Entry.RIP, 1); err != nil {
		t.Fatalf("entry %#x outside RAM", k.Entry.RIP)
	}
	if k.Start < layout.HighMemStart || k.End > fuzzRAM || k.Start >= k.End {
		t.Fatalf("image [%#x, %#x) outside usable RAM", k.Start, k.End)
	}
	if k.InitrdSize != 0 && (k.InitrdAddr < k.End || k.InitrdAddr+k.InitrdSize > fuzzRAM) {
		t.Fatalf("initrd [%#x, +%#x) overlaps the kernel or leaves RAM", k.InitrdAddr, k.InitrdSize)
	}
}

func FuzzLoadPVH(f *testing.F) {
	f.Add(testPVH())
	f.Add(buildELF([]testSegment{{paddr: 0x200000, data: []byte{0xf4}, memsz: 16}}, pvhNote(0x200000, 4), true))
	f.Add(buildELF([]testSegment{
		{paddr: layout.HighMemStart, data: []byte("ab"), memsz: 0x1000},
		{paddr: layout.HighMemStart + 0x1000, data: []byte("cd")},
	}, pvhNote(layout.HighMemStart, 8), false))
	f.Add([]byte(elfMagic))
	mem := newMem(f, fuzzRAM)
	f.Fuzz(func(t *testing.T, kernel []byte) {
		k, err := LoadKernel(mem, bytes.NewReader(kernel), Options{
			Cmdline: "console=ttyS0",
			Initrd:  bytes.NewReader([]byte("initrd")),
		})
		if err == nil {
			checkLoaded(t, mem, k)
		}
	})
}

func FuzzLoadBzImage(f *testing.F) {
	f.Add(buildBzImage(defaultBz()))
	old := defaultBz()
	old.version, old.setupSects, old.initSize = 0x0206, 0, 0
	f.Add(buildBzImage(old))
	small := defaultBz()
	small.prefAddress, small.initSize = 0x100000, 0x100000
	f.Add(buildBzImage(small))
	mem := newMem(f, fuzzRAM)
	f.Fuzz(func(t *testing.T, kernel []byte) {
		k, err := LoadKernel(mem, bytes.NewReader(kernel), Options{
			Cmdline: "console=ttyS0",
			Initrd:  bytes.NewReader([]byte("initrd")),
		})
		if err == nil {
			checkLoaded(t, mem, k)
		}
	})
}

func FuzzParseNotes(f *testing.F) {
	f.Add(pvhNote(0x100000, 8))
	f.Add(append(pvhNote(0x100000, 4), pvhNote(0x200000, 8)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		notes, err := parseNotes(b)
		if err != nil {
			return
		}
		for _, n := range notes {
			if len(n.Desc) > len(b) || len(n.Name) > len(b) {
				t.Fatalf("note larger than its area: %+v", n)
			}
		}
	})
}
