package boot

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"gureum/vmm/layout"
)

// TestLoadGCCBuiltPVH loads a PVH kernel produced by the real toolchain,
// so the loader is checked against what gas and ld emit, not only against
// this package's own idea of an ELF file.
func TestLoadGCCBuiltPVH(t *testing.T) {
	for _, tool := range []string{"gcc", "ld"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	dir := t.TempDir()
	src := `
	.code32
	.section .text
	.globl start32
start32:
	movl $0x3f8, %edx
	movb $'K', %al
	outb %al, %dx
1:	hlt
	jmp 1b
	.section .bss
	.space 0x3000
	.section .note.Xen, "a"
	.balign 4
	.long 4, 4, 18
	.asciz "Xen"
	.balign 4
	.long start32
`
	script := `ENTRY(start32)
PHDRS { text PT_LOAD; notes PT_NOTE; }
SECTIONS {
  . = 0x200000;
  .text : { *(.text) } :text
  .note.Xen : { *(.note.Xen) } :text :notes
  .bss : { *(.bss) } :text
}
`
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "k.S"), []byte(src), 0o644))
	must(os.WriteFile(filepath.Join(dir, "k.ld"), []byte(script), 0o644))
	for _, args := range [][]string{
		{"gcc", "-c", "-m64", "-o", "k.o", "k.S"},
		{"ld", "-m", "elf_x86_64", "-T", "k.ld", "-nostdlib", "-o", "k.elf", "k.o"},
	} {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	elf, err := os.ReadFile(filepath.Join(dir, "k.elf"))
	must(err)
	mem := newMem(t, testRAM)
	k, err := LoadKernel(mem, bytes.NewReader(elf), Options{Cmdline: "x"})
	must(err)
	if k.Entry.RIP != 0x200000 || k.Format != FormatPVH {
		t.Errorf("entry %#x format %v", k.Entry.RIP, k.Format)
	}
	// mov $0x3f8, %edx is ba f8 03 00 00.
	code, _ := mem.Slice(0x200000, 5)
	if !bytes.Equal(code, []byte{0xba, 0xf8, 0x03, 0x00, 0x00}) {
		t.Errorf("code at entry % x", code)
	}
	// .bss is zeroed up to the end of the image.
	bss, _ := mem.Slice(k.End-16, 17)
	if !bytes.Equal(bss[:16], make([]byte, 16)) || bss[16] != 0xaa {
		t.Errorf("bss end % x", bss)
	}
	if k.End-k.Start < 0x3000 {
		t.Errorf("image [%#x, %#x) lacks the bss", k.Start, k.End)
	}
	if v, _ := mem.Uint32(layout.PVHStartInfo); v != PVHStartInfoMagic {
		t.Errorf("start_info magic %#x", v)
	}
}
