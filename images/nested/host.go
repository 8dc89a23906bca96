package nested

import (
	"context"
	"fmt"
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

	// EnvGuests names the folder with one sub-folder per guest
	// (GuestKernelFile, GuestInitrdFile, GuestDiskFile in each).
	EnvGuests = "GUREUM_LINUX_GUESTS"
	// EnvInsideL1 is "1" inside the nested host: the tests then put
	// their taps in L1's root namespace (busybox has no `ip netns`; L1 is
	// a private VM, so nothing leaves it).
	EnvInsideL1 = "GUREUM_NESTED_HOST"
)

// HostConfig says what to build for one nested run.
type HostConfig struct {
	RepoRoot    string   // the gureum module
	Cache       Cache    // Debian packages
	Dir         string   // scratch folder for binaries, guests and the L1 initramfs
	Flavours    []string // guest kernels to test: "cloud", "generic"
	TestPackage string   // the Linux-guest tests, e.g. ./vmm/linuxtest
	TestRun     string   // -test.run pattern inside L1 ("" for all)
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

// Prepare fetches the Debian packages, builds static gureum binaries and
// the Linux-guest test binary, the guests, and L1's initramfs.
func Prepare(ctx context.Context, cfg HostConfig, logf func(string, ...any)) (Host, error) {
	start := time.Now()
	busybox, err := cfg.Cache.Busybox()
	if err != nil {
		return Host{}, err
	}
	files := map[string]string{}
	var l1Kernel Kernel
	for _, fl := range cfg.Flavours {
		k, err := cfg.Cache.Kernel(fl)
		if err != nil {
			return Host{}, err
		}
		g, err := BuildGuest(k, busybox, filepath.Join(cfg.Dir, "l2", fl), 16)
		if err != nil {
			return Host{}, err
		}
		for _, f := range []string{g.Kernel, g.Initrd, g.RootDisk} {
			files[filepath.Join(l1GuestsDir, fl, filepath.Base(f))] = f
		}
	}
	// L1 always runs the cloud kernel: it is small and boots fastest.
	if l1Kernel, err = cfg.Cache.Kernel("cloud"); err != nil {
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
