package vmm

import (
	"testing"

	"gureum/vmm/kvm"
)

func TestAtResetVector(t *testing.T) {
	reset := kvm.SRegs{CR0: 0x60000010}
	reset.CS.Base = 0xffff0000
	long := kvm.SRegs{CR0: 0x80050033, EFER: 0xd01}
	for _, c := range []struct {
		name  string
		regs  kvm.Regs
		sregs kvm.SRegs
		want  bool
	}{
		{"reset state", kvm.Regs{RIP: 0xfff0}, reset, true},
		{"64-bit kernel", kvm.Regs{RIP: 0xffffffff81000000}, long, false},
		{"real mode elsewhere", kvm.Regs{RIP: 0x7c00}, kvm.SRegs{}, false},
		{"rip 0xfff0 in protected mode", kvm.Regs{RIP: 0xfff0}, kvm.SRegs{CR0: 1, CS: reset.CS}, false},
	} {
		if got := atResetVector(c.regs, c.sregs); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
