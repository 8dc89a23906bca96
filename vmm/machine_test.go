package vmm

import (
	"os"
	"testing"
	"time"

	"gureum/vmm/boot"
	"gureum/vmm/kvm"
	"gureum/vmm/layout"
)

func requireKVM(t *testing.T) {
	t.Helper()
	if err := kvm.Available(); err != nil {
		if os.Getenv("GUREUM_REQUIRE_KVM") == "1" {
			t.Fatalf("GUREUM_REQUIRE_KVM=1 but /dev/kvm is not usable: %v", err)
		}
		t.Skipf("/dev/kvm not usable (%v): skipping KVM test", err)
	}
}

// portRecorder is a test device that records bytes written to a port and
// powers the machine off on a write to the ACPI sleep register.
type portRecorder struct {
	m   *machine
	out []byte
}

func (p *portRecorder) Read(off uint64, data []byte) {}
func (p *portRecorder) Write(off uint64, data []byte) {
	if off == 0 {
		p.out = append(p.out, data[0])
	}
}

type powerButton struct{ m *machine }

func (p *powerButton) Read(off uint64, data []byte) {}
func (p *powerButton) Write(off uint64, data []byte) {
	p.m.guestEvent(event{kind: EndPoweroff, reason: "test"})
}

// TestMachineRunsGuestCode boots a few instructions of 32-bit code in a real
// KVM VM: they write "A" to COM1 and then power off through port 0x600. It
// proves the vCPU thread, the exit forwarding to the event loop and the
// PVH-style register setup.
func TestMachineRunsGuestCode(t *testing.T) {
	requireKVM(t)
	sys, err := kvm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	installKickHandler()
	m, err := newMachine(sys, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	code := []byte{
		0x66, 0xba, 0xf8, 0x03, // mov $0x3f8, %dx
		0xb0, 'A', // mov $'A', %al
		0xee,                   // out %al, (%dx)
		0x66, 0xba, 0x00, 0x06, // mov $0x600, %dx
		0xb0, 0x34, // mov $0x34, %al
		0xee, // out %al, (%dx)
		0xf4, // hlt
	}
	if err := m.mem.WriteAt(code, layout.HighMemStart); err != nil {
		t.Fatal(err)
	}
	rec := &portRecorder{m: m}
	if err := m.pio.Insert("com1", layout.COM1, layout.COM1Size, rec); err != nil {
		t.Fatal(err)
	}
	if err := m.pio.Insert("pm", layout.ACPISleepCtl, 1, &powerButton{m}); err != nil {
		t.Fatal(err)
	}
	v := &VM{sys: sys, cfg: Config{VCPUs: 1}}
	entry, err := boot.SetupProtectedMode(m.mem)
	if err != nil {
		t.Fatal(err)
	}
	entry.RIP = layout.HighMemStart
	if err := v.addVCPUs(m, entry); err != nil {
		t.Fatal(err)
	}
	r := m.vcpus[0]
	m.wg.Add(1)
	go func() { defer m.wg.Done(); r.loop() }()
	select {
	case ev := <-m.events:
		if ev.kind != EndPoweroff {
			t.Fatalf("end %v: %s", ev.kind, ev.reason)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("guest did not power off")
	}
	m.stopping.Store(true)
	r.kick()
	m.wg.Wait()
	if string(rec.out) != "A" {
		t.Fatalf("COM1 got %q, want %q", rec.out, "A")
	}
}
