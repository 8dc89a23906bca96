package kvm

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// goLayout is what the Go mirrors claim, by the name cProgram prints:
// "struct" (its size), "struct.field" (an offset), "ioctl.NAME" (a request
// number) or "cap.NAME" (a capability number).
func goLayout() map[string]uintptr {
	return map[string]uintptr{
		"kvm_userspace_memory_region":       unsafe.Sizeof(UserspaceMemoryRegion{}),
		"kvm_regs":                          unsafe.Sizeof(Regs{}),
		"kvm_segment":                       unsafe.Sizeof(Segment{}),
		"kvm_dtable":                        unsafe.Sizeof(DTable{}),
		"kvm_sregs":                         unsafe.Sizeof(SRegs{}),
		"kvm_sregs.cr0":                     unsafe.Offsetof(SRegs{}.CR0),
		"kvm_sregs.apic_base":               unsafe.Offsetof(SRegs{}.APICBase),
		"kvm_fpu":                           unsafe.Sizeof(FPU{}),
		"kvm_fpu.mxcsr":                     unsafe.Offsetof(FPU{}.MXCSR),
		"kvm_cpuid_entry2":                  unsafe.Sizeof(CPUIDEntry{}),
		"kvm_msr_entry":                     unsafe.Sizeof(MSREntry{}),
		"kvm_pit_config":                    unsafe.Sizeof(PITConfig{}),
		"kvm_irqfd":                         unsafe.Sizeof(IRQFD{}),
		"kvm_ioeventfd":                     unsafe.Sizeof(IOEventFD{}),
		"kvm_ioeventfd.fd":                  unsafe.Offsetof(IOEventFD{}.FD),
		"kvm_msi":                           unsafe.Sizeof(MSI{}),
		"kvm_irq_level":                     unsafe.Sizeof(IRQLevel{}),
		"kvm_irq_routing_entry":             unsafe.Sizeof(IRQRoutingEntry{}),
		"kvm_irq_routing_entry.u":           unsafe.Offsetof(IRQRoutingEntry{}.U),
		"kvm_stats_header":                  unsafe.Sizeof(StatsHeader{}),
		"kvm_stats_desc":                    StatsDescSize,
		"kvm_lapic_state":                   unsafe.Sizeof(LAPICState{}),
		"kvm_vcpu_events":                   unsafe.Sizeof(VCPUEvents{}),
		"kvm_vcpu_events.sipi_vector":       unsafe.Offsetof(VCPUEvents{}.SIPIVector),
		"kvm_vcpu_events.exception_payload": unsafe.Offsetof(VCPUEvents{}.ExceptionPayload),
		"kvm_irqchip":                       unsafe.Sizeof(IRQChip{}),
		"kvm_irqchip.chip":                  unsafe.Offsetof(IRQChip{}.Chip),
		"cap.KVM_CAP_IRQCHIP":               CapIRQChip,
		"cap.KVM_CAP_USER_MEMORY":           CapUserMemory,
		"cap.KVM_CAP_SET_TSS_ADDR":          CapSetTSSAddr,
		"cap.KVM_CAP_EXT_CPUID":             CapExtCPUID,
		"cap.KVM_CAP_IRQ_ROUTING":           CapIRQRouting,
		"cap.KVM_CAP_IRQFD":                 CapIRQFD,
		"cap.KVM_CAP_PIT2":                  CapPIT2,
		"cap.KVM_CAP_IOEVENTFD":             CapIOEventFD,
		"cap.KVM_CAP_GET_TSC_KHZ":           CapGetTSCKHz,
		"cap.KVM_CAP_SIGNAL_MSI":            CapSignalMSI,
		"cap.KVM_CAP_IMMEDIATE_EXIT":        CapImmediateExit,
		"cap.KVM_CAP_BINARY_STATS_FD":       CapBinaryStatsFD,
		"cap.KVM_CAP_NR_VCPUS":              CapNrVCPUs,
		"cap.KVM_CAP_MAX_VCPUS":             CapMaxVCPUs,
		"cap.KVM_CAP_ADJUST_CLOCK":          CapAdjustClock,
		"cap.KVM_CAP_IRQFD_RESAMPLE":        CapIRQFDResample,
		"cap.KVM_CAP_IOEVENTFD_NO_LENGTH":   CapIOEventFDNoLen,
		"ioctl.KVM_GET_VCPU_EVENTS":         ioctlGetVCPUEvents,
		"ioctl.KVM_GET_IRQCHIP":             ioctlGetIRQChip,
		"kvm_run.immediate_exit":            runImmediateExit,
		"kvm_run.exit_reason":               runExitReason,
		"kvm_run.io":                        runUnion,
		"ioctl.KVM_RUN":                     ioctlRun,
		"ioctl.KVM_SET_USER_MEMORY_REGION":  ioctlSetUserMemoryRegion,
		"ioctl.KVM_GET_SUPPORTED_CPUID":     ioctlGetSupportedCPUID,
		"ioctl.KVM_GET_REGS":                ioctlGetRegs,
		"ioctl.KVM_SET_SREGS":               ioctlSetSRegs,
		"ioctl.KVM_SET_FPU":                 ioctlSetFPU,
		"ioctl.KVM_GET_LAPIC":               ioctlGetLAPIC,
		"ioctl.KVM_SET_CPUID2":              ioctlSetCPUID2,
		"ioctl.KVM_SET_MSRS":                ioctlSetMSRs,
		"ioctl.KVM_GET_MSRS":                ioctlGetMSRs,
		"ioctl.KVM_SET_MP_STATE":            ioctlSetMPState,
		"ioctl.KVM_IRQFD":                   ioctlIRQFD,
		"ioctl.KVM_IOEVENTFD":               ioctlIOEventFD,
		"ioctl.KVM_SIGNAL_MSI":              ioctlSignalMSI,
		"ioctl.KVM_SET_GSI_ROUTING":         ioctlSetGSIRouting,
		"ioctl.KVM_CREATE_PIT2":             ioctlCreatePIT2,
		"ioctl.KVM_IRQ_LINE":                ioctlIRQLine,
		"ioctl.KVM_GET_STATS_FD":            ioctlGetStatsFD,
		"ioctl.KVM_SET_IDENTITY_MAP_ADDR":   ioctlSetIdentityMapAddr,
		"ioctl.KVM_GET_MSR_INDEX_LIST":      ioctlGetMSRIndexList,
	}
}

// cProgram returns a C program that prints, from the kernel's own
// headers, the value of every fact named in want.
func cProgram(want map[string]uintptr) string {
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString(`#include <stdio.h>
#include <stddef.h>
#include <linux/kvm.h>
#define S(t) printf("%s %zu\n", #t, sizeof(struct t))
#define O(t, f) printf("%s.%s %zu\n", #t, #f, offsetof(struct t, f))
#define I(x) printf("ioctl.%s %lu\n", #x, (unsigned long)(x))
#define C(x) printf("cap.%s %d\n", #x, (int)(x))
int main(void) {
`)
	for _, name := range names {
		kind, rest, _ := strings.Cut(name, ".")
		switch {
		case kind == "ioctl":
			fmt.Fprintf(&b, "  I(%s);\n", rest)
		case kind == "cap":
			fmt.Fprintf(&b, "  C(%s);\n", rest)
		case rest != "":
			fmt.Fprintf(&b, "  O(%s, %s);\n", kind, rest)
		default:
			fmt.Fprintf(&b, "  S(%s);\n", kind)
		}
	}
	b.WriteString("  return 0;\n}\n")
	return b.String()
}

// TestABIMatchesKernelHeaders compiles cProgram against <linux/kvm.h> and
// compares every size, offset, ioctl and capability number with the Go
// mirrors.
func TestABIMatchesKernelHeaders(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		requireOrSkip(t, "gcc not installed: cannot compare with <linux/kvm.h>")
	}
	if _, err := os.Stat("/usr/include/linux/kvm.h"); err != nil {
		requireOrSkip(t, "<linux/kvm.h> not installed (package linux-libc-dev)")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "abi.c")
	bin := filepath.Join(dir, "abi")
	want := goLayout()
	if err := os.WriteFile(src, []byte(cProgram(want)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("gcc", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("compile: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		c, _ := strconv.ParseUint(f[1], 10, 64)
		g, ok := want[f[0]]
		if !ok {
			t.Errorf("%s: no Go counterpart", f[0])
			continue
		}
		seen++
		if uint64(g) != c {
			t.Errorf("%s: Go %d, kernel %d", f[0], g, c)
		}
	}
	if seen != len(want) {
		t.Errorf("compared %d facts, Go side has %d", seen, len(want))
	}
}

// requireOrSkip skips, or fails when GUREUM_REQUIRE_KVM=1 demands that
// every KVM-related check runs.
func requireOrSkip(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("GUREUM_REQUIRE_KVM") == "1" {
		t.Fatalf("GUREUM_REQUIRE_KVM=1 but %s", why)
	}
	t.Skip(why)
}
