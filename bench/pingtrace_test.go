package main

import (
	"math"
	"testing"
)

// A trace as tracefs prints it with record-tgid on: the client is process
// 100, the VMM 200 (threads 201 and 202), another process 300.
const sampleTrace = `# tracer: nop
#
#           TASK-PID     TGID     CPU#  |||||  TIMESTAMP  FUNCTION
            bench-101   (    100) [000] ..... 10.000000: sys_sendto(fd: 3, buff: 0x1, len: 0x40, flags: 0, addr: 0x2, addr_len: 0x10)
          <idle>-0       (-------) [001] dNh2. 10.000040: sched_wakeup: comm=x pid=1 prio=120 target_cpu=001
            other-300   (    300) [001] ..... 10.000041: kvm_msi_set_irq: dst 0 vec 40 (Fixed|physical|edge)
       gureum-vmm-201   (    200) [001] ..... 10.000050: kvm_msi_set_irq: dst 0 vec 57 (Fixed|physical|edge)
       gureum-vmm-202   (    200) [001] ..... 10.000060: kvm_vcpu_wakeup: wait time 1500000 ns, polling valid
       gureum-vmm-202   (    200) [001] ..... 10.000070: kvm_mmio: mmio write len 4 gpa 0xfee000b0 val 0x0
       gureum-vmm-202   (    200) [001] ..... 10.000080: kvm_mmio: mmio read len 4 gpa 0xc0003000 val 0x1
       gureum-vmm-202   (    200) [001] ..... 10.000400: kvm_mmio: mmio write len 2 gpa 0xc0003004 val 0x1
       gureum-vmm-201   (    200) [001] ..... 10.000405: sys_writev(fd: 6, vec: 0x1, vlen: 2)
            bench-101   (    100) [000] ..... 10.000420: sys_recvmsg -> 0xfffffffffffffff5
            bench-103   (    100) [000] ..... 10.000445: sys_recvmsg -> 0x54
            bench-101   (    100) [000] ..... 10.002000: sys_sendto(fd: 3, buff: 0x1, len: 0x40, flags: 0, addr: 0x2, addr_len: 0x10)
       gureum-vmm-201   (    200) [001] ..... 10.002050: kvm_msi_set_irq: dst 0 vec 57 (Fixed|physical|edge)
       gureum-vmm-202   (    200) [001] ..... 10.002400: kvm_mmio: mmio write len 2 gpa 0xc0003004 val 0x1
       gureum-vmm-201   (    200) [001] ..... 10.002405: sys_writev(fd: 6, vec: 0x1, vlen: 2)
            bench-101   (    100) [000] ..... 10.002445: sys_recvmsg -> 0x54
            bench-101   (    100) [000] ..... 10.004000: sys_sendto(fd: 3, buff: 0x1, len: 0x40, flags: 0, addr: 0x2, addr_len: 0x10)
       gureum-vmm-201   (    200) [001] ..... 10.004030: kvm_msi_set_irq: dst 0 vec 57 (Fixed|physical|edge)
       gureum-vmm-202   (    200) [001] ..... 10.004040: kvm_vcpu_wakeup: wait time 1500000 ns, polling valid
       gureum-vmm-202   (    200) [001] ..... 10.004300: kvm_fast_mmio: fast mmio at gpa 0xc0003004
       gureum-vmm-201   (    200) [001] ..... 10.004310: sys_writev(fd: 6, vec: 0x1, vlen: 2)
            bench-101   (    100) [000] ..... 10.004350: sys_recvmsg -> 0x54
`

func TestPingSegments(t *testing.T) {
	segs, sent := pingSegments(sampleTrace, 100, 200)
	if sent != 3 {
		t.Errorf("sent %d, want 3", sent)
	}
	// The second ping has no vCPU wake-up (the vCPU was not halted) and
	// is left out.
	want := map[string][]float64{
		"seg_send_irq":    {50, 30},
		"seg_irq_vcpu":    {10, 10},
		"seg_guest":       {340, 260},
		"seg_kick_write":  {5, 10},
		"seg_write_reply": {40, 40},
	}
	for k, w := range want {
		got := segs[k]
		if len(got) != len(w) {
			t.Errorf("%s: %v, want %v", k, got, w)
			continue
		}
		for i := range w {
			if math.Abs(got[i]-w[i]) > 0.01 {
				t.Errorf("%s: %v, want %v", k, got, w)
				break
			}
		}
	}
	if len(segs) != len(pingSegmentKeys) {
		t.Errorf("segments %v, want the keys %v", segs, pingSegmentKeys)
	}
}

func TestIsKick(t *testing.T) {
	for _, c := range []struct {
		event, rest string
		want        bool
	}{
		{"kvm_mmio", ": mmio write len 2 gpa 0xc0003004 val 0x1", true},
		{"kvm_mmio", ": mmio write len 4 gpa 0xfee000b0 val 0x0", false},
		{"kvm_mmio", ": mmio read len 4 gpa 0xc0003004 val 0x0", false},
		{"kvm_fast_mmio", ": fast mmio at gpa 0xc0007004", true},
		{"kvm_mmio", ": mmio write len 2 gpa banana val 0x1", false},
		{"kvm_msi_set_irq", ": dst 0 vec 57", false},
	} {
		if got := isKick(c.event, c.rest); got != c.want {
			t.Errorf("isKick(%q, %q) = %v, want %v", c.event, c.rest, got, c.want)
		}
	}
}
