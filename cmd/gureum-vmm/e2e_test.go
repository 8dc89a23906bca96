package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gureum/vmm/api"
	"gureum/vmm/vmmtest"
)

// Guest instructions are emulated one by one on machines whose KVM has no
// hardware virtualization (about 1.6 M instructions/s), so the timeouts
// here are generous; on hardware KVM everything takes milliseconds.
const bootTimeout = 90 * time.Second

func TestE2EBadFlagsGiveOneLine(t *testing.T) {
	bin := vmmtest.Bin(t, "gureum-vmm")
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, []byte("this is not a kernel at all, just some bytes"), 0o644)
	unreadable := filepath.Join(dir, "missing.elf")
	for _, c := range []struct {
		name string
		args []string
		want string
		code int
	}{
		{"no kernel", nil, "kernel is required", 2},
		{"unknown flag", []string{"--kernel", garbage, "--frobnicate"}, "frobnicate", 2},
		{"bad memory", []string{"--kernel", garbage, "--memory", "lots"}, "bad size", 2},
		{"bad cpus", []string{"--kernel", garbage, "--cpus", "0"}, "vcpus must be", 2},
		{"bad disk option", []string{"--kernel", garbage, "--disk", garbage + ",fast"}, "unknown option", 2},
		{"missing kernel", []string{"--kernel", unreadable}, "no such file", 2},
		{"garbage kernel", []string{"--kernel", garbage}, "not a bzImage or PVH ELF", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "garbage kernel" {
				vmmtest.RequireKVM(t)
			}
			cmd := exec.Command(bin, c.args...)
			out, err := cmd.CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != c.code {
				t.Fatalf("exit %v, want status %d; output %q", err, c.code, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "gureum-vmm: ") || !strings.Contains(lines[0], c.want) {
				t.Fatalf("want one line mentioning %q, got %q", c.want, out)
			}
		})
	}
}

// TestE2EBootAndPoweroff boots the test guest in the foreground with no
// devices: it must print its ready line, run its (skipped) self tests and
// power off, and the VMM must exit 0.
func TestE2EBootAndPoweroff(t *testing.T) {
	vmmtest.RequireKVM(t)
	v := vmmtest.StartVMM(t, vmmtest.Options{Args: []string{"--cmdline", "selftest", "--cpus", "2"}})
	v.WaitFor(`gureum-testguest: ready`, bootTimeout)
	v.WaitFor(`selftest done: `, bootTimeout)
	if code := v.Wait(30 * time.Second); code != 0 {
		t.Fatalf("exit status %d, want 0 (poweroff)", code)
	}
	for _, l := range v.Lines("selftest ") {
		if strings.Contains(l, ": fail") {
			t.Errorf("%s", l)
		}
	}
}

// TestE2EBlockSelftest gives the guest a raw disk; its virtio-blk self test
// writes a pattern, reads it back and compares checksums. The host then
// checks the pattern really reached the file.
func TestE2EBlockSelftest(t *testing.T) {
	vmmtest.RequireKVM(t)
	img := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.Truncate(img, 0); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(32 << 20)
	f.Close()
	v := vmmtest.StartVMM(t, vmmtest.Options{Args: []string{"--cmdline", "selftest blk.mib=4", "--disk", img}})
	m := v.WaitFor(`selftest blk: (ok|fail|skip)[^\n]*`, bootTimeout)
	if m[1] != "ok" {
		t.Fatalf("blk self test: %s", m[0])
	}
	if code := v.Wait(30 * time.Second); code != 0 {
		t.Fatalf("exit status %d, want 0", code)
	}
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	zero := true
	for _, b := range data[:4<<20] {
		if b != 0 {
			zero = false
			break
		}
	}
	if zero {
		t.Fatal("the guest's pattern did not reach the disk file")
	}
}

// TestE2ENetSelftest puts the guest on a tap in a namespace made for the
// test: the guest ARPs and pings the host side, and the host pings the guest
// and fetches its HTTP page.
func TestE2ENetSelftest(t *testing.T) {
	vmmtest.RequireKVM(t)
	ns := vmmtest.NewNetNS(t, "10.0.2.1/24")
	v := vmmtest.StartVMM(t, vmmtest.Options{
		NetNS: ns.Name,
		Args:  []string{"--cmdline", "selftest ip=10.0.2.15/24 gw=10.0.2.1 net.wait=60", "--net", ns.Tap},
	})
	v.WaitFor(`selftest net: listening`, bootTimeout)
	if out, err := ns.Exec(30*time.Second, "ping", "-c", "3", "-W", "5", "10.0.2.15"); err != nil {
		t.Fatalf("ping from the namespace: %v\n%s", err, out)
	}
	out, err := ns.Exec(30*time.Second, "curl", "-sS", "--max-time", "20", "http://10.0.2.15/")
	if err != nil || !strings.Contains(out, "gureum-testguest") {
		t.Fatalf("HTTP from the namespace: %v\n%s", err, out)
	}
	m := v.WaitFor(`selftest net: (ok|fail)[^\n]*`, bootTimeout)
	if m[1] != "ok" {
		t.Fatalf("net self test: %s", m[0])
	}
	if code := v.Wait(30 * time.Second); code != 0 {
		t.Fatalf("exit status %d, want 0", code)
	}
}

// TestE2EBurnMetrics burns vCPU 1 of 2 and reads per-vCPU busy time from the
// metrics API: vCPU 1 must be busy at least 80% of the burn and vCPU 0 (in
// HLT) at most 20%.
func TestE2EBurnMetrics(t *testing.T) {
	vmmtest.RequireKVM(t)
	v := vmmtest.StartVMM(t, vmmtest.Options{API: true, Args: []string{"--cpus", "2", "--cmdline", "selftest burn=1:6"}})
	v.WaitFor(`gureum-testguest: ready`, bootTimeout)
	c := api.NewClient(v.APISock)
	ctx := context.Background()
	// Sample every 500 ms until the burn ends; keep the samples taken
	// while the guest said it was burning.
	type sample struct {
		at        time.Time
		busy0, b1 uint64
	}
	var samples []sample
	deadline := time.Now().Add(bootTimeout)
	for time.Now().Before(deadline) {
		m, err := c.Metrics(ctx)
		if err != nil {
			break // the VMM exits when the guest powers off
		}
		if len(m.VCPUs) == 0 && strings.Contains(v.Output(), "selftest done") {
			break // powered off: the machine is gone, the API not yet
		}
		if len(m.VCPUs) != 2 {
			t.Fatalf("metrics list %d vCPUs, want 2", len(m.VCPUs))
		}
		samples = append(samples, sample{time.Now(), m.VCPUs[0].BusyNS, m.VCPUs[1].BusyNS})
		if strings.Contains(v.Output(), "selftest burn:") {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Find the busiest stretch of vCPU 1 lasting at least 3 s: the burn.
	best := -1.0
	var b0 float64
	for i := range samples {
		for j := i + 1; j < len(samples); j++ {
			wall := samples[j].at.Sub(samples[i].at)
			if wall < 3*time.Second {
				continue
			}
			r1 := float64(samples[j].b1-samples[i].b1) / float64(wall)
			if r1 > best {
				best = r1
				b0 = float64(samples[j].busy0-samples[i].busy0) / float64(wall)
			}
		}
	}
	t.Logf("over the burn: vCPU 1 busy %.0f%%, vCPU 0 busy %.0f%% (%d samples)", best*100, b0*100, len(samples))
	if best < 0.8 {
		t.Errorf("vCPU 1 busy %.0f%% during its burn, want >= 80%%", best*100)
	}
	if b0 > 0.2 {
		t.Errorf("vCPU 0 busy %.0f%% while idle, want <= 20%%", b0*100)
	}
	v.WaitFor(`selftest burn: ok`, bootTimeout)
}

// TestE2ELifecycle drives service mode: pause stops the guest's progress
// and resume restarts it, reboot boots it again in place, and a graceful
// shutdown (Ctrl-Alt-Del) ends in a guest poweroff.
func TestE2ELifecycle(t *testing.T) {
	vmmtest.RequireKVM(t)
	consoleSock := filepath.Join(t.TempDir(), "console.sock")
	v := vmmtest.StartVMM(t, vmmtest.Options{API: true, Args: []string{"--cpus", "1", "--console-sock", consoleSock}})
	c := api.NewClient(v.APISock)
	ctx := context.Background()
	v.WaitFor(`gureum-testguest: ready`, bootTimeout)
	waitState := func(want string) api.VMInfo {
		t.Helper()
		var info api.VMInfo
		for i := 0; i < 100; i++ {
			var err error
			info, err = c.VM(ctx)
			if err == nil && info.State == want {
				return info
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("state %q, want %q", info.State, want)
		return info
	}
	waitState("running")

	act := func(a string) error { return c.Action(ctx, api.ActionRequest{Action: a, TimeoutMS: 60000}) }
	if err := act("pause"); err != nil {
		t.Fatal(err)
	}
	waitState("paused")
	if err := act("pause"); err == nil || !strings.Contains(err.Error(), api.CodeIncorrectState) {
		t.Fatalf("pause while paused: %v, want %s", err, api.CodeIncorrectState)
	}
	before := v.Metrics(t, c)
	time.Sleep(time.Second)
	after := v.Metrics(t, c)
	if d := after.VCPUs[0].CPUTimeNS - before.VCPUs[0].CPUTimeNS; d > uint64(50*time.Millisecond) {
		t.Errorf("paused vCPU used %v of CPU in 1 s", time.Duration(d))
	}
	if err := act("resume"); err != nil {
		t.Fatal(err)
	}
	waitState("running")

	// Attach to the console socket: the second boot's output must arrive
	// there too.
	conn, err := net.Dial("unix", consoleSock)
	if err != nil {
		t.Fatalf("attach console: %v", err)
	}
	defer conn.Close()
	attached := make(chan string, 1)
	go func() {
		var seen []byte
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(bootTimeout))
		for {
			n, err := conn.Read(buf)
			seen = append(seen, buf[:n]...)
			if strings.Contains(string(seen), "gureum-testguest: ready") || err != nil {
				attached <- string(seen)
				return
			}
		}
	}()
	if err := act("reboot"); err != nil {
		t.Fatal(err)
	}
	if got := <-attached; !strings.Contains(got, "gureum-testguest: ready") {
		t.Fatalf("console socket saw %q, want the ready line of the second boot", got)
	}
	for i := 0; strings.Count(v.Output(), "gureum-testguest: ready") < 2; i++ {
		if i > int(bootTimeout/(100*time.Millisecond)) {
			t.Fatal("the guest did not come up again after reboot")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if info := waitState("running"); info.BootCount != 2 {
		t.Fatalf("boot_count %d after one reboot, want 2", info.BootCount)
	}

	if err := act("shutdown"); err != nil {
		t.Fatal(err)
	}
	v.WaitFor(`ctrl-alt-del`, bootTimeout)
	if code := v.Wait(bootTimeout); code != 0 {
		t.Fatalf("exit status %d after graceful shutdown, want 0 (poweroff)", code)
	}
}

// TestE2EActionDuringReboot sends a shutdown at once after a reboot, while
// the VMM is between the old machine and the new one: the action must
// wait for the new machine and act on it (the VMM once dereferenced the
// missing machine and crashed). The test guest may miss a Ctrl-Alt-Del
// pressed before it set up its keyboard, so the end is a poweroff (0) or
// the deadline's stop (4), never a crash.
func TestE2EActionDuringReboot(t *testing.T) {
	vmmtest.RequireKVM(t)
	v := vmmtest.StartVMM(t, vmmtest.Options{API: true, Args: []string{"--cpus", "1"}})
	c := api.NewClient(v.APISock)
	ctx := context.Background()
	v.WaitFor(`gureum-testguest: ready`, bootTimeout)
	if err := c.Action(ctx, api.ActionRequest{Action: "reboot"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Action(ctx, api.ActionRequest{Action: "shutdown", TimeoutMS: 2000}); err != nil {
		t.Fatalf("shutdown right after reboot: %v", err)
	}
	if code := v.Wait(bootTimeout); code != 0 && code != 4 {
		t.Fatalf("exit status %d, want 0 (poweroff) or 4 (stopped at the deadline)\n%s", code, v.Output())
	}
}
