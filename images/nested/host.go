package nested

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// HardwareKVM reports whether /dev/kvm is backed by hardware
// virtualization (the kvm_amd or kvm_intel module is loaded), so that a
// stock Linux guest can run on it directly. On the PVM machines we
// develop on, KVM runs guests without VT-x/AMD-V (module kvm_pvm), which
// a stock kernel cannot boot on: there the Linux-guest tests go through
// the nested host instead.
func HardwareKVM() bool {
	for _, m := range []string{"kvm_amd", "kvm_intel"} {
		if _, err := os.Stat("/sys/module/" + m); err == nil {
			return true
		}
	}
	return false
}

// Paths inside L1, and the environment the Linux-guest tests read there.
const (
	l1BinDir    = "/gureum/bin"
	l1Test      = "/gureum/linux.test"
	l1GuestsDir = "/l2"
	// l1DebugfsPath is where L1 has debugfs; the tests look there.
	l1DebugfsPath = "/usr/sbin/debugfs"

	// EnvGuests names the folder with the guests (ReadGuests).
	EnvGuests = "GUREUM_LINUX_GUESTS"
	// EnvInsideL1 is "1" inside the nested host: the tests then put
	// their taps in L1's root namespace (busybox has no `ip netns`; L1 is
	// a private VM, so nothing leaves it).
	EnvInsideL1 = "GUREUM_NESTED_HOST"
)

// HostConfig says what to build for one nested run.
type HostConfig struct {
	RepoRoot    string   // the gureum module
	Cache       Cache    // Debian packages for L1 (its kernel, modules, busybox)
	ImageCache  string   // the default image's cache (ImageCacheDir)
	Dir         string   // scratch folder for binaries, guests and the L1 initramfs
	Flavours    []string // guest kernels to test: "cloud", "generic"
	TestPackage string   // the Linux-guest tests, e.g. ./vmm/linuxtest
	TestRun     string   // -test.run pattern inside L1 ("" for all)
	TestCount   int      // -test.count inside L1 (0 or 1: once)
	// KVMTrace has L1's tests record KVM's trace events and log their
	// tail when they fail (vmmtest.EnvKVMTrace). Off by default: with it
	// L1 froze or reset in most runs.
	KVMTrace bool
	// TestTimeout is go test's -test.timeout inside L1: a hung test
	// makes the binary panic with every goroutine's stack instead of
	// silently eating the host's budget.
	TestTimeout time.Duration
}

// Host is a prepared nested host: boot L1Kernel with L1Initrd.
type Host struct {
	L1Kernel string
	L1Initrd string
}

// Prepare fetches the Debian packages for L1, builds (or finds in the
// cache) the default image for the L2 guests, builds static gureum
// binaries and the Linux-guest test binary, and writes L1's initramfs.
// Progress goes to logf.
func Prepare(ctx context.Context, cfg HostConfig, logf func(string, ...any)) (Host, error) {
	start := time.Now()
	busybox, err := cfg.Cache.Busybox()
	if err != nil {
		return Host{}, err
	}
	files := map[string]string{}
	guests, err := DefaultImageGuests(ctx, cfg.ImageCache, cfg.Flavours, logWriter(logf))
	if err != nil {
		return Host{}, err
	}
	packed, err := addGuests(guests, files, cfg.Dir)
	if err != nil {
		return Host{}, err
	}
	logf("default image: %s, root disk packed to %d KiB", filepath.Dir(guests[0].RootDisk), packed>>10)
	// The tests read back what a guest wrote to its disk with debugfs,
	// which L1 (busybox only) lacks: the host's copy goes in, with the
	// shared libraries it needs.
	if err := addHostProgram(ctx, "debugfs", l1DebugfsPath, files); err != nil {
		return Host{}, err
	}
	// L1 always runs the cloud kernel: it is small and boots fastest.
	l1Kernel, err := cfg.Cache.Kernel("cloud")
	if err != nil {
		return Host{}, err
	}

	bin := filepath.Join(cfg.Dir, "bin")
	// Static binaries (CGO_ENABLED=0): L1 has no C library.
	// gureum-vmm is what the tests run; the gureum CLI is only a
	// convenience for poking at a VMM inside L1, so failing to build it
	// is logged, not fatal.
	for _, c := range []struct {
		out, pkg string
		needed   bool
	}{
		{filepath.Join(bin, "gureum-vmm"), "./cmd/gureum-vmm", true},
		{filepath.Join(bin, "gureum"), "./cmd/gureum", false},
	} {
		if err := goCommand(ctx, cfg.RepoRoot, "build", "-o", c.out, c.pkg); err != nil {
			if c.needed {
				return Host{}, err
			}
			logf("L1 goes without %s: %v", filepath.Base(c.out), err)
			continue
		}
		files[filepath.Join(l1BinDir, filepath.Base(c.out))] = c.out
	}
	testBin := filepath.Join(cfg.Dir, "linux.test")
	if err := goCommand(ctx, cfg.RepoRoot, "test", "-c", "-o", testBin, cfg.TestPackage); err != nil {
		return Host{}, err
	}
	files[l1Test] = testBin

	args := []string{fmt.Sprintf("-test.timeout=%s", cfg.TestTimeout)}
	if cfg.TestRun != "" {
		args = append(args, "-test.run="+cfg.TestRun)
	}
	if cfg.TestCount > 1 {
		args = append(args, fmt.Sprintf("-test.count=%d", cfg.TestCount))
	}
	l1 := L1Config{
		Kernel: l1Kernel, Busybox: busybox, Files: files,
		Test: l1Test, TestArgs: args,
		Env: map[string]string{
			"PATH":               "/bin",
			"HOME":               "/root",
			"TMPDIR":             "/tmp",
			"GUREUM_BIN":         l1BinDir,
			EnvGuests:            l1GuestsDir,
			EnvInsideL1:          "1",
			"GUREUM_REQUIRE_KVM": "1",
		},
	}
	if cfg.KVMTrace {
		l1.Env["GUREUM_KVM_TRACE"] = "1" // vmmtest.EnvKVMTrace
	}
	h := Host{L1Kernel: l1Kernel.Vmlinuz, L1Initrd: filepath.Join(cfg.Dir, "l1-initramfs.cpio")}
	if err := BuildL1(l1, h.L1Initrd); err != nil {
		return Host{}, err
	}
	if st, err := os.Stat(h.L1Initrd); err == nil {
		logf("nested host prepared in %.1fs: L1 initramfs %d MiB", time.Since(start).Seconds(), st.Size()>>20)
	}
	return h, nil
}

// goCommand runs the go tool in the module root with cgo off.
func goCommand(ctx context.Context, root string, args ...string) error {
	goTool := "go"
	if p := os.Getenv("GO"); p != "" {
		goTool = p
	}
	cmd := exec.CommandContext(ctx, goTool, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// addHostProgram adds the host's program name to L1's files at inside,
// with the shared libraries and the dynamic loader it needs at the paths
// where the host has them (as `ldd` lists them), so that it runs in L1,
// which has no C library of its own.
func addHostProgram(ctx context.Context, name, inside string, files map[string]string) error {
	prog, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			if st, serr := os.Stat(filepath.Join(dir, name)); serr == nil && st.Mode()&0o111 != 0 {
				prog, err = filepath.Join(dir, name), nil
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("%s not found on the host (apt package e2fsprogs): %w", name, err)
	}
	out, err := exec.CommandContext(ctx, "ldd", prog).Output()
	if err != nil {
		return fmt.Errorf("ldd %s: %w", prog, err)
	}
	files[inside] = prog
	for _, line := range strings.Split(string(out), "\n") {
		// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
		// "/lib64/ld-linux-x86-64.so.2 (0x...)"; linux-vdso has no file.
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == "=>" && filepath.IsAbs(f[2]) {
			files[f[2]] = f[2]
		} else if len(f) >= 1 && filepath.IsAbs(f[0]) {
			files[f[0]] = f[0]
		}
	}
	return nil
}

// logWriter turns lines written to it into calls of logf (for the image
// build's progress).
func logWriter(logf func(string, ...any)) io.Writer {
	return lineLogger{logf}
}

type lineLogger struct{ logf func(string, ...any) }

func (l lineLogger) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			l.logf("%s", line)
		}
	}
	return len(p), nil
}
