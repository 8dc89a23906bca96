package linuxtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gureum/images/nested"
	"gureum/network/tap"
	"gureum/vmm/api"
	"gureum/vmm/vmmtest"
)

// guestTimeout bounds each guest from start to power-off. The generic
// kernel needs about 25 s to reach userspace inside the nested host (every
// L2 instruction that exits runs through two layers of emulation); on
// hardware KVM it takes about a second.
const guestTimeout = 150 * time.Second

// baseCmdline keeps the console quiet: every serial byte is several VM
// exits, and the guests report through crit-level kernel messages, which
// "quiet loglevel=3" still prints. The rest a stock kernel needs
// (console=ttyS0, reboot=acpi, panic=-1) the VMM adds itself
// (boot.LinuxCmdline); these tests leave it to the VMM on purpose.
const baseCmdline = "quiet loglevel=3"

// Addresses on the test network between the host side of the tap and eth0.
const (
	hostCIDR  = "10.0.2.1/24"
	guestIP   = "10.0.2.15"
	guestCIDR = guestIP + "/24"
)

var (
	guestsOnce sync.Once
	guestList  []nested.Guest
	guestsErr  error
)

// guests returns the guests to boot, one per kernel flavour. It skips the
// test when /dev/kvm cannot boot a stock kernel and no nested host set
// GUREUM_LINUX_GUESTS: the nested host (images/nested) covers that case
// and fails under GUREUM_REQUIRE_KVM=1 when it cannot run.
func guests(t *testing.T) []nested.Guest {
	t.Helper()
	dir := os.Getenv(nested.EnvGuests)
	if dir == "" && !nested.HardwareKVM() {
		t.Skip("/dev/kvm has no hardware virtualization (PVM?): stock Linux guests run through the nested host instead (make e2e-nested, images/nested)")
	}
	vmmtest.RequireKVM(t)
	guestsOnce.Do(func() {
		if dir != "" {
			guestList, guestsErr = readGuests(dir)
			return
		}
		guestList, guestsErr = buildGuests()
	})
	if guestsErr != nil {
		t.Fatal(guestsErr)
	}
	return guestList
}

// readGuests lists the guest folders the nested host prepared.
func readGuests(dir string) ([]nested.Guest, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", nested.EnvGuests, err)
	}
	var gs []nested.Guest
	for _, e := range entries {
		d := filepath.Join(dir, e.Name())
		gs = append(gs, nested.Guest{Name: e.Name(),
			Kernel:   filepath.Join(d, nested.GuestKernelFile),
			Initrd:   filepath.Join(d, nested.GuestInitrdFile),
			RootDisk: filepath.Join(d, nested.GuestDiskFile)})
	}
	if len(gs) == 0 {
		return nil, fmt.Errorf("%s=%s holds no guests", nested.EnvGuests, dir)
	}
	return gs, nil
}

// buildGuests makes the guests on a hardware-KVM machine, from the same
// Debian packages the nested host uses. They live until the process ends.
func buildGuests() ([]nested.Guest, error) {
	c := nested.Cache{Dir: nested.DefaultCacheDir()}
	bb, err := c.Busybox()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "gureum-linuxtest-")
	if err != nil {
		return nil, err
	}
	var gs []nested.Guest
	for _, fl := range []string{"cloud", "generic"} {
		k, err := c.Kernel(fl)
		if err != nil {
			return nil, err
		}
		g, err := nested.BuildGuest(k, bb, filepath.Join(dir, fl), 16)
		if err != nil {
			return nil, err
		}
		gs = append(gs, g)
	}
	return gs, nil
}

// freshDisk copies the guest's root disk so each boot starts clean and the
// test can inspect what the guest wrote.
func freshDisk(t *testing.T, g nested.Guest) string {
	t.Helper()
	data, err := os.ReadFile(g.RootDisk)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "root.img")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// guestArgs are the gureum-vmm flags for booting g from disk with 2 vCPUs.
func guestArgs(g nested.Guest, disk, cmdline string) []string {
	return []string{"--kernel", g.Kernel, "--initrd", g.Initrd, "--disk", disk,
		"--cpus", "2", "--memory", "512M", "--no-reboot",
		"--cmdline", baseCmdline + " " + cmdline}
}

// guestNet is the tap eth0 is plugged into and a way to reach the guest.
type guestNet struct {
	tap string
	ns  *vmmtest.NetNS // nil inside the nested host
}

// newGuestNet makes the tap. Inside the nested host it goes into L1's
// root namespace, which is private to this test VM; elsewhere into a
// namespace of its own, so no test traffic touches the real host's network.
func newGuestNet(t *testing.T) guestNet {
	t.Helper()
	if os.Getenv(nested.EnvInsideL1) != "1" {
		ns := vmmtest.NewNetNS(t, hostCIDR)
		return guestNet{tap: ns.Tap, ns: ns}
	}
	name, err := tap.Create("gureum-l2")
	if err != nil {
		t.Fatalf("create tap: %v", err)
	}
	t.Cleanup(func() { tap.Destroy(name) })
	for _, args := range [][]string{{"addr", "add", hostCIDR, "dev", name}, {"link", "set", name, "up"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return guestNet{tap: name}
}

// get fetches http://guestIP/path from the host side of the tap.
func (n guestNet) get(t *testing.T, path string) string {
	t.Helper()
	if n.ns != nil {
		out, err := n.ns.Exec(30*time.Second, "curl", "-sS", "--max-time", "20", "http://"+guestIP+path)
		if err != nil {
			t.Fatalf("HTTP GET from the namespace: %v\n%s", err, out)
		}
		return out
	}
	c := http.Client{Timeout: 20 * time.Second}
	resp, err := c.Get("http://" + guestIP + path)
	if err != nil {
		t.Fatalf("HTTP GET http://%s%s: %v", guestIP, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("HTTP GET http://%s%s: %v", guestIP, path, err)
	}
	return string(body)
}

// readyLine is what the guest's boot script reports once it is up.
const readyLine = `gureum-guest: ready kernel=(\S+) cpus=(\d+) root=(\S+) eth0=(\S*) written=(\S*)\r?\n`

// TestLinuxBoot boots each kernel with its root on virtio-blk and eth0 on
// virtio-net: the guest must see 2 CPUs and /dev/vda as root, answer HTTP
// on its static address, write and sync a file that is found in the disk
// image afterwards, and power off when asked over HTTP, which ends the VMM
// with status 0.
func TestLinuxBoot(t *testing.T) {
	for _, g := range guests(t) {
		t.Run(g.Name, func(t *testing.T) {
			disk := freshDisk(t, g)
			n := newGuestNet(t)
			word := fmt.Sprintf("gureum-written-%d", time.Now().UnixNano())
			args := guestArgs(g, disk, "gureum.ip="+guestCIDR+" gureum.write="+word)
			args = append(args, "--net", n.tap)
			start := time.Now()
			v := vmmtest.StartVMM(t, vmmtest.Options{Args: args, NetNS: nsName(n)})
			m := v.WaitFor(readyLine, guestTimeout)
			t.Logf("%s ready after %.1fs: %s", g.Name, time.Since(start).Seconds(), m[0])
			if strings.HasSuffix(m[1], "-cloud-amd64") != (g.Name == "cloud") {
				t.Errorf("guest runs kernel %s, want the %s flavour", m[1], g.Name)
			}
			if m[2] != "2" {
				t.Errorf("guest sees %s CPUs, want 2", m[2])
			}
			if m[3] != "/dev/vda" {
				t.Errorf("root is %q, want /dev/vda", m[3])
			}
			if m[4] != guestCIDR {
				t.Errorf("eth0 has %q, want %s", m[4], guestCIDR)
			}
			if m[5] != word {
				t.Errorf("guest read back %q, want %q", m[5], word)
			}
			if body := n.get(t, "/"); !strings.Contains(body, "gureum linux guest "+m[1]) {
				t.Errorf("HTTP page %q does not name kernel %s", body, m[1])
			}
			n.get(t, "/cgi-bin/poweroff")
			if code := v.Wait(guestTimeout); code != 0 {
				t.Fatalf("exit status %d after the guest's poweroff, want 0", code)
			}
			data, err := os.ReadFile(disk)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(data, []byte(word+"\n")) {
				t.Errorf("%q, written and synced by the guest, is not in the disk image", word)
			}
		})
	}
}

func nsName(n guestNet) string {
	if n.ns == nil {
		return ""
	}
	return n.ns.Name
}

// TestLinuxGuestEnds checks that a reboot and a poweroff from inside the
// guest end the VMM apart: with --no-reboot a reboot is exit status 3, a
// poweroff status 0.
func TestLinuxGuestEnds(t *testing.T) {
	for _, g := range guests(t) {
		for _, c := range []struct {
			then string
			code int
		}{{"reboot", 3}, {"poweroff", 0}} {
			if g.Name != "cloud" && c.then == "poweroff" {
				continue // TestLinuxBoot already powers every guest off
			}
			t.Run(g.Name+"/"+c.then, func(t *testing.T) {
				v := vmmtest.StartVMM(t, vmmtest.Options{Args: guestArgs(g, freshDisk(t, g), "gureum.then="+c.then)})
				v.WaitFor(readyLine, guestTimeout)
				if code := v.Wait(guestTimeout); code != c.code {
					t.Fatalf("guest %s: exit status %d, want %d", c.then, code, c.code)
				}
			})
		}
	}
}

// TestLinuxShutdownAction checks the VMM's shutdown action on a stock
// kernel: it presses Ctrl-Alt-Del on the i8042, the guest's init must
// power off, and the VMM must end with status 0 (not 4, "stopped" after
// the deadline). This needs Linux's i8042 driver to bind; under
// hardware-reduced ACPI it only can if the DSDT describes the controller
// (PNP0303 with IRQ 1), as it describes COM1.
func TestLinuxShutdownAction(t *testing.T) {
	g := guests(t)[0]
	v := vmmtest.StartVMM(t, vmmtest.Options{API: true, Args: guestArgs(g, freshDisk(t, g), "")})
	v.WaitFor(readyLine, guestTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	defer cancel()
	c := api.NewClient(v.APISock)
	if err := c.Action(ctx, api.ActionRequest{Action: "shutdown", TimeoutMS: 30000}); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if code := v.Wait(guestTimeout); code != 0 {
		t.Fatalf("exit status %d after the shutdown action, want 0: the guest did not power off on Ctrl-Alt-Del "+
			"(does Linux's i8042 driver bind? \"i8042: probe of i8042 failed with error -22\" at loglevel 7 means IRQ 1 is not registered)", code)
	}
}
