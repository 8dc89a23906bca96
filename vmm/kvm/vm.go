package kvm

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// VM is one KVM virtual machine: its memory slots, in-kernel interrupt
// controllers and vCPUs. Methods may be called from any goroutine; KVM
// serialises what needs it.
type VM struct {
	fd       int
	mmapSize int
}

// FD returns the VM's file descriptor (for diagnostics only).
func (vm *VM) FD() int { return vm.fd }

// Close releases the VM. Its vCPUs must be closed first; guest memory
// mapped into slots is the caller's and stays mapped.
func (vm *VM) Close() error {
	if vm.fd < 0 {
		return nil
	}
	err := unix.Close(vm.fd)
	vm.fd = -1
	return err
}

// SetMemory maps host memory mem at guest-physical address gpa in slot.
// mem must stay mapped while the slot exists.
func (vm *VM) SetMemory(slot uint32, gpa uint64, mem []byte) error {
	if len(mem) == 0 {
		return fmt.Errorf("memory slot %d: empty", slot)
	}
	r := UserspaceMemoryRegion{
		Slot:          slot,
		GuestPhysAddr: gpa,
		MemorySize:    uint64(len(mem)),
		UserspaceAddr: hostAddr(mem),
	}
	if err := setUserMemoryRegion(vm.fd, &r); err != nil {
		return fmt.Errorf("KVM_SET_USER_MEMORY_REGION slot %d at %#x: %w", slot, gpa, err)
	}
	return nil
}

// SetTSSAddr places the three pages Intel VMX needs for real-mode emulation
// (unused on AMD, harmless there). addr must be outside RAM and devices.
func (vm *VM) SetTSSAddr(addr uint64) error {
	if _, err := ioctl(vm.fd, ioctlSetTSSAddr, uintptr(addr)); err != nil {
		return fmt.Errorf("KVM_SET_TSS_ADDR: %w", err)
	}
	return nil
}

// SetIdentityMapAddr places the page VMX uses for its real-mode identity map.
func (vm *VM) SetIdentityMapAddr(addr uint64) error {
	if err := setIdentityMapAddr(vm.fd, &addr); err != nil {
		return fmt.Errorf("KVM_SET_IDENTITY_MAP_ADDR: %w", err)
	}
	return nil
}

// CreateIRQChip creates the in-kernel PIC pair, IOAPIC and local APICs. It
// must be called before any vCPU is created.
func (vm *VM) CreateIRQChip() error {
	if _, err := ioctl(vm.fd, ioctlCreateIRQChip, 0); err != nil {
		return fmt.Errorf("KVM_CREATE_IRQCHIP: %w", err)
	}
	return nil
}

// CreatePIT2 creates the in-kernel 8254 timer (ports 0x40..0x43, and 0x61
// with PITSpeakerDummy).
func (vm *VM) CreatePIT2(flags uint32) error {
	c := PITConfig{Flags: flags}
	if err := createPIT2(vm.fd, &c); err != nil {
		return fmt.Errorf("KVM_CREATE_PIT2: %w", err)
	}
	return nil
}

// IOAPICState is the in-kernel IOAPIC as KVM_GET_IRQCHIP reports it: the
// pins' interrupt request bits and their redirection entries (vector in
// bits 0-7, remote IRR bit 14, trigger mode bit 15, mask bit 16,
// destination in bits 56-63).
type IOAPICState struct {
	IRR   uint32
	Redir [24]uint64
}

// IOAPIC reads the in-kernel IOAPIC's state (for diagnostics).
func (vm *VM) IOAPIC() (IOAPICState, error) {
	c := IRQChip{ChipID: IRQChipIOAPIC}
	if err := getIRQChip(vm.fd, &c); err != nil {
		return IOAPICState{}, fmt.Errorf("KVM_GET_IRQCHIP: %w", err)
	}
	// struct kvm_ioapic_state: base_address u64, ioregsel u32, id u32,
	// irr u32, pad u32, then the redirection table.
	st := IOAPICState{IRR: binary.LittleEndian.Uint32(c.Chip[16:])}
	for i := range st.Redir {
		st.Redir[i] = binary.LittleEndian.Uint64(c.Chip[24+8*i:])
	}
	return st, nil
}

// IRQLine sets the level of an irqchip input (GSI).
func (vm *VM) IRQLine(gsi uint32, level bool) error {
	l := IRQLevel{IRQ: gsi}
	if level {
		l.Level = 1
	}
	if err := irqLine(vm.fd, &l); err != nil {
		return fmt.Errorf("KVM_IRQ_LINE %d: %w", gsi, err)
	}
	return nil
}

// RegisterIRQFD makes every write to the eventfd efd inject an interrupt on
// gsi, inside the kernel, without a trip through the VMM's threads.
func (vm *VM) RegisterIRQFD(efd int, gsi uint32) error {
	c := IRQFD{FD: uint32(efd), GSI: gsi}
	if err := irqfd(vm.fd, &c); err != nil {
		return fmt.Errorf("KVM_IRQFD gsi %d: %w", gsi, err)
	}
	return nil
}

// UnregisterIRQFD undoes RegisterIRQFD.
func (vm *VM) UnregisterIRQFD(efd int, gsi uint32) error {
	c := IRQFD{FD: uint32(efd), GSI: gsi, Flags: IRQFDFlagDeassign}
	if err := irqfd(vm.fd, &c); err != nil {
		return fmt.Errorf("KVM_IRQFD deassign gsi %d: %w", gsi, err)
	}
	return nil
}

// RegisterIOEventFD makes a guest write of size bytes to addr (MMIO, or a
// port when pio) signal efd instead of exiting to the VMM. The vCPU goes on
// at once; the VMM's event loop reads the eventfd later.
func (vm *VM) RegisterIOEventFD(efd int, addr uint64, size uint32, pio bool) error {
	c := IOEventFD{Addr: addr, Len: size, FD: int32(efd)}
	if pio {
		c.Flags |= IOEventFDFlagPIO
	}
	if err := ioeventfd(vm.fd, &c); err != nil {
		return fmt.Errorf("KVM_IOEVENTFD at %#x: %w", addr, err)
	}
	return nil
}

// UnregisterIOEventFD undoes RegisterIOEventFD.
func (vm *VM) UnregisterIOEventFD(efd int, addr uint64, size uint32, pio bool) error {
	c := IOEventFD{Addr: addr, Len: size, FD: int32(efd), Flags: IOEventFDFlagDeassign}
	if pio {
		c.Flags |= IOEventFDFlagPIO
	}
	if err := ioeventfd(vm.fd, &c); err != nil {
		return fmt.Errorf("KVM_IOEVENTFD deassign at %#x: %w", addr, err)
	}
	return nil
}

// SignalMSI injects a message-signalled interrupt. It reports whether the
// interrupt was delivered (false when the guest had it blocked, e.g. its
// APIC is disabled).
func (vm *VM) SignalMSI(addr uint64, data uint32) (bool, error) {
	m := MSI{AddressLo: uint32(addr), AddressHi: uint32(addr >> 32), Data: data}
	n, err := signalMSI(vm.fd, &m)
	if err != nil {
		return false, fmt.Errorf("KVM_SIGNAL_MSI: %w", err)
	}
	return n > 0, nil
}

// SetGSIRouting replaces the VM's whole GSI routing table.
func (vm *VM) SetGSIRouting(entries []IRQRoutingEntry) error {
	if err := setGSIRouting(vm.fd, entries); err != nil {
		return fmt.Errorf("KVM_SET_GSI_ROUTING: %w", err)
	}
	return nil
}

// StatsFD opens the VM's binary statistics.
func (vm *VM) StatsFD() (*Stats, error) {
	fd, err := ioctl(vm.fd, ioctlGetStatsFD, 0)
	if err != nil {
		return nil, fmt.Errorf("KVM_GET_STATS_FD (vm): %w", err)
	}
	return openStats(int(fd))
}

// CreateVCPU creates vCPU id and maps its kvm_run page.
func (vm *VM) CreateVCPU(id int) (*VCPU, error) {
	fd, err := ioctl(vm.fd, ioctlCreateVCPU, uintptr(id))
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VCPU %d: %w", id, err)
	}
	unix.CloseOnExec(int(fd))
	run, err := unix.Mmap(int(fd), 0, vm.mmapSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(int(fd))
		return nil, fmt.Errorf("map kvm_run of vCPU %d: %w", id, err)
	}
	return &VCPU{ID: id, fd: int(fd), run: run}, nil
}
