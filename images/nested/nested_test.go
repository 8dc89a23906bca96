package nested

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// nestedTimeout bounds one L1 run from QEMU start to power-off. A full
// run takes about two minutes on an idle 2-core machine (docs/nested.md).
const nestedTimeout = 8 * time.Minute

func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("GUREUM_REQUIRE_KVM") == "1" {
		t.Fatalf("GUREUM_REQUIRE_KVM=1 but %s", why)
	}
	t.Skip(why + ": skipping")
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// TestNestedLinuxGuests runs the Linux-guest tests (vmm/linuxtest) inside
// L1, a Linux under QEMU TCG with an emulated SVM CPU, and reports each of
// them here as a subtest with its output. On a machine with hardware KVM
// it skips: vmm/linuxtest runs there directly.
func TestNestedLinuxGuests(t *testing.T) {
	if testing.Short() {
		t.Skip("the nested host takes minutes: skipped with -short")
	}
	if HardwareKVM() {
		t.Skip("/dev/kvm has hardware virtualization: vmm/linuxtest runs the Linux guests directly")
	}
	for _, tool := range []string{"qemu-system-x86_64", "apt-get", "dpkg-deb", "ldd"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, tool+" not found (apt packages qemu-system-x86, e2fsprogs)")
		}
	}
	if !hostHas("mkfs.ext4") || !hostHas("debugfs") {
		skipOrFail(t, "mkfs.ext4 or debugfs not found (apt package e2fsprogs)")
	}
	// GUREUM_NESTED_COUNT=N runs each test N times in the one L1 run (to
	// hunt a rare failure); the run's timeout grows with N.
	count := 1
	if c := os.Getenv("GUREUM_NESTED_COUNT"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 || n > 100 {
			t.Fatalf("GUREUM_NESTED_COUNT=%q: want a count from 1 to 100", c)
		}
		count = n
	}
	timeout := nestedTimeout * time.Duration(count)
	ctx := context.Background()
	dir := t.TempDir()
	imageCache, err := ImageCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	host, err := Prepare(ctx, HostConfig{
		RepoRoot:    repoRoot(),
		Cache:       Cache{Dir: DefaultCacheDir()},
		ImageCache:  imageCache,
		Dir:         dir,
		Flavours:    []string{"cloud", "generic"},
		TestPackage: "./vmm/linuxtest",
		TestRun:     os.Getenv("GUREUM_NESTED_RUN"),
		TestCount:   count,
		KVMTrace:    os.Getenv("GUREUM_KVM_TRACE") == "1",
		TestTimeout: timeout - time.Minute,
	}, t.Logf)
	if err != nil {
		t.Fatalf("prepare the nested host: %v", err)
	}
	cfg := RunConfig{Kernel: host.L1Kernel, Initrd: host.L1Initrd, Dir: dir, Timeout: timeout}
	if testing.Verbose() {
		// Follow L1 live (go test -v streams it), minus the heartbeat.
		cfg.Console = &withoutHeartbeat{w: os.Stdout}
	}
	runs, err := RunL1WithRetry(ctx, cfg, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	r := runs[0]
	results := ParseTestOutput(TestSection(r.Console))
	for _, res := range results {
		t.Run(res.Name, func(t *testing.T) {
			switch res.Status {
			case "PASS":
				t.Logf("passed in L1 (%s)", res.Elapsed)
			case "SKIP":
				t.Skipf("skipped in L1:\n%s", res.Output)
			case "FAIL":
				t.Fatalf("failed in L1 (%s):\n%s", res.Elapsed, res.Output)
			default:
				t.Fatalf("no result in L1 (%s):\n%s", r.Summary(), res.Output)
			}
		})
	}
	if !r.Ended || r.Status != 0 || len(results) == 0 {
		msg := "L1 run: " + r.Summary()
		if len(results) == 0 {
			msg += "; no tests reported"
		}
		if r.Registers != "" {
			msg += "\nL1 registers (QEMU monitor):\n" + r.Registers
		}
		t.Fatalf("%s\nL1 console:\n%s", msg, tail(r.Console, 200))
	}
}

// hostHas reports whether the host has the program, looking in the sbin
// folders too (they are often not on a user's PATH).
func hostHas(name string) bool {
	if _, err := exec.LookPath(name); err == nil {
		return true
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return true
		}
	}
	return false
}

// withoutHeartbeat copies whole lines to w, leaving out L1's heartbeat.
type withoutHeartbeat struct {
	w       io.Writer
	partial []byte
}

func (h *withoutHeartbeat) Write(p []byte) (int, error) {
	h.partial = append(h.partial, p...)
	for {
		i := bytes.IndexByte(h.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := h.partial[:i+1]
		if !bytes.HasPrefix(line, []byte(MarkerAlive)) {
			h.w.Write(line)
		}
		h.partial = h.partial[i+1:]
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append([]string{"[...]"}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
