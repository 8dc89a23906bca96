package vmm

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"gureum/vmm/kvm"
)

// kickSignal interrupts a vCPU thread inside KVM_RUN. Go delivers it to a
// handler (signal.Notify below), so the ioctl returns EINTR instead of the
// process dying; the vCPU thread then looks at why it was kicked.
const kickSignal = unix.SIGUSR1

var kickOnce sync.Once

func installKickHandler() {
	kickOnce.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, kickSignal)
		go func() {
			for range ch {
			}
		}()
	})
}

// vcpuRunner runs one vCPU on its own locked OS thread.
type vcpuRunner struct {
	m     *machine
	cpu   *kvm.VCPU
	tid   atomic.Int32 // OS thread id, for kicks and CPU-time accounting
	exit  exitCounters
	stats *kvm.Stats // KVM's binary stats of this vCPU; nil if unsupported

	// pauseReq is set while the machine wants this vCPU out of the guest.
	pauseReq atomic.Bool
	parked   chan struct{} // receives when the vCPU has stopped for a pause
	resume   chan struct{} // closed-and-replaced by the machine to resume
}

// exitCounters counts userspace exits by reason. Written by the vCPU
// thread, read by metrics.
type exitCounters struct {
	io, mmio, intr, other atomic.Uint64
}

// loop runs the vCPU until the machine stops or the guest ends. It reports
// the guest event that ended it (or nil when stopped from outside).
func (r *vcpuRunner) loop() {
	runtime.LockOSThread()
	// The thread is never unlocked: it carries KVM state (and signals are
	// aimed at its tid), so it exits with the goroutine.
	r.tid.Store(int32(unix.Gettid()))
	ev := r.run()
	if ev != nil {
		r.m.guestEvent(*ev)
	}
}

func (r *vcpuRunner) run() *event {
	m := r.m
	for {
		if m.stopping.Load() || m.ending.Load() {
			return nil
		}
		if r.pauseReq.Load() {
			r.park()
			continue
		}
		err := r.cpu.Run()
		if err == unix.EINTR || err == unix.EAGAIN {
			r.exit.intr.Add(1)
			continue
		}
		if err != nil {
			return &event{kind: EndCrash, reason: fmt.Sprintf("vCPU %d: KVM_RUN: %v", r.cpu.ID, err)}
		}
		switch reason := r.cpu.ExitReason(); reason {
		case kvm.ExitIO:
			r.exit.io.Add(1)
			io, ok := r.cpu.IO()
			if !ok {
				return &event{kind: EndCrash, reason: "malformed I/O exit"}
			}
			if !r.handleIO(io) {
				return nil
			}
		case kvm.ExitMMIO:
			r.exit.mmio.Add(1)
			if !r.handleMMIO(r.cpu.MMIO()) {
				return nil
			}
		case kvm.ExitIntr:
			r.exit.intr.Add(1)
		case kvm.ExitHLT:
			// Only without an in-kernel irqchip; treat as a stop.
			return &event{kind: EndCrash, reason: fmt.Sprintf("vCPU %d halted with no irqchip", r.cpu.ID)}
		case kvm.ExitShutdown:
			// A triple fault: x86 resets the machine. A guest that means
			// to reboot uses the keyboard controller; this is a crash.
			return &event{kind: EndCrash, reason: fmt.Sprintf("vCPU %d: triple fault (%s)", r.cpu.ID, r.describeRegs())}
		case kvm.ExitSystemEvent:
			switch r.cpu.SystemEvent() {
			case kvm.SystemEventShutdown:
				return &event{kind: EndPoweroff, reason: "system event: shutdown"}
			case kvm.SystemEventReset:
				return &event{kind: EndReboot, reason: "system event: reset"}
			default:
				return &event{kind: EndCrash, reason: "system event: crash"}
			}
		case kvm.ExitInternalError:
			sub, data := r.cpu.InternalError()
			return &event{kind: EndCrash, reason: fmt.Sprintf("vCPU %d: KVM internal error, suberror %d %#x (%s)", r.cpu.ID, sub, data, r.describeRegs())}
		case kvm.ExitFailEntry:
			return &event{kind: EndCrash, reason: fmt.Sprintf("vCPU %d: entry failed, reason %#x", r.cpu.ID, r.cpu.FailEntryReason())}
		default:
			r.exit.other.Add(1)
			return &event{kind: EndCrash, reason: fmt.Sprintf("vCPU %d: unexpected exit %s (%d)", r.cpu.ID, kvm.ExitReasonName(reason), reason)}
		}
	}
}

func (r *vcpuRunner) describeRegs() string {
	regs, err := r.cpu.Regs()
	if err != nil {
		return err.Error()
	}
	sregs, _ := r.cpu.SRegs()
	s := fmt.Sprintf("rip=%#x rsp=%#x cr0=%#x cr3=%#x cr4=%#x efer=%#x", regs.RIP, regs.RSP, sregs.CR0, sregs.CR3, sregs.CR4, sregs.EFER)
	if atResetVector(regs, sregs) {
		s += "; these are the reset values: KVM on AMD (SVM) resets a vCPU before it reports a triple fault, so the state at the fault is lost"
	}
	return s
}

// atResetVector reports whether a vCPU's registers are those of x86's
// reset state: real mode, executing at 0xffff_fff0.
func atResetVector(regs kvm.Regs, sregs kvm.SRegs) bool {
	const cr0PE = 1
	return regs.RIP == 0xfff0 && sregs.CS.Base == 0xffff0000 && sregs.CR0&cr0PE == 0
}

// handleIO runs a port access on this vCPU's thread under the device lock
// (see eventLoop). String I/O (count>1) is handled element by element.
func (r *vcpuRunner) handleIO(io kvm.IOExit) bool {
	bus := r.m.pio
	return r.m.loop.access(func() {
		for i := 0; i < io.Count; i++ {
			d := io.Data[i*io.Size : (i+1)*io.Size]
			if io.Out {
				if !bus.Write(uint64(io.Port), d) {
					r.m.unhandledIO.Add(1)
				}
			} else if !bus.Read(uint64(io.Port), d) {
				for j := range d {
					d[j] = 0xff
				}
			}
		}
	})
}

func (r *vcpuRunner) handleMMIO(mm kvm.MMIOExit) bool {
	bus := r.m.mmio
	return r.m.loop.access(func() {
		if mm.Write {
			if !bus.Write(mm.Addr, mm.Data) {
				r.m.unhandledMMIO.Add(1)
			}
		} else if !bus.Read(mm.Addr, mm.Data) {
			for j := range mm.Data {
				mm.Data[j] = 0xff
			}
		}
	})
}

// park waits, out of the guest, until the machine resumes or stops.
func (r *vcpuRunner) park() {
	r.m.runMu.Lock()
	resume := r.resume
	r.m.runMu.Unlock()
	select {
	case r.parked <- struct{}{}:
	case <-resume:
		return
	}
	<-resume
}

// kick makes the vCPU leave KVM_RUN soon: immediate_exit covers the case
// where it is about to enter, the signal the case where it is inside.
func (r *vcpuRunner) kick() {
	r.cpu.SetImmediateExit(true)
	if tid := r.tid.Load(); tid != 0 {
		unix.Tgkill(unix.Getpid(), int(tid), kickSignal)
	}
}

// cpuTimeNS returns the CPU time the vCPU's thread has used, in ns, from
// /proc/self/task/TID/schedstat (its first field: time spent on a CPU).
func (r *vcpuRunner) cpuTimeNS() (uint64, error) {
	tid := r.tid.Load()
	if tid == 0 {
		return 0, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/schedstat", tid))
	if err != nil {
		return 0, err
	}
	var ns uint64
	if _, err := fmt.Sscan(string(b), &ns); err != nil {
		return 0, fmt.Errorf("parse schedstat: %w", err)
	}
	return ns, nil
}
