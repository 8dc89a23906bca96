package vmm

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// DebugState finds a spinning vCPU where it spins, says what the halted
// one waits with, and leaves the guest running.
func TestDebugStateOfARunningGuest(t *testing.T) {
	// jmp . at the PVH entry (0x100000); the second vCPU, never started
	// by the guest, waits for INIT/SIPI.
	vm, done := startTinyGuest(t, []byte{0xeb, 0xfe}, 2, false)
	defer func() {
		vm.Do(ActionStop, 0)
		<-done
	}()
	deadline := time.Now().Add(10 * time.Second)
	for st, _ := vm.State(); st != StateRunning; st, _ = vm.State() {
		if time.Now().After(deadline) {
			t.Fatalf("VM not running after 10 s (state %s)", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // let vCPU 0 reach its loop

	var b strings.Builder
	vm.DebugState(&b)
	out := b.String()
	for _, want := range []string{
		`(?m)^vcpu 0: runnable;`,
		`(?m)^  rip=0x100000 `,
		`(?m)^vcpu 1: (uninitialized|halted|runnable);`,
		`(?m)^  lapic: id=1 `,
		`(?m)^ioapic: irr=`,
		`(?m)^event loop: running=true`,
		`(?m)^serial0: ier=0x0 `,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("state lacks %s:\n%s", want, out)
		}
	}
	if st, _ := vm.State(); st != StateRunning {
		t.Errorf("state after the dump: %s, want running", st)
	}
	// The vCPUs went back into the guest: a second dump finds vCPU 0
	// with more exits (the kicks) and still at its loop.
	b.Reset()
	vm.DebugState(&b)
	if !strings.Contains(b.String(), "rip=0x100000 ") {
		t.Errorf("second dump:\n%s", b.String())
	}
}
