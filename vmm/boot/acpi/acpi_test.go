package acpi

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gureum/vmm/guestmem"
	"gureum/vmm/layout"
)

var le = binary.LittleEndian

func newMem() *guestmem.Memory {
	return guestmem.FromRegions(guestmem.Region{GPA: 0, Data: make([]byte, 2<<20)})
}

var testPCI = &PCIHostBridge{
	MMIOBase: layout.PCIMMIOStart, MMIOSize: layout.PCIMMIOSize,
	Interrupts: []PCIInterrupt{{Slot: 1, Pin: 0, GSI: 5}, {Slot: 2, Pin: 1, GSI: 10}},
}

// readTable reads a table at gpa by its header length and checks the
// signature and checksum.
func readTable(t *testing.T, mem *guestmem.Memory, gpa uint64, sig string) []byte {
	t.Helper()
	hdr := make([]byte, headerSize)
	if err := mem.ReadAt(hdr, gpa); err != nil {
		t.Fatal(err)
	}
	if string(hdr[:4]) != sig {
		t.Fatalf("table at %#x is %q, want %q", gpa, hdr[:4], sig)
	}
	b := make([]byte, le.Uint32(hdr[4:]))
	if err := mem.ReadAt(b, gpa); err != nil {
		t.Fatal(err)
	}
	if Checksum(b) != 0 {
		t.Errorf("%s checksum: bytes sum to %#x", sig, -Checksum(b))
	}
	if string(b[10:16]) != OEMID {
		t.Errorf("%s OEM ID %q", sig, b[10:16])
	}
	return b
}

func TestTablesParseBack(t *testing.T) {
	mem := newMem()
	const cpus = 3
	tab, err := Write(mem, Config{CPUs: cpus, PCI: testPCI})
	if err != nil {
		t.Fatal(err)
	}
	if tab.RSDP != layout.ACPIStart || tab.End > layout.ACPIEnd {
		t.Fatalf("tables %+v", tab)
	}

	// RSDP: signature, both checksums, revision 2, XSDT pointer.
	rsdp := make([]byte, rsdpSize)
	mem.ReadAt(rsdp, tab.RSDP)
	if string(rsdp[:8]) != "RSD PTR " || rsdp[15] != 2 || le.Uint32(rsdp[20:]) != rsdpSize {
		t.Fatalf("RSDP % x", rsdp)
	}
	if Checksum(rsdp[:20]) != 0 || Checksum(rsdp) != 0 {
		t.Error("RSDP checksums do not sum to zero")
	}
	if tab.RSDP%16 != 0 {
		t.Error("RSDP not 16-byte aligned; a legacy scan would miss it")
	}

	// XSDT lists FADT and MADT; walk it the way an OS does.
	xsdt := readTable(t, mem, le.Uint64(rsdp[24:]), "XSDT")
	var fadtAddr, madtAddr uint64
	for off := headerSize; off < len(xsdt); off += 8 {
		a := le.Uint64(xsdt[off:])
		sig := make([]byte, 4)
		mem.ReadAt(sig, a)
		switch string(sig) {
		case "FACP":
			fadtAddr = a
		case "APIC":
			madtAddr = a
		default:
			t.Errorf("XSDT entry %#x has signature %q", a, sig)
		}
	}

	fadt := readTable(t, mem, fadtAddr, "FACP")
	if len(fadt) != 276 || fadt[8] != 6 || fadt[fadtMinorVersion]&0xf != 5 {
		t.Errorf("FADT length %d revision %d.%d", len(fadt), fadt[8], fadt[fadtMinorVersion])
	}
	flags := le.Uint32(fadt[fadtFlags:])
	if flags&(1<<20) == 0 {
		t.Errorf("FADT flags %#x lack HW_REDUCED_ACPI", flags)
	}
	for _, c := range []struct {
		name string
		off  int
		port uint64
	}{{"SLEEP_CONTROL_REG", fadtSleepControl, layout.ACPISleepCtl}, {"SLEEP_STATUS_REG", fadtSleepStatus, layout.ACPISleepSts}, {"RESET_REG", fadtResetReg, layout.I8042Command}} {
		g := fadt[c.off : c.off+gasSize]
		if g[0] != 1 || g[1] != 8 || g[2] != 0 || g[3] != 1 || le.Uint64(g[4:]) != c.port {
			t.Errorf("%s = % x, want 8-bit system I/O at %#x", c.name, g, c.port)
		}
	}
	if string(fadt[fadtHypervisorID:fadtHypervisorID+6]) != "GUREUM" {
		t.Errorf("hypervisor vendor %q", fadt[fadtHypervisorID:])
	}
	dsdtAddr := le.Uint64(fadt[fadtXDSDT:])
	if dsdtAddr != tab.DSDT || le.Uint32(fadt[40:]) != 0 {
		t.Errorf("X_DSDT %#x DSDT %#x", dsdtAddr, le.Uint32(fadt[40:]))
	}

	dsdt := readTable(t, mem, dsdtAddr, "DSDT")
	s5 := []byte{0x08, '_', 'S', '5', '_', 0x12, 0x07, 0x04, 0x0a, layout.SleepTypeS5, 0, 0, 0}
	if !bytes.Equal(dsdt[headerSize:headerSize+len(s5)], s5) {
		t.Errorf("\\_S5 AML % x", dsdt[headerSize:headerSize+len(s5)])
	}
	if !bytes.Contains(dsdt, []byte{0x0c, 0x41, 0xd0, 0x0a, 0x03}) {
		t.Error("DSDT lacks EisaId(PNP0A03)")
	}

	madt := readTable(t, mem, madtAddr, "APIC")
	if le.Uint32(madt[36:]) != layout.LAPICAddr {
		t.Errorf("local APIC address %#x", le.Uint32(madt[36:]))
	}
	var lapics, ioapics, overrides int
	for off := headerSize + 8; off < len(madt); {
		typ, n := madt[off], int(madt[off+1])
		if n < 2 || off+n > len(madt) {
			t.Fatalf("MADT entry at %d has length %d", off, n)
		}
		e := madt[off : off+n]
		switch typ {
		case 0:
			if e[2] != byte(lapics) || e[3] != byte(lapics) || le.Uint32(e[4:])&1 == 0 {
				t.Errorf("local APIC entry % x", e)
			}
			lapics++
		case 1:
			if e[2] != cpus || le.Uint32(e[4:]) != layout.IOAPICAddr || le.Uint32(e[8:]) != 0 {
				t.Errorf("I/O APIC entry % x", e)
			}
			ioapics++
		case 2:
			if e[2] != 0 || e[3] != 0 || le.Uint32(e[4:]) != 2 {
				t.Errorf("override entry % x", e)
			}
			overrides++
		}
		off += n
	}
	if lapics != cpus || ioapics != 1 || overrides != 1 {
		t.Errorf("MADT has %d local APICs, %d I/O APICs, %d overrides", lapics, ioapics, overrides)
	}
}

func TestWriteErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"no CPUs", Config{}},
		{"too many CPUs", Config{CPUs: 255}},
		{"MMIO above 4 GiB", Config{CPUs: 1, PCI: &PCIHostBridge{MMIOBase: 0xf000_0000, MMIOSize: 0x2000_0000}}},
		{"empty MMIO", Config{CPUs: 1, PCI: &PCIHostBridge{MMIOBase: 0xc000_0000}}},
		{"bad PRT pin", Config{CPUs: 1, PCI: &PCIHostBridge{MMIOBase: 0xc000_0000, MMIOSize: 1 << 20, Interrupts: []PCIInterrupt{{Slot: 1, Pin: 4}}}}},
	} {
		if _, err := Write(newMem(), c.cfg); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	// Tables that do not fit guest RAM are an error, not a panic.
	tiny := guestmem.FromRegions(guestmem.Region{GPA: 0, Data: make([]byte, 0xe0010)})
	if _, err := Write(tiny, Config{CPUs: 1}); err == nil {
		t.Error("tables written past the end of RAM")
	}
	// The most CPUs still fit the reserved area.
	if _, err := Write(newMem(), Config{CPUs: maxCPUs, PCI: testPCI}); err != nil {
		t.Error(err)
	}
}

func TestPkgLength(t *testing.T) {
	for _, c := range []struct {
		content int
		want    []byte
	}{
		{0, []byte{0x01}},
		{62, []byte{0x3f}},
		{63, []byte{0x41, 0x04}},         // total 65 = 0x41: lead 0x40|1, then 0x04
		{4093, []byte{0x4f, 0xff}},       // total 4095, the largest 2-byte length
		{4094, []byte{0x81, 0x00, 0x01}}, // total 4097 = 0x1001 needs 2 following bytes
	} {
		if got := amlPkgLength(c.content); !bytes.Equal(got, c.want) {
			t.Errorf("pkgLength(%d) = % x, want % x", c.content, got, c.want)
		}
	}
}

func TestEISAID(t *testing.T) {
	got, err := amlEISAID("PNP0A03")
	if err != nil || !bytes.Equal(got, []byte{0x0c, 0x41, 0xd0, 0x0a, 0x03}) {
		t.Errorf("EisaId(PNP0A03) = % x, %v", got, err)
	}
	for _, bad := range []string{"PNP0A0", "pnp0A03", "PNP0G03"} {
		if _, err := amlEISAID(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestDSDTDisassembles runs the ACPICA disassembler over our hand-made AML:
// if iasl can decode it back to the intended ASL, so can the OS's
// interpreter.
func TestDSDTDisassembles(t *testing.T) {
	iasl, err := exec.LookPath("iasl")
	if err != nil {
		t.Skip("iasl not installed (apt-get install acpica-tools)")
	}
	dsdt, err := buildDSDT(Config{CPUs: 2, PCI: testPCI})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dsdt.aml"), dsdt, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(iasl, "-d", "dsdt.aml")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("iasl -d: %v\n%s", err, out)
	}
	asl, err := os.ReadFile(filepath.Join(dir, "dsdt.dsl"))
	if err != nil {
		t.Fatal(err)
	}
	// Drop iasl's comments, then compare with whitespace collapsed.
	comment := regexp.MustCompile(`(?s)//[^\n]*|/\*.*?\*/`)
	text := strings.Join(strings.Fields(comment.ReplaceAllString(string(asl), "")), " ")
	for _, want := range []string{
		"Name (_S5, Package (0x04) { 0x05, Zero, Zero, Zero })",
		"Device (COM1)",
		`EisaId ("PNP0501")`,
		"IO (Decode16, 0x03F8, 0x03F8, 0x01, 0x08, )",
		"IRQNoFlags () {4}",
		"Device (KBD0)",
		`EisaId ("PNP0303")`,
		"IO (Decode16, 0x0060, 0x0060, 0x01, 0x01, )",
		"IO (Decode16, 0x0064, 0x0064, 0x01, 0x01, )",
		"IRQNoFlags () {1}",
		"Device (PCI0)",
		`Name (_HID, EisaId ("PNP0A03")`,
		"WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0x0000, 0x0000, 0x0000, 0x0000, 0x0001,",
		"IO (Decode16, 0x0CF8, 0x0CF8, 0x01, 0x08, )",
		"WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0x0000, 0x0D00, 0xFFFF, 0x0000, 0xF300,",
		"DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite, 0x00000000, 0xC0000000, 0xDFFFFFFF, 0x00000000, 0x20000000,",
		"Package (0x04) { 0x0001FFFF, Zero, Zero, 0x05 }",
		"Package (0x04) { 0x0002FFFF, One, Zero, 0x0A }",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("disassembly lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("disassembly:\n%s", asl)
	}
}

// TestTablesDisassemble has iasl decode the FADT and MADT too: it checks
// every checksum and field layout against its own table definitions.
func TestTablesDisassemble(t *testing.T) {
	iasl, err := exec.LookPath("iasl")
	if err != nil {
		t.Skip("iasl not installed (apt-get install acpica-tools)")
	}
	dir := t.TempDir()
	files := map[string][]byte{"facp.dat": buildFADT(0xe1000), "apic.dat": buildMADT(Config{CPUs: 2})}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(iasl, "-d", "facp.dat", "apic.dat")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("iasl -d: %v\n%s", err, out)
	}
	for name, wants := range map[string][]string{
		"facp.dsl": {"Hardware Reduced (V5) : 1", "FADT Minor Revision : 05", "Value to cause reset : FE"},
		"apic.dsl": {"Processor Enabled : 1", "I/O Apic ID : 02", "Address : FEC00000", "Interrupt : 00000002"},
	} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.Join(strings.Fields(string(b)), " ")
		for _, bad := range []string{"Incorrect checksum", "Invalid", "terminates in the middle"} {
			if strings.Contains(text, bad) {
				t.Errorf("%s: iasl reports %q", name, bad)
			}
		}
		for _, w := range wants {
			if !strings.Contains(text, w) {
				t.Errorf("%s lacks %q", name, w)
			}
		}
	}
}
