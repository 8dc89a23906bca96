package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file holds every use of package unsafe in the KVM binding: turning
// Go pointers into ioctl arguments and reading the shared kvm_run page.
// Each pointer-to-uintptr conversion happens inside the syscall expression,
// as package unsafe's rule 4 requires, so the object stays alive and put.

// ioctl issues a KVM ioctl with an integer argument, retrying on EINTR (a
// signal sent to kick a vCPU may interrupt any KVM call, not only KVM_RUN).
func ioctl(fd int, req, arg uintptr) (uintptr, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return r, errno
		}
		return r, nil
	}
}

// ioctlPtr issues a KVM ioctl whose argument points at p.
func ioctlPtr(fd int, req uintptr, p unsafe.Pointer) error {
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(p))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return errno
		}
		return nil
	}
}

func setUserMemoryRegion(vmfd int, r *UserspaceMemoryRegion) error {
	return ioctlPtr(vmfd, ioctlSetUserMemoryRegion, unsafe.Pointer(r))
}

// hostAddr is the host virtual address of b[0], which KVM needs for a
// memory slot. b must stay mapped for as long as the slot exists.
func hostAddr(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(&b[0]))) }

func getRegs(fd int, r *Regs) error   { return ioctlPtr(fd, ioctlGetRegs, unsafe.Pointer(r)) }
func setRegs(fd int, r *Regs) error   { return ioctlPtr(fd, ioctlSetRegs, unsafe.Pointer(r)) }
func getSRegs(fd int, r *SRegs) error { return ioctlPtr(fd, ioctlGetSRegs, unsafe.Pointer(r)) }
func setSRegs(fd int, r *SRegs) error { return ioctlPtr(fd, ioctlSetSRegs, unsafe.Pointer(r)) }
func setFPU(fd int, f *FPU) error     { return ioctlPtr(fd, ioctlSetFPU, unsafe.Pointer(f)) }
func getLAPIC(fd int, l *LAPICState) error {
	return ioctlPtr(fd, ioctlGetLAPIC, unsafe.Pointer(l))
}
func setLAPIC(fd int, l *LAPICState) error {
	return ioctlPtr(fd, ioctlSetLAPIC, unsafe.Pointer(l))
}
func getVCPUEvents(fd int, e *VCPUEvents) error {
	return ioctlPtr(fd, ioctlGetVCPUEvents, unsafe.Pointer(e))
}
func getIRQChip(fd int, c *IRQChip) error { return ioctlPtr(fd, ioctlGetIRQChip, unsafe.Pointer(c)) }
func getMPState(fd int, s *uint32) error  { return ioctlPtr(fd, ioctlGetMPState, unsafe.Pointer(s)) }
func setMPState(fd int, s *uint32) error  { return ioctlPtr(fd, ioctlSetMPState, unsafe.Pointer(s)) }
func createPIT2(fd int, c *PITConfig) error {
	return ioctlPtr(fd, ioctlCreatePIT2, unsafe.Pointer(c))
}
func irqfd(fd int, c *IRQFD) error         { return ioctlPtr(fd, ioctlIRQFD, unsafe.Pointer(c)) }
func ioeventfd(fd int, c *IOEventFD) error { return ioctlPtr(fd, ioctlIOEventFD, unsafe.Pointer(c)) }
func irqLine(fd int, l *IRQLevel) error    { return ioctlPtr(fd, ioctlIRQLine, unsafe.Pointer(l)) }
func setIdentityMapAddr(fd int, a *uint64) error {
	return ioctlPtr(fd, ioctlSetIdentityMapAddr, unsafe.Pointer(a))
}

func signalMSI(fd int, m *MSI) (int, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), ioctlSignalMSI, uintptr(unsafe.Pointer(m)))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(r), nil
	}
}

// The variable-length ioctl arguments (kvm_cpuid2, kvm_msrs,
// kvm_irq_routing, kvm_msr_list) are a small header followed by an array.
// They are built in a []uint64 buffer, which is 8-byte aligned like the C
// structs, and encoded and decoded with encoding/binary.

func getSupportedCPUID(fd int, max int) ([]CPUIDEntry, error) {
	const entrySize = 40
	buf := make([]uint64, (8+max*entrySize)/8)
	b := u64bytes(buf)
	binary.LittleEndian.PutUint32(b[0:], uint32(max))
	if err := ioctlPtr(fd, ioctlGetSupportedCPUID, unsafe.Pointer(&buf[0])); err != nil {
		return nil, err
	}
	n := int(binary.LittleEndian.Uint32(b[0:]))
	if n > max {
		return nil, fmt.Errorf("kvm returned %d cpuid entries, room for %d", n, max)
	}
	entries := make([]CPUIDEntry, n)
	for i := range entries {
		e := b[8+i*entrySize:]
		entries[i] = CPUIDEntry{
			Function: binary.LittleEndian.Uint32(e[0:]),
			Index:    binary.LittleEndian.Uint32(e[4:]),
			Flags:    binary.LittleEndian.Uint32(e[8:]),
			EAX:      binary.LittleEndian.Uint32(e[12:]),
			EBX:      binary.LittleEndian.Uint32(e[16:]),
			ECX:      binary.LittleEndian.Uint32(e[20:]),
			EDX:      binary.LittleEndian.Uint32(e[24:]),
		}
	}
	return entries, nil
}

func setCPUID2(fd int, entries []CPUIDEntry) error {
	const entrySize = 40
	buf := make([]uint64, (8+len(entries)*entrySize+7)/8)
	b := u64bytes(buf)
	binary.LittleEndian.PutUint32(b[0:], uint32(len(entries)))
	for i, en := range entries {
		e := b[8+i*entrySize:]
		binary.LittleEndian.PutUint32(e[0:], en.Function)
		binary.LittleEndian.PutUint32(e[4:], en.Index)
		binary.LittleEndian.PutUint32(e[8:], en.Flags)
		binary.LittleEndian.PutUint32(e[12:], en.EAX)
		binary.LittleEndian.PutUint32(e[16:], en.EBX)
		binary.LittleEndian.PutUint32(e[20:], en.ECX)
		binary.LittleEndian.PutUint32(e[24:], en.EDX)
	}
	return ioctlPtr(fd, ioctlSetCPUID2, unsafe.Pointer(&buf[0]))
}

func getMSRIndexList(fd int) ([]uint32, error) {
	const max = 1024
	buf := make([]uint32, 1+max)
	buf[0] = max
	if err := ioctlPtr(fd, ioctlGetMSRIndexList, unsafe.Pointer(&buf[0])); err != nil {
		return nil, err
	}
	n := buf[0]
	if n > max {
		return nil, errors.New("msr index list too long")
	}
	return append([]uint32(nil), buf[1:1+n]...), nil
}

// msrs transfers entries with KVM_GET_MSRS or KVM_SET_MSRS and returns how
// many KVM processed (it stops at the first MSR it refuses).
func msrs(fd int, req uintptr, entries []MSREntry) (int, error) {
	const entrySize = 16
	buf := make([]uint64, 1+len(entries)*entrySize/8)
	b := u64bytes(buf)
	binary.LittleEndian.PutUint32(b[0:], uint32(len(entries)))
	for i, en := range entries {
		e := b[8+i*entrySize:]
		binary.LittleEndian.PutUint32(e[0:], en.Index)
		binary.LittleEndian.PutUint64(e[8:], en.Data)
	}
	var n uintptr
	var err error
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(&buf[0])))
		if errno == unix.EINTR {
			continue
		}
		n = r
		if errno != 0 {
			err = errno
		}
		break
	}
	if err != nil {
		return 0, err
	}
	for i := range entries {
		entries[i].Data = binary.LittleEndian.Uint64(b[8+i*entrySize+8:])
	}
	return int(n), nil
}

func setGSIRouting(fd int, entries []IRQRoutingEntry) error {
	const entrySize = 48
	buf := make([]uint64, 1+len(entries)*entrySize/8)
	b := u64bytes(buf)
	binary.LittleEndian.PutUint32(b[0:], uint32(len(entries)))
	for i, en := range entries {
		e := b[8+i*entrySize:]
		binary.LittleEndian.PutUint32(e[0:], en.GSI)
		binary.LittleEndian.PutUint32(e[4:], en.Type)
		binary.LittleEndian.PutUint32(e[8:], en.Flags)
		for j, u := range en.U {
			binary.LittleEndian.PutUint32(e[16+4*j:], u)
		}
	}
	return ioctlPtr(fd, ioctlSetGSIRouting, unsafe.Pointer(&buf[0]))
}

// u64bytes views a []uint64 as bytes (for building 8-byte aligned ioctl
// arguments).
func u64bytes(b []uint64) []byte {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&b[0])), len(b)*8)
}
