// Package vmmtest runs real gureum-vmm processes with real guests for
// end-to-end tests: it finds (or builds) the binaries and the test guest,
// starts the VMM, watches its console for lines, and makes network
// namespaces with a tap for guests to talk to. Everything it creates is
// removed by t.Cleanup, also when the test fails.
package vmmtest

import (
	"context"

	"bufio"
	"bytes"
	"fmt"
	"gureum/vmm/api"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gureum/vmm/kvm"
)

// RequireKVM skips the test when /dev/kvm is unusable, or fails it when
// GUREUM_REQUIRE_KVM=1 says every KVM test must run.
func RequireKVM(t testing.TB) {
	t.Helper()
	if err := kvm.Available(); err != nil {
		skipOrFail(t, fmt.Sprintf("/dev/kvm not usable (%v)", err))
	}
}

// RequireRoot skips (or fails under GUREUM_REQUIRE_KVM=1) without root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root (network namespaces, taps)")
	}
}

func skipOrFail(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("GUREUM_REQUIRE_KVM") == "1" {
		t.Fatalf("GUREUM_REQUIRE_KVM=1 but %s", why)
	}
	t.Skip(why + ": skipping")
}

// repoRoot finds the module root from this source file's location.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Bin returns the path of a built artifact: gureum, gureum-vmm or
// testguest.elf. It uses $GUREUM_BIN (set by `make test`) when that holds
// the file, and otherwise builds everything once with `make build`.
func Bin(t testing.TB, name string) string {
	t.Helper()
	if d := os.Getenv("GUREUM_BIN"); d != "" {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	buildOnce.Do(func() {
		root := repoRoot()
		out, err := exec.Command("make", "-C", root, "build").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("make build: %v\n%s", err, out)
			return
		}
		binDir = filepath.Join(root, "bin")
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

// VMM is a running gureum-vmm process.
type VMM struct {
	t       testing.TB
	cmd     *exec.Cmd
	mu      sync.Mutex
	console bytes.Buffer
	grew    chan struct{}
	exited  chan struct{}
	err     error
	// APISock is the API socket path when started with API.
	APISock string
}

// Options configure StartVMM.
type Options struct {
	Args  []string // gureum-vmm flags (kernel defaults to the test guest)
	API   bool     // start in service mode with a socket in a temp dir
	NetNS string   // run inside this network namespace (ip netns exec)
}

// StartVMM starts gureum-vmm with the test guest unless Args name a kernel.
// The process is killed (by PID) at cleanup if still running.
func StartVMM(t testing.TB, o Options) *VMM {
	t.Helper()
	args := append([]string(nil), o.Args...)
	if !hasFlag(args, "--kernel") {
		args = append([]string{"--kernel", Bin(t, "testguest.elf")}, args...)
	}
	v := &VMM{t: t, grew: make(chan struct{}, 1), exited: make(chan struct{})}
	if o.API {
		v.APISock = filepath.Join(t.TempDir(), "vmm.sock")
		args = append(args, "--api-sock", v.APISock, "--console-log", "-")
	}
	bin := Bin(t, "gureum-vmm")
	if o.NetNS != "" {
		args = append([]string{"netns", "exec", o.NetNS, bin}, args...)
		bin = "ip"
	}
	var trace *kvmTrace
	if os.Getenv(EnvKVMTrace) == "1" {
		trace = startKVMTrace(t)
	}
	v.cmd = exec.Command(bin, args...)
	pr, pw := io.Pipe()
	v.cmd.Stdout = pw
	v.cmd.Stderr = pw
	v.cmd.Stdin = nil
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := v.cmd.Start(); err != nil {
		t.Fatalf("start gureum-vmm: %v", err)
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := pr.Read(buf)
			v.mu.Lock()
			v.console.Write(buf[:n])
			v.mu.Unlock()
			select {
			case v.grew <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		v.err = v.cmd.Wait()
		pw.Close()
		close(v.exited)
	}()
	t.Cleanup(func() {
		if trace != nil {
			// Before the SIGQUIT below: its kicks are not the guest's.
			trace.stop()
		}
		select {
		case <-v.exited:
		default:
			if t.Failed() {
				// The test failed with the VMM still running: SIGQUIT
				// makes gureum-vmm print the machine's state and every
				// goroutine's stack before it exits, which tells a VMM
				// stuck somewhere from a guest that waits for it or
				// does not get on by itself.
				v.cmd.Process.Signal(syscall.SIGQUIT)
				select {
				case <-v.exited:
				case <-time.After(15 * time.Second):
				}
			}
			v.cmd.Process.Kill()
			<-v.exited
		}
		if t.Failed() {
			t.Logf("gureum-vmm %s\nconsole and stderr:\n%s", strings.Join(args, " "), v.Output())
			if trace != nil {
				t.Logf("KVM trace events, the last %d:\n%s", traceTailLines, trace.tail())
			}
		}
	})
	return v
}

func hasFlag(args []string, f string) bool {
	for _, a := range args {
		if a == f || strings.HasPrefix(a, f+"=") {
			return true
		}
	}
	return false
}

// Output returns everything the VMM printed so far (console and stderr).
func (v *VMM) Output() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.console.String()
}

// WaitFor waits until the output matches re, and returns the first match.
// It fails the test on timeout or if the VMM exits first.
func (v *VMM) WaitFor(re string, timeout time.Duration) []string {
	v.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(timeout)
	for {
		if m := rx.FindStringSubmatch(v.Output()); m != nil {
			return m
		}
		select {
		case <-v.grew:
		case <-v.exited:
			if m := rx.FindStringSubmatch(v.Output()); m != nil {
				return m
			}
			v.t.Fatalf("gureum-vmm exited (%v) before printing %q", v.err, re)
		case <-deadline:
			v.t.Fatalf("timed out after %v waiting for %q", timeout, re)
		}
	}
}

// Wait waits for the process to exit and returns its exit status.
func (v *VMM) Wait(timeout time.Duration) int {
	v.t.Helper()
	select {
	case <-v.exited:
	case <-time.After(timeout):
		v.t.Fatalf("gureum-vmm did not exit within %v", timeout)
	}
	if v.err == nil {
		return 0
	}
	if ee, ok := v.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	v.t.Fatalf("wait: %v", v.err)
	return -1
}

// Lines returns the output's lines that start with prefix.
func (v *VMM) Lines(prefix string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(v.Output()))
	for sc.Scan() {
		if l := strings.TrimRight(sc.Text(), "\r"); strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// NetNS is a network namespace made for one test, holding a tap whose host
// side has HostIP/24. Nothing in it reaches the root namespace.
type NetNS struct {
	Name   string
	Tap    string
	HostIP string
}

// NewNetNS creates a namespace with a persistent tap and the host address
// on it, and removes both at cleanup.
func NewNetNS(t testing.TB, hostCIDR string) *NetNS {
	t.Helper()
	RequireRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		skipOrFail(t, "iproute2 (ip) not installed")
	}
	name := fmt.Sprintf("gureum-t%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	n := &NetNS{Name: name, Tap: "gtap0", HostIP: strings.Split(hostCIDR, "/")[0]}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	run("-n", name, "link", "set", "lo", "up")
	run("-n", name, "tuntap", "add", "dev", n.Tap, "mode", "tap", "vnet_hdr")
	run("-n", name, "addr", "add", hostCIDR, "dev", n.Tap)
	run("-n", name, "link", "set", n.Tap, "up")
	return n
}

// Exec runs a command inside the namespace and returns its combined output.
func (n *NetNS) Exec(timeout time.Duration, name string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name, "timeout", fmt.Sprint(int(timeout.Seconds())), name}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Metrics fetches the VMM's metrics or fails the test.
func (v *VMM) Metrics(t testing.TB, c interface {
	Metrics(context.Context) (api.Metrics, error)
}) api.Metrics {
	t.Helper()
	m, err := c.Metrics(context.Background())
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	return m
}
