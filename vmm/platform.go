package vmm

import (
	"fmt"

	"gureum/vmm/boot/acpi"
	"gureum/vmm/devices/acpipm"
	"gureum/vmm/devices/cmos"
	"gureum/vmm/layout"
	"gureum/vmm/pci"
	"gureum/vmm/virtio"
	virtionet "gureum/vmm/virtio/net"
)

// addPlatformDevices adds the CMOS clock and the ACPI sleep registers.
func (v *VM) addPlatformDevices(m *machine) error {
	rtc := cmos.New(cmos.Config{MemoryBytes: v.cfg.MemoryMiB << 20})
	if err := rtc.Attach(&m.pio); err != nil {
		return err
	}
	pm := acpipm.New(acpipm.Config{PowerOff: func() {
		m.guestEvent(event{kind: EndPoweroff, reason: "guest entered ACPI S5"})
	}})
	if err := pm.Attach(&m.pio); err != nil {
		return err
	}
	m.addMetrics("acpi", func() any { return pm.Metrics() })
	return nil
}

// addPCIDevices adds PCI bus 0 (configuration through ports 0xcf8..0xcff)
// with one modern virtio-pci function per disk and network interface.
func (v *VM) addPCIDevices(m *machine) error {
	bus := pci.NewBus(&m.mmio)
	if err := m.pio.Insert("pci", layout.PCIConfAddr, 8, bus); err != nil {
		return err
	}
	env := virtio.Env{Mem: m.mem, MSI: m, Notify: m, Loop: m, Watch: m}
	add := func(name string, dev virtio.Device) (*virtio.PCITransport, error) {
		t, err := virtio.NewPCITransport(dev, env)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if _, err := bus.Add(name, t); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		// Reset on the loop (devices are the loop's): it stops device
		// goroutines, such as a tap waiter, before the machine goes.
		m.onCleanup(func() { m.loop.call(dev.Reset) })
		m.addMetrics(name+"-transport", func() any { return t.Metrics() })
		m.addDescriber(name, t)
		return t, nil
	}
	if err := v.addDrives(m, add); err != nil {
		return err
	}
	for i, t := range v.back.taps {
		name := fmt.Sprintf("net%d", i)
		var mac [6]byte
		copy(mac[:], v.back.macs[i])
		d, err := virtionet.New(virtionet.Config{MAC: mac, Backend: t})
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if _, err := add(name, d); err != nil {
			return err
		}
		m.addMetrics(name, func() any { return d.Metrics() })
	}
	return nil
}

// writeACPI writes the ACPI tables (RSDP, XSDT, FADT, DSDT with the PCI
// host bridge, MADT) and returns the RSDP address.
func writeACPI(m *machine, ncpus int) (uint64, error) {
	t, err := acpi.Write(m.mem, acpi.Config{
		CPUs: ncpus,
		PCI:  &acpi.PCIHostBridge{MMIOBase: layout.PCIMMIOStart, MMIOSize: layout.PCIMMIOSize},
	})
	if err != nil {
		return 0, err
	}
	return t.RSDP, nil
}
