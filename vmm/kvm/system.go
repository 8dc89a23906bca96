package kvm

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// DevicePath is where the KVM device lives.
const DevicePath = "/dev/kvm"

// System is an open /dev/kvm: the entry point that answers capability
// questions and creates VMs.
type System struct {
	fd       int
	mmapSize int
}

// Open opens /dev/kvm and checks the API version and the capabilities gureum
// cannot run without.
func Open() (*System, error) {
	fd, err := unix.Open(DevicePath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", DevicePath, err)
	}
	s := &System{fd: fd}
	v, err := ioctl(fd, ioctlGetAPIVersion, 0)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("KVM_GET_API_VERSION: %w", err)
	}
	if v != APIVersion {
		s.Close()
		return nil, fmt.Errorf("KVM API version %d, want %d", v, APIVersion)
	}
	for _, c := range []struct {
		cap  int
		name string
	}{
		{CapUserMemory, "user memory"},
		{CapIRQChip, "in-kernel irqchip"},
		{CapPIT2, "in-kernel PIT"},
		{CapIRQFD, "irqfd"},
		{CapIOEventFD, "ioeventfd"},
		{CapSignalMSI, "MSI injection"},
		{CapImmediateExit, "immediate exit"},
		{CapExtCPUID, "KVM_GET_SUPPORTED_CPUID"},
	} {
		if n, _ := s.CheckExtension(c.cap); n <= 0 {
			s.Close()
			return nil, fmt.Errorf("KVM lacks %s (capability %d)", c.name, c.cap)
		}
	}
	n, err := ioctl(fd, ioctlGetVCPUMmapSize, 0)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	s.mmapSize = int(n)
	return s, nil
}

// Available reports whether /dev/kvm exists and can be opened read-write by
// this process. Tests use it to decide whether to skip.
func Available() error {
	f, err := os.OpenFile(DevicePath, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

// Close closes /dev/kvm. VMs already created stay valid.
func (s *System) Close() error {
	if s.fd < 0 {
		return nil
	}
	err := unix.Close(s.fd)
	s.fd = -1
	return err
}

// CheckExtension returns KVM_CHECK_EXTENSION's answer for capability c
// (0 = absent; some capabilities return a count).
func (s *System) CheckExtension(c int) (int, error) {
	r, err := ioctl(s.fd, ioctlCheckExtension, uintptr(c))
	return int(r), err
}

// SupportedCPUID returns the CPUID leaves KVM can present to a guest on this
// host, the starting point of every vCPU's CPUID table.
func (s *System) SupportedCPUID() ([]CPUIDEntry, error) {
	for max := 128; max <= 4096; max *= 2 {
		e, err := getSupportedCPUID(s.fd, max)
		if err == unix.E2BIG {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: %w", err)
		}
		return e, nil
	}
	return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: too many entries")
}

// MSRIndexList returns the MSRs KVM saves and restores for a guest.
func (s *System) MSRIndexList() ([]uint32, error) {
	l, err := getMSRIndexList(s.fd)
	if err != nil {
		return nil, fmt.Errorf("KVM_GET_MSR_INDEX_LIST: %w", err)
	}
	return l, nil
}

// CreateVM makes an empty VM (no memory, no vCPUs).
func (s *System) CreateVM() (*VM, error) {
	fd, err := ioctl(s.fd, ioctlCreateVM, 0)
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VM: %w", err)
	}
	unix.CloseOnExec(int(fd))
	return &VM{fd: int(fd), mmapSize: s.mmapSize}, nil
}
