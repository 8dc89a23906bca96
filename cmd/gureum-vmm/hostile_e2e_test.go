package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gureum/vmm/api"
	"gureum/vmm/vmmtest"
)

// The attacks the test guest's hostile mode runs against each device
// (images/testguest/src/hostile.c); short-status is for virtio-blk only.
var hostileAttacks = []string{
	"desc-outside-ram", "desc-in-hole", "loop", "oversize", "indirect-nested",
	"indirect-outside", "bad-head", "avail-jump", "bad-queue-size", "short-status",
}

// The fewest malformed chains and refused queue sizes the guest publishes
// per device with the attack list above; the guest reports its own counts,
// and the test also holds it to these, so a guest that silently skipped
// attacks cannot pass.
const (
	hostileMinBlkChains = 14
	hostileMinNetChains = 12
	hostileMinRefused   = 4
)

var (
	hostileLineRE   = regexp.MustCompile(`(?m)^hostile (\S+): (survived|broken)(.*)$`)
	hostileCountsRE = regexp.MustCompile(`hostile counts: blk chains=(\d+) blk refused-sizes=(\d+) net chains=(\d+) net refused-sizes=(\d+)`)
)

// TestE2EHostileGuest boots the test guest in hostile mode: it feeds its
// virtio-blk (and, as root, virtio-net) device descriptors outside RAM and
// in the PCI hole, looping chains, oversized lengths, bad indirect tables,
// bad heads, a runaway avail index, bad queue sizes and a request without a
// status byte, each followed by a normal request. The VMM must keep
// running throughout, every follow-up must work, and the devices' error
// counters must account for every malformed chain.
func TestE2EHostileGuest(t *testing.T) {
	vmmtest.RequireKVM(t)
	img := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 16<<20); err != nil {
		t.Fatal(err)
	}
	// hostile.hold keeps the guest up after the attacks so the metrics can
	// be read; the test then ends it with a graceful shutdown.
	cmdline := "hostile hostile.hold=120"
	args := []string{"--cpus", "2", "--disk", img}
	opts := vmmtest.Options{API: true}
	withNet := os.Geteuid() == 0
	if withNet {
		ns := vmmtest.NewNetNS(t, "10.0.3.1/24")
		opts.NetNS = ns.Name
		args = append(args, "--net", ns.Tap)
		cmdline += " ip=10.0.3.15/24 gw=10.0.3.1"
	} else {
		t.Log("not root: attacking virtio-blk only (no tap for virtio-net)")
	}
	opts.Args = append(args, "--cmdline", cmdline)
	start := time.Now()
	v := vmmtest.StartVMM(t, opts)
	c := api.NewClient(v.APISock)
	ctx := context.Background()

	// While the guest attacks, GET /vm must keep answering "running". The
	// socket appears shortly after start, so errors count only once it
	// has answered.
	answered, polls := false, 0
	deadline := time.Now().Add(bootTimeout)
	for !strings.Contains(v.Output(), "hostile done:") {
		if time.Now().After(deadline) {
			t.Fatalf("no \"hostile done:\" within %v", bootTimeout)
		}
		info, err := c.VM(ctx)
		switch {
		case err == nil && info.State != "running":
			t.Fatalf("VM state %q during the attacks, want running", info.State)
		case err == nil:
			answered = true
			polls++
		case answered:
			t.Fatalf("GET /vm failed during the attacks: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	m := v.WaitFor(`hostile done: (\d+) survived, (\d+) broken`, bootTimeout)
	t.Logf("attacks took %v from start (%d state polls)", time.Since(start).Round(time.Millisecond), polls)

	// Every expected attack ran and the device survived it.
	results := map[string]string{}
	for _, l := range hostileLineRE.FindAllStringSubmatch(v.Output(), -1) {
		results[l[1]] = l[2]
		if l[2] != "survived" {
			t.Errorf("hostile %s: %s%s", l[1], l[2], l[3])
		}
	}
	devices := []string{"blk"}
	if withNet {
		devices = append(devices, "net")
	}
	for _, dev := range devices {
		for _, a := range hostileAttacks {
			if dev == "net" && a == "short-status" {
				continue
			}
			if _, ok := results[dev+"."+a]; !ok {
				t.Errorf("no result line for %s.%s", dev, a)
			}
		}
	}
	if m[2] != "0" {
		t.Errorf("guest reports %s broken", m[2])
	}

	// The device counters account for what the guest did. Counters start
	// at zero with the boot, so the totals are what this run added.
	cm := v.WaitFor(hostileCountsRE.String(), 10*time.Second)
	num := func(s string) uint64 { n, _ := strconv.ParseUint(s, 10, 64); return n }
	blkChains, blkRefused, netChains, netRefused := num(cm[1]), num(cm[2]), num(cm[3]), num(cm[4])
	if blkChains < hostileMinBlkChains || blkRefused < hostileMinRefused {
		t.Errorf("guest published %d malformed blk chains and %d bad sizes, want at least %d and %d",
			blkChains, blkRefused, hostileMinBlkChains, hostileMinRefused)
	}
	metrics := v.Metrics(t, c)
	counters := map[string]map[string]uint64{}
	for _, d := range metrics.Devices {
		counters[d.Name] = d.Counters
	}
	expect := func(dev, counter string, atLeast uint64, why string) {
		t.Helper()
		got, ok := counters[dev][counter]
		if !ok {
			t.Errorf("metrics have no %s.%s (devices: %v)", dev, counter, metrics.Devices)
			return
		}
		t.Logf("%s.%s = %d (%s: %d)", dev, counter, got, why, atLeast)
		if got < atLeast {
			t.Errorf("%s.%s = %d, want at least %d (%s)", dev, counter, got, atLeast, why)
		}
	}
	survivedPer := func(dev string) uint64 {
		var n uint64
		for name, r := range results {
			if strings.HasPrefix(name, dev+".") && r == "survived" {
				n++
			}
		}
		return n
	}
	expect("block0", "errors", blkChains, "malformed chains")
	expect("block0-transport", "errors", blkRefused, "refused queue sizes")
	// One read per follow-up, plus the guest's first read.
	expect("block0", "read_ops", survivedPer("blk")+1, "follow-up reads")
	if withNet {
		if netChains < hostileMinNetChains || netRefused < hostileMinRefused {
			t.Errorf("guest published %d malformed net chains and %d bad sizes, want at least %d and %d",
				netChains, netRefused, hostileMinNetChains, hostileMinRefused)
		}
		expect("net0", "tx_errors", netChains, "malformed chains")
		expect("net0-transport", "errors", netRefused, "refused queue sizes")
		n := counters["net0"]
		if sent := n["tx_packets"] + n["tx_dropped"]; sent < survivedPer("net")+1 {
			t.Errorf("net0 sent or dropped %d frames, want at least %d follow-up frames", sent, survivedPer("net")+1)
		}
	}

	// The VMM is still up with the guest alive, and ends cleanly when the
	// guest powers off.
	if info, err := c.VM(ctx); err != nil || info.State != "running" {
		t.Fatalf("after the attacks: GET /vm = %+v, %v; want state running", info, err)
	}
	if err := c.Action(ctx, api.ActionRequest{Action: "shutdown", TimeoutMS: 60000}); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if code := v.Wait(bootTimeout); code != 0 {
		t.Fatalf("exit status %d after the guest powered off, want 0", code)
	}
}
