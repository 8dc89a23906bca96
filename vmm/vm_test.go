package vmm

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pvhELF wraps 32-bit code in the smallest ELF a PVH loader accepts: one
// PT_LOAD segment at 1 MiB holding the code and a PT_NOTE with the Xen
// PHYS32_ENTRY note pointing at it.
func pvhELF(code []byte) []byte {
	const (
		load     = 0x100000
		codeOff  = 0x100
		noteOff  = 0xc0
		ehSize   = 64
		phSize   = 56
		noteSize = 12 + 4 + 4
	)
	b := make([]byte, codeOff+len(code))
	le := binary.LittleEndian
	copy(b, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1})
	le.PutUint16(b[16:], 2)    // ET_EXEC
	le.PutUint16(b[18:], 0x3e) // EM_X86_64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[24:], load)
	le.PutUint64(b[32:], ehSize) // e_phoff
	le.PutUint16(b[52:], ehSize)
	le.PutUint16(b[54:], phSize)
	le.PutUint16(b[56:], 2) // e_phnum
	ph := b[ehSize:]
	le.PutUint32(ph[0:], 1) // PT_LOAD
	le.PutUint32(ph[4:], 7)
	le.PutUint64(ph[8:], codeOff)
	le.PutUint64(ph[16:], load)
	le.PutUint64(ph[24:], load)
	le.PutUint64(ph[32:], uint64(len(code)))
	le.PutUint64(ph[40:], uint64(len(code)))
	le.PutUint64(ph[48:], 0x1000)
	ph = b[ehSize+phSize:]
	le.PutUint32(ph[0:], 4) // PT_NOTE
	le.PutUint32(ph[4:], 4)
	le.PutUint64(ph[8:], noteOff)
	le.PutUint64(ph[32:], noteSize)
	le.PutUint64(ph[40:], noteSize)
	le.PutUint64(ph[48:], 4)
	n := b[noteOff:]
	le.PutUint32(n[0:], 4)  // namesz
	le.PutUint32(n[4:], 4)  // descsz
	le.PutUint32(n[8:], 18) // XEN_ELFNOTE_PHYS32_ENTRY
	copy(n[12:], "Xen\x00")
	le.PutUint32(n[16:], load)
	copy(b[codeOff:], code)
	return b
}

// startTinyGuest boots code as a PVH kernel with vcpus vCPUs. The VM's
// end arrives on the channel; the VM is closed at cleanup.
func startTinyGuest(t *testing.T, code []byte, vcpus int, noReboot bool) (*VM, <-chan End) {
	t.Helper()
	requireKVM(t)
	kernel := filepath.Join(t.TempDir(), "tiny.elf")
	if err := os.WriteFile(kernel, pvhELF(code), 0o644); err != nil {
		t.Fatal(err)
	}
	console := NewConsole()
	t.Cleanup(func() { console.Close() })
	vm, err := New(Config{Kernel: kernel, VCPUs: vcpus, MemoryMiB: 32, NoReboot: noReboot}, console)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	done := make(chan End, 1)
	go func() {
		end, err := vm.Run()
		if err != nil {
			t.Errorf("run: %v", err)
		}
		done <- end
	}()
	return vm, done
}

// runTinyGuest boots code as a PVH kernel and returns how the run ended.
func runTinyGuest(t *testing.T, code []byte, noReboot bool) End {
	t.Helper()
	vm, done := startTinyGuest(t, code, 1, noReboot)
	select {
	case end := <-done:
		return end
	case <-time.After(60 * time.Second):
		vm.Do(ActionStop, 0)
		t.Fatal("guest did not end")
		return End{}
	}
}

// The three ways a guest ends a run are told apart.
func TestEndStates(t *testing.T) {
	cases := []struct {
		name string
		code []byte
		want EndKind
		why  string
	}{
		{"poweroff", []byte{
			0x66, 0xba, 0x00, 0x06, // mov $0x600, %dx   (ACPI sleep control)
			0xb0, 0x34, // mov $0x34, %al     (SLP_TYP=5, SLP_EN)
			0xee, 0xf4, // out %al, (%dx); hlt
		}, EndPoweroff, "S5"},
		{"reboot", []byte{
			0xb0, 0xfe, // mov $0xfe, %al     (pulse reset line)
			0xe6, 0x64, // out %al, $0x64     (i8042 command port)
			0xf4, // hlt
		}, EndReboot, "keyboard controller"},
		{"crash", []byte{
			0x0f, 0x0b, // ud2 with no IDT: #UD, #GP, #DF, triple fault
		}, EndCrash, "triple fault"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			end := runTinyGuest(t, c.code, true)
			if end.Kind != c.want || !strings.Contains(end.Reason, c.why) {
				t.Fatalf("ended %s (%s), want %s mentioning %q", end.Kind, end.Reason, c.want, c.why)
			}
		})
	}
}
