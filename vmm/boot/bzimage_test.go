package boot

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gureum/vmm/layout"
)

func TestLoadBzImage(t *testing.T) {
	mem := newMem(t, testRAM)
	p := defaultBz()
	img := buildBzImage(p)
	initrd := bytes.Repeat([]byte{0x42}, 3*pageSize+1)
	k, err := LoadKernel(mem, bytes.NewReader(img), Options{
		Cmdline: "console=ttyS0",
		Initrd:  bytes.NewReader(initrd),
		RSDP:    layout.ACPIStart,
	})
	if err != nil {
		t.Fatal(err)
	}
	if k.Format != FormatBzImage || k.Entry.Mode != Long64 {
		t.Fatalf("format %v mode %v", k.Format, k.Entry.Mode)
	}
	e := k.Entry
	if e.RIP != layout.KernelLoadAddr+0x200 || e.RSI != layout.ZeroPage || e.RSP != layout.BootStack {
		t.Errorf("RIP %#x RSI %#x RSP %#x", e.RIP, e.RSI, e.RSP)
	}
	if e.CS.Selector != 0x10 || e.CS.L != 1 || e.DS.Selector != 0x18 {
		t.Errorf("CS %+v DS %+v", e.CS, e.DS)
	}
	// The decompressor will use [16 MiB, 16 MiB + init_size).
	if k.End != uint64(p.prefAddress)+uint64(p.initSize) {
		t.Errorf("kernel end %#x", k.End)
	}

	// Protected-mode part copied to 1 MiB, without the setup sectors.
	setup := 2 * bzSectorSize
	got, _ := mem.Slice(layout.KernelLoadAddr, uint64(p.pmSize)+1)
	if !bytes.Equal(got[:p.pmSize], img[setup:]) {
		t.Error("protected-mode kernel content differs")
	}
	if got[p.pmSize] != 0xaa {
		t.Error("write past the kernel")
	}

	zp := uint64(layout.ZeroPage)
	bp, _ := mem.Slice(zp, bootParamsSize)
	// The setup header is copied verbatim except for the loader's fields.
	if string(bp[bzHeaderMagic:bzHeaderMagic+4]) != "HdrS" || !bytes.Equal(bp[bzCmdlineSize:bzCmdlineSize+4], img[bzCmdlineSize:bzCmdlineSize+4]) {
		t.Error("setup header not copied")
	}
	if bp[bzTypeOfLoader] != 0xff {
		t.Errorf("type_of_loader %#x", bp[bzTypeOfLoader])
	}
	if bp[0x1ef] != 0 || bp[0] != 0 {
		t.Error("zero page not zeroed outside the header")
	}
	checks := []struct {
		name      string
		off, want uint64
		size      int
	}{
		{"vid_mode", bzVidMode, 0xffff, 2},
		{"cmd_line_ptr", bzCmdLinePtr, layout.Cmdline, 4},
		{"ramdisk_image", bzRamdiskImage, k.InitrdAddr, 4},
		{"ramdisk_size", bzRamdiskSize, uint64(len(initrd)), 4},
		{"ext_ramdisk_image", bpExtRamdiskImage, 0, 4},
		{"acpi_rsdp_addr", bpACPIRSDPAddr, layout.ACPIStart, 8},
		{"e820_entries", bpE820Entries, 3, 1},
	}
	for _, c := range checks {
		var v uint64
		for i := c.size - 1; i >= 0; i-- {
			v = v<<8 | uint64(bp[c.off+uint64(i)])
		}
		if v != c.want {
			t.Errorf("boot_params.%s = %#x, want %#x", c.name, v, c.want)
		}
	}
	if k.InitrdAddr%pageSize != 0 || k.InitrdAddr+k.InitrdSize > testRAM || k.InitrdAddr < k.End {
		t.Errorf("initrd at [%#x, +%#x)", k.InitrdAddr, k.InitrdSize)
	}
	e820 := uint64(zp + bpE820Table + 2*bpE820EntrySize)
	if a, s, ty := mustUint64(t, mem, e820), mustUint64(t, mem, e820+8), mustUint32(t, mem, e820+16); a != layout.HighMemStart || s != testRAM-layout.HighMemStart || ty != MemoryRAM {
		t.Errorf("e820[2] = %#x +%#x type %d", a, s, ty)
	}
}

func TestLoadBzImageInitrdAddrMax(t *testing.T) {
	p := defaultBz()
	p.initrdMax = 0x17fffff // the initrd must end at or below 24 MiB
	p.initSize = 0x100000
	mem := newMem(t, testRAM)
	k, err := LoadKernel(mem, bytes.NewReader(buildBzImage(p)), Options{Initrd: bytes.NewReader(make([]byte, 5000))})
	if err != nil {
		t.Fatal(err)
	}
	if k.InitrdAddr+k.InitrdSize > 0x1800000 || k.InitrdAddr != 0x1800000-2*pageSize {
		t.Errorf("initrd at %#x, want %#x", k.InitrdAddr, 0x1800000-2*pageSize)
	}
}

func TestLoadBzImageErrors(t *testing.T) {
	mutate := func(f func(*bzParams)) []byte {
		p := defaultBz()
		f(&p)
		return buildBzImage(p)
	}
	badFlag := buildBzImage(defaultBz())
	badFlag[bzBootFlag] = 0
	cases := []struct {
		name   string
		kernel []byte
		opts   Options
		want   string
	}{
		{"old protocol", mutate(func(p *bzParams) { p.version = 0x0205 }), Options{}, "too old"},
		{"32-bit kernel", mutate(func(p *bzParams) { p.xloadflags = 0 }), Options{}, "XLF_KERNEL_64"},
		{"zImage", mutate(func(p *bzParams) { p.loadflags = 0 }), Options{}, "LOADED_HIGH"},
		{"bad boot flag", badFlag, Options{}, "boot_flag"},
		{"truncated in setup", buildBzImage(defaultBz())[:0x300], Options{}, "truncated"},
		{"truncated header", buildBzImage(defaultBz())[:0x210], Options{}, "truncated"},
		{"bad alignment", mutate(func(p *bzParams) { p.alignment = 0x3000 }), Options{}, "power of two"},
		{"init_size beyond RAM", mutate(func(p *bzParams) { p.initSize = testRAM }), Options{}, "kernel needs memory"},
		{"kernel beyond RAM", mutate(func(p *bzParams) { p.pmSize = testRAM; p.initSize = 0 }), Options{}, "kernel needs memory"},
		{"cmdline over cmdline_size", mutate(func(p *bzParams) { p.cmdlineSize = 10 }), Options{Cmdline: "01234567890"}, "at most 10"},
		{"initrd over kernel", buildBzImage(defaultBz()), Options{Initrd: bytes.NewReader(make([]byte, testRAM-0x1000000))}, "does not fit between"},
		{"initrd below initrd_addr_max", mutate(func(p *bzParams) { p.initrdMax = 0x1000000 }), Options{Initrd: bytes.NewReader(make([]byte, 4096))}, "does not fit"},
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
		})
	}
	// A cmdline of exactly cmdline_size bytes (with the defaults the loader
	// adds in front) fits.
	k := mutate(func(p *bzParams) { p.cmdlineSize = uint32(len(LinuxCmdline("0123456789"))) })
	if _, err := LoadKernel(newMem(t, testRAM), bytes.NewReader(k), Options{Cmdline: "0123456789"}); err != nil {
		t.Errorf("cmdline of cmdline_size bytes: %v", err)
	}
}

// debianKernel returns the path of a real Debian bzImage if one was
// extracted (see docs/boot.md), or "".
func debianKernel() string {
	if p := os.Getenv("GUREUM_TEST_BZIMAGE"); p != "" {
		return p
	}
	m, _ := filepath.Glob("/tmp/debkernel/x/boot/vmlinuz-*")
	if len(m) > 0 {
		return m[0]
	}
	return ""
}

func TestLoadDebianBzImage(t *testing.T) {
	path := debianKernel()
	if path == "" {
		t.Skip("no Debian kernel: set GUREUM_TEST_BZIMAGE or extract linux-image-cloud-amd64 into /tmp/debkernel/x")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	mem := newMem(t, 256<<20)
	k, err := LoadKernel(mem, newSection(f, st.Size()), Options{
		Cmdline: "console=ttyS0 panic=-1",
		Initrd:  bytes.NewReader(make([]byte, 8<<20)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if k.Format != FormatBzImage || k.End <= layout.KernelLoadAddr || k.InitrdAddr < k.End {
		t.Errorf("loaded %+v", k)
	}
	if v, _ := mem.Uint16(layout.ZeroPage + bzVersion); v < 0x020c {
		t.Errorf("protocol %#x", v)
	}
	if _, err := LoadKernel(newMem(t, 8<<20), newSection(f, st.Size()), Options{}); err == nil {
		t.Error("a stock kernel was accepted into 8 MiB of RAM")
	}
}
