package kvm

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// VCPU is one virtual CPU: its fd and the kvm_run page KVM fills on every
// exit. Run and the exit accessors must be called from the one OS thread
// that runs this vCPU; SetImmediateExit may be called from any thread.
type VCPU struct {
	ID  int
	fd  int
	run []byte // the shared struct kvm_run
}

// Close unmaps kvm_run and closes the vCPU fd.
func (c *VCPU) Close() error {
	if c.fd < 0 {
		return nil
	}
	err := unix.Munmap(c.run)
	if e := unix.Close(c.fd); err == nil {
		err = e
	}
	c.fd, c.run = -1, nil
	return err
}

// Run enters the guest until the next exit that KVM cannot handle itself.
// It returns unix.EINTR (unwrapped) when a signal interrupted it or when
// immediate_exit was set; the caller then checks why it was kicked.
func (c *VCPU) Run() error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(c.fd), ioctlRun, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// SetImmediateExit sets or clears kvm_run.immediate_exit: while set, KVM_RUN
// returns EINTR at once instead of entering the guest. Together with a
// signal to the vCPU thread this is how the VMM kicks a vCPU out of the
// guest without a race (the flag covers the window before KVM_RUN starts).
func (c *VCPU) SetImmediateExit(on bool) {
	var v byte
	if on {
		v = 1
	}
	c.run[runImmediateExit] = v
}

// ExitReason is kvm_run.exit_reason after Run returned.
func (c *VCPU) ExitReason() uint32 {
	return binary.LittleEndian.Uint32(c.run[runExitReason:])
}

// IOExit describes a port I/O exit. Data is the part of the kvm_run page
// that holds the bytes (size*count of them): the VMM fills it for an IN and
// reads it for an OUT.
type IOExit struct {
	Out   bool
	Size  int
	Port  uint16
	Count int
	Data  []byte
}

// IO decodes kvm_run.io. It returns false if the data offset KVM gave lies
// outside the run page (never expected; checked so a kernel bug cannot
// become an out-of-bounds slice here).
func (c *VCPU) IO() (IOExit, bool) {
	u := c.run[runUnion:]
	e := IOExit{
		Out:   u[0] == ExitIOOut,
		Size:  int(u[1]),
		Port:  binary.LittleEndian.Uint16(u[2:]),
		Count: int(binary.LittleEndian.Uint32(u[4:])),
	}
	off := binary.LittleEndian.Uint64(u[8:])
	n := uint64(e.Size) * uint64(e.Count)
	if off > uint64(len(c.run)) || n > uint64(len(c.run))-off {
		return e, false
	}
	e.Data = c.run[off : off+n]
	return e, true
}

// MMIOExit describes an MMIO exit. Data aliases kvm_run.mmio.data: the VMM
// fills it for a read.
type MMIOExit struct {
	Addr  uint64
	Data  []byte
	Write bool
}

// MMIO decodes kvm_run.mmio.
func (c *VCPU) MMIO() MMIOExit {
	u := c.run[runUnion:]
	n := binary.LittleEndian.Uint32(u[16:])
	if n > 8 {
		n = 8
	}
	return MMIOExit{
		Addr:  binary.LittleEndian.Uint64(u[0:]),
		Data:  u[8 : 8+n],
		Write: u[20] != 0,
	}
}

// SystemEvent decodes kvm_run.system_event: its type (SystemEvent*).
func (c *VCPU) SystemEvent() uint32 {
	return binary.LittleEndian.Uint32(c.run[runUnion:])
}

// InternalError decodes kvm_run.internal: the suberror and its data words.
func (c *VCPU) InternalError() (suberror uint32, data []uint64) {
	u := c.run[runUnion:]
	suberror = binary.LittleEndian.Uint32(u[0:])
	n := binary.LittleEndian.Uint32(u[4:])
	if n > 16 {
		n = 16
	}
	for i := uint32(0); i < n; i++ {
		data = append(data, binary.LittleEndian.Uint64(u[8+8*i:]))
	}
	return suberror, data
}

// FailEntryReason decodes kvm_run.fail_entry.hardware_entry_failure_reason.
func (c *VCPU) FailEntryReason() uint64 {
	return binary.LittleEndian.Uint64(c.run[runUnion:])
}

// Regs reads the general-purpose registers.
func (c *VCPU) Regs() (Regs, error) {
	var r Regs
	if err := getRegs(c.fd, &r); err != nil {
		return r, fmt.Errorf("KVM_GET_REGS: %w", err)
	}
	return r, nil
}

// SetRegs writes the general-purpose registers.
func (c *VCPU) SetRegs(r Regs) error {
	if err := setRegs(c.fd, &r); err != nil {
		return fmt.Errorf("KVM_SET_REGS: %w", err)
	}
	return nil
}

// SRegs reads the segment and control registers.
func (c *VCPU) SRegs() (SRegs, error) {
	var r SRegs
	if err := getSRegs(c.fd, &r); err != nil {
		return r, fmt.Errorf("KVM_GET_SREGS: %w", err)
	}
	return r, nil
}

// SetSRegs writes the segment and control registers.
func (c *VCPU) SetSRegs(r SRegs) error {
	if err := setSRegs(c.fd, &r); err != nil {
		return fmt.Errorf("KVM_SET_SREGS: %w", err)
	}
	return nil
}

// SetFPU writes the x87/SSE state.
func (c *VCPU) SetFPU(f FPU) error {
	if err := setFPU(c.fd, &f); err != nil {
		return fmt.Errorf("KVM_SET_FPU: %w", err)
	}
	return nil
}

// SetCPUID sets the CPUID table the guest sees on this vCPU.
func (c *VCPU) SetCPUID(entries []CPUIDEntry) error {
	if err := setCPUID2(c.fd, entries); err != nil {
		return fmt.Errorf("KVM_SET_CPUID2: %w", err)
	}
	return nil
}

// SetMSRs writes model-specific registers; every entry must be accepted.
func (c *VCPU) SetMSRs(entries []MSREntry) error {
	n, err := msrs(c.fd, ioctlSetMSRs, entries)
	if err != nil {
		return fmt.Errorf("KVM_SET_MSRS: %w", err)
	}
	if n != len(entries) {
		return fmt.Errorf("KVM_SET_MSRS: MSR %#x refused", entries[n].Index)
	}
	return nil
}

// MSRs reads model-specific registers in place.
func (c *VCPU) MSRs(entries []MSREntry) error {
	n, err := msrs(c.fd, ioctlGetMSRs, entries)
	if err != nil {
		return fmt.Errorf("KVM_GET_MSRS: %w", err)
	}
	if n != len(entries) {
		return fmt.Errorf("KVM_GET_MSRS: MSR %#x refused", entries[n].Index)
	}
	return nil
}

// MPState reads the vCPU's multiprocessing state (MPState*).
func (c *VCPU) MPState() (uint32, error) {
	var s uint32
	if err := getMPState(c.fd, &s); err != nil {
		return 0, fmt.Errorf("KVM_GET_MP_STATE: %w", err)
	}
	return s, nil
}

// SetMPState sets the vCPU's multiprocessing state.
func (c *VCPU) SetMPState(s uint32) error {
	if err := setMPState(c.fd, &s); err != nil {
		return fmt.Errorf("KVM_SET_MP_STATE: %w", err)
	}
	return nil
}

// Events reads the exception, interrupt and NMI state the vCPU carries
// between exits (for diagnostics).
func (c *VCPU) Events() (VCPUEvents, error) {
	var e VCPUEvents
	if err := getVCPUEvents(c.fd, &e); err != nil {
		return e, fmt.Errorf("KVM_GET_VCPU_EVENTS: %w", err)
	}
	return e, nil
}

// LAPIC reads the local APIC register page.
func (c *VCPU) LAPIC() (LAPICState, error) {
	var l LAPICState
	if err := getLAPIC(c.fd, &l); err != nil {
		return l, fmt.Errorf("KVM_GET_LAPIC: %w", err)
	}
	return l, nil
}

// SetLAPIC writes the local APIC register page.
func (c *VCPU) SetLAPIC(l LAPICState) error {
	if err := setLAPIC(c.fd, &l); err != nil {
		return fmt.Errorf("KVM_SET_LAPIC: %w", err)
	}
	return nil
}

// TSCKHz returns the guest TSC frequency in kHz.
func (c *VCPU) TSCKHz() (uint32, error) {
	r, err := ioctl(c.fd, ioctlGetTSCKHz, 0)
	if err != nil {
		return 0, fmt.Errorf("KVM_GET_TSC_KHZ: %w", err)
	}
	return uint32(r), nil
}

// StatsFD opens this vCPU's binary statistics (exits, halt polling, ...).
func (c *VCPU) StatsFD() (*Stats, error) {
	fd, err := ioctl(c.fd, ioctlGetStatsFD, 0)
	if err != nil {
		return nil, fmt.Errorf("KVM_GET_STATS_FD (vcpu %d): %w", c.ID, err)
	}
	return openStats(int(fd))
}
