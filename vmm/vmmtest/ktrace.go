package vmmtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// EnvKVMTrace, set to 1, makes StartVMM record the kernel's KVM trace
// events (tracefs, the whole kvm subsystem: exits, entries, injected
// exceptions and interrupts, port and MMIO accesses) while each VMM runs,
// and add their tail to the log of a test that fails. It is for hosts
// given over to testing, such as L1 of the nested test host, which sets
// it: tracing is global to the machine. It tells, for example, which
// chain of exceptions ended in a guest's triple fault, when the CPU's
// registers are gone.
const EnvKVMTrace = "GUREUM_KVM_TRACE"

// traceDir is where tracefs is, or is mounted.
const traceDir = "/sys/kernel/tracing"

// traceTailLines is how many of the last events a failing test logs.
const traceTailLines = 120

// startKVMTrace clears the trace buffer and turns KVM's events on. It
// returns nil when tracing could not start (the reason is logged).
func startKVMTrace(t testing.TB) *kvmTrace {
	if _, err := os.Stat(filepath.Join(traceDir, "trace")); err != nil {
		if err := unix.Mount("tracefs", traceDir, "tracefs", 0, ""); err != nil {
			t.Logf("%s=1 but tracefs cannot be mounted at %s: %v", EnvKVMTrace, traceDir, err)
			return nil
		}
	}
	for _, s := range []struct{ file, value string }{
		{"tracing_on", "0"},
		{"buffer_size_kb", "4096"},
		{"trace", ""}, // writing truncates: clears the buffer
		{"events/kvm/enable", "1"},
		{"tracing_on", "1"},
	} {
		if err := writeTrace(s.file, s.value); err != nil {
			t.Logf("%s=1 but tracing cannot start: %v", EnvKVMTrace, err)
			return nil
		}
	}
	return &kvmTrace{}
}

// kvmTrace is KVM tracing started by startKVMTrace.
type kvmTrace struct{}

func writeTrace(file, value string) error {
	return os.WriteFile(filepath.Join(traceDir, file), []byte(value), 0o644)
}

// stop turns tracing and KVM's events off.
func (kvmTrace) stop() {
	writeTrace("tracing_on", "0")
	writeTrace("events/kvm/enable", "0")
}

// tail returns the last traceTailLines events (call it after stop).
func (kvmTrace) tail() string {
	b, err := os.ReadFile(filepath.Join(traceDir, "trace"))
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > traceTailLines {
		lines = lines[len(lines)-traceTailLines:]
	}
	return strings.Join(lines, "\n")
}
