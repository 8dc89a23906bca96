package vmm

import (
	"time"

	"gureum/vmm/api"
)

// deviceCounters is implemented by every device that reports metrics.
type deviceCounters struct {
	name string
	read func() map[string]uint64 // called on the event loop
}

// Metrics collects the VM's counters. Device counters are read on the
// event loop (which owns them); vCPU counters from the threads' CPU time
// and KVM's stats fds.
func (v *VM) Metrics() api.Metrics {
	v.mu.Lock()
	m, boots := v.m, v.bootCount
	v.mu.Unlock()
	out := api.Metrics{BootCount: boots, ConsoleDropped: v.console.Dropped()}
	if m == nil {
		return out
	}
	out.UptimeNS = uint64(time.Since(m.bootedAt))
	out.UnhandledIO = m.unhandledIO.Load()
	out.UnhandledMMIO = m.unhandledMMIO.Load()
	for _, r := range m.vcpus {
		vm := api.VCPUMetrics{
			ID: r.cpu.ID,
			Exits: map[string]uint64{
				"io":    r.exit.io.Load(),
				"mmio":  r.exit.mmio.Load(),
				"intr":  r.exit.intr.Load(),
				"other": r.exit.other.Load(),
			},
		}
		vm.CPUTimeNS, _ = r.cpuTimeNS()
		if r.stats != nil {
			if kv, err := r.stats.Read(); err == nil {
				vm.KVM = kv
				vm.HaltPollNS = kv["halt_poll_success_ns"] + kv["halt_poll_fail_ns"]
			}
		}
		if vm.CPUTimeNS > vm.HaltPollNS {
			vm.BusyNS = vm.CPUTimeNS - vm.HaltPollNS
		}
		out.VCPUs = append(out.VCPUs, vm)
	}
	var devs []api.DeviceMetrics
	m.loop.call(func() {
		for _, d := range m.devices {
			devs = append(devs, api.DeviceMetrics{Name: d.name, Counters: d.read()})
		}
	})
	out.Devices = devs
	return out
}
