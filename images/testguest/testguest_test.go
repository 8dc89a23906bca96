// Package testguest_test builds the freestanding test guest and checks it:
// its ELF carries a PVH entry note and none of the instructions KVM's
// emulator cannot run, and under QEMU microvm its self tests pass. The
// gureum-vmm end-to-end tests run the same guest on gureum's own VMM.
package testguest_test

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	builtELF  string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// guestELF builds the guest once per test binary with the Makefile the
// top-level build uses, and returns the ELF's path.
func guestELF(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"make", "gcc", "ld"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("building the test guest needs %s: %v", tool, err)
		}
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "testguest-build-")
		if buildErr != nil {
			return
		}
		builtELF = filepath.Join(buildDir, "testguest.elf")
		out, err := exec.Command("make", "-s", "OUT="+builtELF).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("make: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build test guest: %v", buildErr)
	}
	return builtELF
}

// skipOrFail skips a test that lacks KVM or root, or fails it when
// GUREUM_REQUIRE_KVM=1 demands that every such test runs.
func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("GUREUM_REQUIRE_KVM") == "1" {
		t.Fatalf("GUREUM_REQUIRE_KVM=1 but %s", why)
	}
	t.Skip(why)
}

func requireKVM(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		skipOrFail(t, fmt.Sprintf("/dev/kvm not usable: %v", err))
		return
	}
	f.Close()
}

func requireQEMU(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
}

func TestELFHasPVHEntryNote(t *testing.T) {
	path := guestELF(t)
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer f.Close()
	var entry uint64
	found := false
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data := make([]byte, p.Filesz)
		if _, err := p.ReadAt(data, 0); err != nil {
			t.Fatalf("read note segment: %v", err)
		}
		for len(data) >= 12 {
			namesz := binary.LittleEndian.Uint32(data[0:])
			descsz := binary.LittleEndian.Uint32(data[4:])
			typ := binary.LittleEndian.Uint32(data[8:])
			nameEnd := 12 + (namesz+3)&^3
			descEnd := nameEnd + (descsz+3)&^3
			if uint32(len(data)) < descEnd {
				break
			}
			name := string(bytes.TrimRight(data[12:12+namesz], "\x00"))
			if name == "Xen" && typ == 18 {
				switch descsz {
				case 4:
					entry = uint64(binary.LittleEndian.Uint32(data[nameEnd:]))
				case 8:
					entry = binary.LittleEndian.Uint64(data[nameEnd:])
				default:
					t.Fatalf("PVH entry note has %d-byte descriptor", descsz)
				}
				found = true
			}
			data = data[descEnd:]
		}
	}
	if !found {
		t.Fatal("no XEN_ELFNOTE_PHYS32_ENTRY (18) note")
	}
	if entry != f.Entry {
		t.Errorf("PVH entry 0x%x, ELF entry 0x%x: want equal", entry, f.Entry)
	}
	inText := false
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && entry >= p.Paddr && entry < p.Paddr+p.Filesz {
			inText = true
		}
	}
	if !inText {
		t.Errorf("PVH entry 0x%x is not in an executable PT_LOAD segment", entry)
	}
}

// TestNoEmulatorHostileInstructions disassembles the guest: KVM's
// instruction emulator (all a PVM host offers) cannot run these, and the
// guest saves no SSE/x87 state, so none may appear.
func TestNoEmulatorHostileInstructions(t *testing.T) {
	path := guestELF(t)
	if _, err := exec.LookPath("objdump"); err != nil {
		t.Skipf("objdump not installed: %v", err)
	}
	out, err := exec.Command("objdump", "-d", "--no-show-raw-insn", path).Output()
	if err != nil {
		t.Fatalf("objdump: %v", err)
	}
	bad := regexp.MustCompile(`\t(int3|cmpxchg16b|xsave\w*|xrstor\w*|fwait|wait|fxsave\w*|fxrstor\w*|f[a-z]+)\b|%[xyz]mm[0-9]|%mm[0-7]`)
	for _, line := range strings.Split(string(out), "\n") {
		if bad.MatchString(line) {
			t.Errorf("forbidden instruction: %s", strings.TrimSpace(line))
		}
	}
}

// runQEMU boots the guest on QEMU microvm and returns its console output.
func runQEMU(t *testing.T, cmdline string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	args := append([]string{
		"-M", "microvm,pcie=on,rtc=on", "-enable-kvm", "-cpu", "host,-arch-capabilities",
		"-m", "128", "-smp", "2", "-nographic", "-no-reboot",
		"-kernel", guestELF(t), "-append", cmdline,
	}, extra...)
	out, err := exec.CommandContext(ctx, "qemu-system-x86_64", args...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("QEMU did not power off within 3 minutes; console:\n%s", out)
	}
	if err != nil {
		t.Fatalf("QEMU: %v; console:\n%s", err, out)
	}
	return string(out)
}

func requireLines(t *testing.T, out string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if !regexp.MustCompile(`(?m)^` + p + `\r?$`).MatchString(out) {
			t.Errorf("console lacks a line matching %q; console:\n%s", p, out)
		}
	}
}

func TestSelftestOnQEMUMicrovm(t *testing.T) {
	requireKVM(t)
	requireQEMU(t)
	disk := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(disk, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 16<<20); err != nil {
		t.Fatal(err)
	}
	out := runQEMU(t, "selftest blk.mib=2 burn=1:1",
		"-drive", "file="+disk+",format=raw,if=none,id=d0", "-device", "virtio-blk-pci,drive=d0,serial=tg-disk")
	requireLines(t, out,
		`gureum-testguest: ready`,
		`selftest blk: ok capacity 16777216 bytes, wrote 2097152 bytes in 2 requests .*id tg-disk`,
		`selftest net: skip no device`,
		`selftest burn: ok cpus=1 seconds=1 elapsed_ms=1[0-9]{3}`,
		`selftest done: 2 ok, 0 fail, 1 skip`)
	// The pattern must really be on the disk: page 1 starts with its stamp.
	data, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := binary.LittleEndian.Uint64(data[4096:]), uint64(4096^0x6775727565756d00); got != want {
		t.Errorf("disk offset 4096 holds 0x%x, want stamp 0x%x", got, want)
	}
}

func TestReadOnlyDiskOnQEMUMicrovm(t *testing.T) {
	requireKVM(t)
	requireQEMU(t)
	disk := filepath.Join(t.TempDir(), "ro.img")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o400); err != nil {
		t.Fatal(err)
	}
	out := runQEMU(t, "selftest",
		"-drive", "file="+disk+",format=raw,if=none,id=d0,readonly=on",
		"-device", "virtio-blk-pci,drive=d0,disable-legacy=on")
	requireLines(t, out,
		`selftest blk: ok read-only disk, capacity 1048576 bytes, read 1048576 bytes in 1 requests .*`,
		`selftest done: 1 ok, 0 fail, 2 skip`)
}

// TestNetworkOnQEMUMicrovm runs run-qemu.sh, which puts the guest's tap in
// a network namespace of its own and pings and fetches the guest once it
// listens.
func TestNetworkOnQEMUMicrovm(t *testing.T) {
	requireKVM(t)
	requireQEMU(t)
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root for the network namespace and tap")
	}
	for _, tool := range []string{"ip", "ping", "curl", "bc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("run-qemu.sh needs %s", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := fmt.Sprintf("tgtest-go-%d", os.Getpid())
	out, err := exec.CommandContext(ctx, "./run-qemu.sh", "-k", guestELF(t), "-n", ns, "-t", "150", "--",
		"selftest", "net.wait=60", "name=web-1").CombinedOutput()
	if err != nil {
		t.Fatalf("run-qemu.sh: %v\n%s", err, out)
	}
	requireLines(t, string(out),
		`selftest net: listening`,
		`run-qemu.sh: ping 10.0.0.2 ok`,
		`gureum-testguest 10.0.0.2 web-1`,
		`selftest net: ok arp=1 ping=3/3 served_icmp=[1-9][0-9]* served_http=[1-9][0-9]*`)
	if exec.Command("ip", "netns", "pids", ns).Run() == nil {
		t.Errorf("network namespace %s left behind", ns)
	}
}
