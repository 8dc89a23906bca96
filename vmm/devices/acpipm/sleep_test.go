package acpipm

import (
	"testing"

	"gureum/vmm/devices"
	"gureum/vmm/layout"
)

func TestS5PowersOff(t *testing.T) {
	var bus devices.Bus
	offs := 0
	s := New(Config{PowerOff: func() { offs++ }})
	if err := s.Attach(&bus); err != nil {
		t.Fatal(err)
	}
	// What Linux's acpi_hw_extended_sleep writes: clear WAK_STS, then
	// SLP_TYP with SLP_EN.
	bus.Write(layout.ACPISleepSts, []byte{0x80})
	bus.Write(layout.ACPISleepCtl, []byte{layout.SleepTypeS5 << layout.SleepTypeShift})
	if offs != 0 {
		t.Fatal("powered off without SLP_EN")
	}
	bus.Write(layout.ACPISleepCtl, []byte{layout.SleepControlS5On})
	if offs != 1 {
		t.Fatalf("PowerOff ran %d times, want 1", offs)
	}
	if m := s.Metrics(); m.PowerOffs != 1 || m.IgnoredSleeps != 0 {
		t.Fatalf("metrics %+v", m)
	}
}

func TestOtherSleepStatesIgnored(t *testing.T) {
	offs := 0
	s := New(Config{PowerOff: func() { offs++ }})
	for typ := byte(0); typ < 8; typ++ {
		if typ == layout.SleepTypeS5 {
			continue
		}
		s.Write(0, []byte{typ<<layout.SleepTypeShift | layout.SleepControlEn})
	}
	if offs != 0 {
		t.Fatal("a sleep state other than S5 powered off")
	}
	if m := s.Metrics(); m.IgnoredSleeps != 7 {
		t.Fatalf("ignored sleeps = %d, want 7", m.IgnoredSleeps)
	}
}

func TestReadsZeroAndWideWrites(t *testing.T) {
	offs := 0
	s := New(Config{PowerOff: func() { offs++ }})
	b := []byte{0xff, 0xff}
	s.Read(0, b)
	if b[0] != 0 || b[1] != 0 {
		t.Fatalf("registers read % x", b)
	}
	// An S5 value aimed at the status register does nothing; a 16-bit
	// write covering both registers acts on the control byte.
	s.Write(regSleepStatus, []byte{layout.SleepControlS5On})
	if offs != 0 {
		t.Fatal("write to the status register powered off")
	}
	s.Write(0, []byte{layout.SleepControlS5On, 0})
	if offs != 1 {
		t.Fatal("16-bit write did not reach the control register")
	}
	New(Config{}).Write(0, []byte{layout.SleepControlS5On}) // nil callback: no panic
}
