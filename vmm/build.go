package vmm

import (
	"fmt"
	"time"

	"gureum/vmm/boot"
)

// build makes one boot of the machine from the config: KVM VM and RAM,
// then the guest image, devices and vCPUs. On error everything built so far
// is released.
func (v *VM) build() (_ *machine, err error) {
	m, err := newMachine(v.sys, v.cfg.MemoryMiB)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			m.close()
		}
	}()
	entry, err := v.loadGuest(m)
	if err != nil {
		return nil, err
	}
	if err := v.addDevices(m); err != nil {
		return nil, err
	}
	if err := v.addVCPUs(m, entry.Entry); err != nil {
		return nil, err
	}
	m.bootedAt = time.Now()
	return m, nil
}

// addVCPUs creates the vCPUs: all get CPUID, MSRs and APIC wiring; vCPU 0
// starts at the kernel entry, the others wait for the guest's SIPI.
func (v *VM) addVCPUs(m *machine, entry boot.CPUState) error {
	supported, err := v.sys.SupportedCPUID()
	if err != nil {
		return err
	}
	for id := 0; id < v.cfg.VCPUs; id++ {
		cpu, err := m.vm.CreateVCPU(id)
		if err != nil {
			return err
		}
		m.onCleanup(func() { cpu.Close() })
		if err := setupVCPU(v.sys, cpu, supported, v.cfg.VCPUs); err != nil {
			return fmt.Errorf("vCPU %d: %w", id, err)
		}
		if id == 0 {
			if err := setupBootRegs(cpu, entry); err != nil {
				return fmt.Errorf("vCPU 0: %w", err)
			}
		}
		r := &vcpuRunner{m: m, cpu: cpu, parked: make(chan struct{}), resume: make(chan struct{})}
		if st, err := cpu.StatsFD(); err == nil {
			r.stats = st
			m.onCleanup(func() { st.Close() })
		}
		m.vcpus = append(m.vcpus, r)
	}
	return nil
}
