// Package acpipm is the power button's other half: the two one-byte
// registers through which a guest running on hardware-reduced ACPI asks the
// platform to sleep or power off.
//
// On a hardware-reduced ACPI machine there is no PM1 register block; the
// FADT points instead at a sleep control register and a sleep status
// register (layout.ACPISleepCtl and layout.ACPISleepSts). To enter sleep
// state Sx the guest looks up \_Sx in the DSDT, takes its SLP_TYP value and
// writes (SLP_TYP << 2) | SLP_EN to the control register. gureum's DSDT
// gives \_S5 (soft off) layout.SleepTypeS5; that write powers the VM off.
// Other sleep states are not supported: the write is counted and ignored,
// and the guest carries on as if it woke at once.
package acpipm

import (
	"fmt"
	"sync/atomic"

	"gureum/vmm/devices"
	"gureum/vmm/layout"
)

// Register offsets from layout.ACPISleepCtl.
const (
	regSleepControl = 0
	regSleepStatus  = layout.ACPISleepSts - layout.ACPISleepCtl
	registerBytes   = regSleepStatus + 1
)

// Config is what the VMM gives the sleep registers.
type Config struct {
	// PowerOff runs when the guest enters S5. It is called on the event
	// loop, must not block, and should make the VMM stop the VM and report
	// a guest poweroff.
	PowerOff func()
}

// SleepRegisters are the sleep control and status registers. Read and Write
// must be called as device code (under the VM's device lock); Metrics from any.
type SleepRegisters struct {
	powerOff func()

	powerOffs     atomic.Uint64
	ignoredSleeps atomic.Uint64
}

// Metrics is a snapshot of the sleep registers' counters.
type Metrics struct {
	PowerOffs     uint64 // S5 requests
	IgnoredSleeps uint64 // requests for other sleep states
}

// New makes the sleep registers.
func New(cfg Config) *SleepRegisters {
	return &SleepRegisters{powerOff: cfg.PowerOff}
}

// Attach inserts the registers on the I/O bus at layout.ACPISleepCtl.
func (s *SleepRegisters) Attach(bus *devices.Bus) error {
	if err := bus.Insert("acpi sleep", layout.ACPISleepCtl, registerBytes, s); err != nil {
		return fmt.Errorf("attach acpi sleep registers: %w", err)
	}
	return nil
}

// Read returns zeroes: no wake event is ever pending (WAK_STS clear) and the
// control register's bits are write-only.
func (s *SleepRegisters) Read(_ uint64, data []byte) {
	for i := range data {
		data[i] = 0
	}
}

// Write acts on a write to the control register. Writes to the status
// register (the guest clearing WAK_STS before sleeping) need nothing.
func (s *SleepRegisters) Write(offset uint64, data []byte) {
	for i, v := range data {
		if offset+uint64(i) != regSleepControl || v&layout.SleepControlEn == 0 {
			continue
		}
		if (v&layout.SleepTypeMask)>>layout.SleepTypeShift != layout.SleepTypeS5 {
			s.ignoredSleeps.Add(1)
			continue
		}
		s.powerOffs.Add(1)
		if s.powerOff != nil {
			s.powerOff()
		}
	}
}

// Metrics returns the counters. Safe to call from any goroutine.
func (s *SleepRegisters) Metrics() Metrics {
	return Metrics{PowerOffs: s.powerOffs.Load(), IgnoredSleeps: s.ignoredSleeps.Load()}
}
