package vmm

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"time"

	"gureum/vmm/kvm"
)

// A guest that hangs leaves two questions: where are its vCPUs, and is
// the VMM waiting for the guest or the guest for the VMM? DebugState
// answers both from outside the guest, for a person reading a failure
// (gureum-vmm prints it on SIGQUIT, before every goroutine's stack).

// debugWait bounds each step of DebugState that needs another thread: a
// vCPU leaving the guest, the device lock.
const debugWait = 2 * time.Second

// describer is implemented by devices that can describe their internal
// state in one or a few lines (for DebugState).
type describer interface {
	DescribeState() string
}

type namedDescriber struct {
	name string
	dev  describer
}

// DebugState writes the machine's state as text: per vCPU its run state,
// registers, pending events and local APIC; the IOAPIC's live pins; the
// event loop; and each device's own description (virtio queues: the
// driver's and the device's ring positions). It pauses the vCPUs for the
// moment it takes and resumes them, unless they were paused already. It
// never waits longer than a few seconds, whatever the machine's state:
// what it cannot get it names.
func (v *VM) DebugState(w io.Writer) {
	v.mu.Lock()
	m, st, boots := v.m, v.state, v.bootCount
	v.mu.Unlock()
	fmt.Fprintf(w, "vm: state %s, boot %d\n", st, boots)
	if m == nil {
		fmt.Fprintln(w, "vm: no machine")
		return
	}
	fmt.Fprintf(w, "vm: up %v, unhandled port accesses %d, MMIO %d\n",
		time.Since(m.bootedAt).Round(time.Millisecond), m.unhandledIO.Load(), m.unhandledMMIO.Load())
	m.describeVCPUs(w)
	m.describeIOAPIC(w)
	m.loop.describe(w)
	m.describeDevices(w)
}

// describeVCPUs takes the vCPUs out of the guest, reads each one's state
// and lets them go on.
func (m *machine) describeVCPUs(w io.Writer) {
	m.runMu.Lock()
	wasPaused := m.paused
	m.runMu.Unlock()
	if !wasPaused {
		m.pause(debugWait)
		defer m.resume()
	}
	for _, r := range m.vcpus {
		text := make(chan string, 1)
		go func() { text <- r.describe() }()
		select {
		case s := <-text:
			fmt.Fprint(w, s)
		case <-time.After(debugWait):
			// KVM's vCPU ioctls wait for KVM_RUN to return: this vCPU
			// did not leave the guest when kicked.
			fmt.Fprintf(w, "vcpu %d: did not leave KVM_RUN within %v of a kick (exits: io %d, mmio %d, intr %d)\n",
				r.cpu.ID, debugWait, r.exit.io.Load(), r.exit.mmio.Load(), r.exit.intr.Load())
		}
	}
}

// mpStates names KVM's multiprocessing states.
var mpStates = map[uint32]string{
	kvm.MPStateRunnable: "runnable", kvm.MPStateUninitialized: "uninitialized",
	kvm.MPStateInitReceived: "init-received", kvm.MPStateHalted: "halted", kvm.MPStateSIPIReceived: "sipi-received",
}

// describe reads one vCPU's state; the vCPU must be out of KVM_RUN or the
// ioctls wait for it.
func (r *vcpuRunner) describe() string {
	var b strings.Builder
	id := r.cpu.ID
	mp, err := r.cpu.MPState()
	if err != nil {
		fmt.Fprintf(&b, "vcpu %d: %v\n", id, err)
		return b.String()
	}
	name := mpStates[mp]
	if name == "" {
		name = fmt.Sprint(mp)
	}
	fmt.Fprintf(&b, "vcpu %d: %s; exits: io %d, mmio %d, intr %d, other %d\n", id, name,
		r.exit.io.Load(), r.exit.mmio.Load(), r.exit.intr.Load(), r.exit.other.Load())
	if regs, err := r.cpu.Regs(); err == nil {
		fmt.Fprintf(&b, "  rip=%#x rsp=%#x rbp=%#x rflags=%#x (IF=%d) rax=%#x rcx=%#x rdx=%#x rdi=%#x rsi=%#x\n",
			regs.RIP, regs.RSP, regs.RBP, regs.RFLAGS, regs.RFLAGS>>9&1, regs.RAX, regs.RCX, regs.RDX, regs.RDI, regs.RSI)
	} else {
		fmt.Fprintf(&b, "  %v\n", err)
	}
	if s, err := r.cpu.SRegs(); err == nil {
		fmt.Fprintf(&b, "  cs=%#x cpl=%d cr0=%#x cr2=%#x cr3=%#x cr4=%#x efer=%#x apic_base=%#x interrupt_bitmap=%x\n",
			s.CS.Selector, s.CS.DPL, s.CR0, s.CR2, s.CR3, s.CR4, s.EFER, s.APICBase, s.InterruptBitmap)
	}
	if e, err := r.cpu.Events(); err == nil {
		fmt.Fprintf(&b, "  events: exception injected=%d pending=%d nr=%d; interrupt injected=%d nr=%#x shadow=%d; nmi injected=%d pending=%d masked=%d\n",
			e.ExceptionInjected, e.ExceptionPending, e.ExceptionNr, e.InterruptInjected, e.InterruptNr, e.InterruptShadow,
			e.NMIInjected, e.NMIPending, e.NMIMasked)
	} else {
		fmt.Fprintf(&b, "  %v\n", err)
	}
	l, err := r.cpu.LAPIC()
	if err != nil {
		fmt.Fprintf(&b, "  %v\n", err)
		return b.String()
	}
	reg := func(off int) uint32 { return binary.LittleEndian.Uint32(l.Regs[off:]) }
	// ISR, TMR and IRR are 256-bit vectors: eight registers 16 bytes apart.
	vectors := func(base int) string {
		var vs []string
		for i := 0; i < 8; i++ {
			word := reg(base + 16*i)
			for bit := 0; bit < 32; bit++ {
				if word&(1<<bit) != 0 {
					vs = append(vs, fmt.Sprintf("%#x", i*32+bit))
				}
			}
		}
		if len(vs) == 0 {
			return "none"
		}
		return strings.Join(vs, ",")
	}
	lvt := reg(apicLVTTimer)
	mode := [4]string{"one-shot", "periodic", "tsc-deadline", "reserved"}[lvt>>17&3]
	fmt.Fprintf(&b, "  lapic: id=%d tpr=%#x svr=%#x irr=%s isr=%s tmr=%s\n",
		reg(apicID)>>24, reg(apicTPR), reg(apicSVR), vectors(apicIRR), vectors(apicISR), vectors(apicTMR))
	fmt.Fprintf(&b, "  lapic timer: %s vector=%#x masked=%d initial=%d current=%d",
		mode, lvt&0xff, lvt>>16&1, reg(apicTMICT), reg(apicTMCCT))
	if mode == "tsc-deadline" {
		msrs := []kvm.MSREntry{{Index: msrTSC}, {Index: msrTSCDeadline}}
		if err := r.cpu.MSRs(msrs); err == nil {
			tsc, deadline := msrs[0].Data, msrs[1].Data
			switch {
			case deadline == 0:
				fmt.Fprint(&b, " deadline=disarmed")
			case deadline > tsc:
				fmt.Fprintf(&b, " deadline=tsc+%d", deadline-tsc)
			default:
				fmt.Fprintf(&b, " deadline=tsc-%d (passed)", tsc-deadline)
			}
		}
	}
	fmt.Fprintln(&b)
	return b.String()
}

// describeIOAPIC lists the IOAPIC pins that are unmasked or have an
// interrupt request.
func (m *machine) describeIOAPIC(w io.Writer) {
	st, err := m.vm.IOAPIC()
	if err != nil {
		fmt.Fprintf(w, "ioapic: %v\n", err)
		return
	}
	fmt.Fprintf(w, "ioapic: irr=%#x\n", st.IRR)
	for pin, e := range st.Redir {
		masked := e>>16&1 == 1
		if masked && st.IRR&(1<<pin) == 0 {
			continue
		}
		trig := "edge"
		if e>>15&1 == 1 {
			trig = "level"
		}
		fmt.Fprintf(w, "  pin %d: vector=%#x %s remote_irr=%d masked=%t dest=%#x\n",
			pin, e&0xff, trig, e>>14&1, masked, e>>56)
	}
}

// describe reports whether the loop's thread sleeps and what is queued.
func (l *eventLoop) describe(w io.Writer) {
	l.mu.Lock()
	sleeping, queued, quitting := l.sleeping, len(l.queue), l.quitting
	l.mu.Unlock()
	l.wmu.Lock()
	watches := len(l.watches)
	l.wmu.Unlock()
	fmt.Fprintf(w, "event loop: running=%t sleeping=%t queued=%d watches=%d quitting=%t\n",
		l.running.Load(), sleeping, queued, watches, quitting)
}

// describeDevices writes each device's description under the device
// lock. If the lock stays taken (something holds it and does not let
// go), it says so and reads without it: the figures may then be torn.
func (m *machine) describeDevices(w io.Writer) {
	locked := false
	deadline := time.Now().Add(debugWait)
	for !locked && time.Now().Before(deadline) {
		if locked = m.loop.devMu.TryLock(); !locked {
			time.Sleep(time.Millisecond)
		}
	}
	if locked {
		defer m.loop.devMu.Unlock()
	} else {
		fmt.Fprintf(w, "devices: the device lock stayed held for %v; reading without it\n", debugWait)
	}
	for _, d := range m.describers {
		fmt.Fprintf(w, "%s: %s\n", d.name, strings.ReplaceAll(strings.TrimRight(d.dev.DescribeState(), "\n"), "\n", "\n  "))
	}
}
