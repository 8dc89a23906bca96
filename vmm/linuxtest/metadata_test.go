package linuxtest

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gureum/images/nested"
	"gureum/network/dhcp"
	"gureum/network/imds"
	"gureum/network/namespace"
	"gureum/network/vpc"
	"gureum/vmm/vmmtest"
)

// The VPC the metadata test builds: one subnet, one instance. The test
// guest gets its address from the VPC's DHCP server only; its kernel
// command line carries no static fallback (gureum.ip).
var (
	vpcGateway = netip.MustParsePrefix("10.9.1.1/24")
	vpcGuest   = netip.MustParsePrefix("10.9.1.10/24")
	vpcDNS     = netip.MustParseAddr("10.9.1.2")
	// vpcGuestMAC is locally administered (bit 1 of the first byte), as
	// the MACs gureum gives interfaces are.
	vpcGuestMAC = net.HardwareAddr{0x02, 0x67, 0x75, 0x00, 0x01, 0x0a}
)

// oneInstance is the DHCP and metadata lookup of a VPC that holds a
// single instance. Both servers call it from their own goroutines.
type oneInstance struct {
	mac       net.HardwareAddr
	lease     dhcp.Lease
	instance  imds.Instance
	dhcpAsked atomic.Int32 // DHCP requests seen from mac
}

// LeaseFor answers DHCP for the instance's MAC only.
func (o *oneInstance) LeaseFor(mac net.HardwareAddr) (dhcp.Lease, bool) {
	if !bytes.Equal(mac, o.mac) {
		return dhcp.Lease{}, false
	}
	o.dhcpAsked.Add(1)
	return o.lease, true
}

// InstanceByAddress knows the instance by its private address only.
func (o *oneInstance) InstanceByAddress(a netip.Addr) (imds.Instance, bool) {
	return o.instance, a == o.instance.LocalIPv4
}

// metadataScript is the guest's gureum.run command: it reports what a
// stock guest sees of its VPC and of the metadata service in one line,
// then powers off.
//
// busybox wget sends GET with extra headers but cannot send PUT, which the
// IMDSv2 token request must be; busybox nc can: printf writes the raw
// HTTP/1.0 request, nc sends it, half-closes and prints the whole answer
// until the server closes. The status code is the second word of the
// answer's first line; the body follows the first empty line.
//
// The script travels on the kernel command line as gureum.run="…", which
// has no escape for a double quote, so it uses none (checked by the test).
var metadataScript = strings.Join([]string{
	"md=169.254.169.254",
	// What udhcpc applied (no static address was given).
	`ip=$(ip -4 -o addr show dev eth0 | sed -n 's/.* inet \([0-9./]*\).*/\1/p')`,
	`gw=$(ip route show default | sed -n 's/^default via \([0-9.]*\).*/\1/p' | head -n 1)`,
	// IMDSv1: a GET with no token. HttpTokens=required refuses it.
	`v1=$(printf 'GET /latest/meta-data/instance-id HTTP/1.0\r\n\r\n' | nc $md 80 | head -n 1 | cut -d' ' -f2)`,
	// IMDSv2: PUT for a token with a 60-second TTL.
	`tok=$(printf 'PUT /latest/api/token HTTP/1.0\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n' | nc $md 80 | tr -d '\r' | sed '1,/^$/d')`,
	// GETs with the token: wget can send the header.
	"id=$(wget -q -O - --header X-aws-ec2-metadata-token:$tok http://$md/latest/meta-data/instance-id)",
	"ud=$(wget -q -O - --header X-aws-ec2-metadata-token:$tok http://$md/latest/user-data | md5sum | cut -d' ' -f1)",
	"echo gureum-imds: ip=$ip gw=$gw notoken=$v1 tokenlen=${#tok} id=$id userdata=$ud",
	"poweroff",
}, "; ")

// metadataLine is the script's report. Each value must look like what it
// reports (digits, addresses, hex), so that the script's own text, should
// the console ever echo the command line, cannot match.
const metadataLine = `gureum-imds: ip=([0-9./]*) gw=([0-9.]*) notoken=([0-9]*) tokenlen=([0-9]+) id=([0-9a-z-]*) userdata=([0-9a-f]*)\r?\n`

// TestLinuxDHCPAndMetadata boots the cloud kernel of the default image
// in a VPC built by network/vpc (a namespace with a bridge and a tap), with
// the VPC's DHCP server (network/dhcp) and metadata service (network/imds)
// serving one instance that requires IMDSv2 tokens. The guest must come up
// on the address DHCP gave it, be refused (401) a metadata GET without a
// token, get a token with PUT /latest/api/token, and read its instance-id
// and user-data with it. The VMM is started inside the namespace, as the
// daemon does (vpc.Start), so it opens the VPC's tap by name.
func TestLinuxDHCPAndMetadata(t *testing.T) {
	var g nested.Guest
	for _, c := range guests(t) { // first: it skips on PVM machines
		if c.Name == "cloud" {
			g = c
		}
	}
	if g.Name == "" {
		t.Fatal("no cloud guest among the Linux guests")
	}
	vmmtest.RequireRoot(t)
	if strings.Contains(metadataScript, `"`) {
		t.Fatal("the metadata script contains a double quote, which the kernel command line cannot carry")
	}
	// Find the VMM here, outside the namespace: finding it may run make.
	vmmtest.Bin(t, "gureum-vmm")

	userData := []byte(fmt.Sprintf("#!/bin/sh\necho user data %d\n", time.Now().UnixNano()))
	inst := &oneInstance{
		mac:   vpcGuestMAC,
		lease: dhcp.Lease{Address: vpcGuest, Gateway: vpcGateway.Addr(), DNS: vpcDNS},
		instance: imds.Instance{
			ID:               fmt.Sprintf("i-%017x", time.Now().UnixNano()),
			Type:             "t3.micro",
			LocalIPv4:        vpcGuest.Addr(),
			AvailabilityZone: "local-1a",
			MAC:              vpcGuestMAC.String(),
			UserData:         userData,
			RequireToken:     true,
		},
	}
	v, tapName := newTestVPC(t)

	d, err := dhcp.Start(v, inst, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	m, err := imds.Start(v, imds.NewHandler(inst, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })

	disk := freshDisk(t, g)
	args := append(guestArgs(g, disk, `gureum.name=linux-imds gureum.run="`+metadataScript+`"`),
		"--net", tapName+",mac="+vpcGuestMAC.String())
	start := time.Now()
	var vm *vmmtest.VMM
	// The child inherits the namespace of the thread that forks it, which
	// v.Do has moved into the VPC: gureum-vmm then finds the tap by name.
	if err := v.Do(func() error {
		vm = vmmtest.StartVMM(t, vmmtest.Options{Args: args})
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	ready := vm.WaitFor(readyLine, guestTimeout)
	t.Logf("ready after %.1fs: %s", time.Since(start).Seconds(), strings.TrimSpace(ready[0]))
	if ready[2] != vpcGuest.String() {
		t.Errorf("eth0 came up with %q, want %s from DHCP", ready[2], vpcGuest)
	}
	if inst.dhcpAsked.Load() == 0 {
		t.Errorf("the DHCP server never heard from MAC %s", vpcGuestMAC)
	}

	r := vm.WaitFor(metadataLine, guestTimeout)
	t.Logf("metadata after %.1fs: %s", time.Since(start).Seconds(), strings.TrimSpace(r[0]))
	if r[1] != vpcGuest.String() || r[2] != vpcGateway.Addr().String() {
		t.Errorf("guest reports address %q and default route via %q, want %s via %s (the DHCP lease)",
			r[1], r[2], vpcGuest, vpcGateway.Addr())
	}
	if r[3] != "401" {
		t.Errorf("a GET without a token got status %q, want 401 (HttpTokens=required)", r[3])
	}
	if r[4] == "0" {
		t.Errorf("PUT /latest/api/token gave the guest no token")
	}
	if r[5] != inst.instance.ID {
		t.Errorf("instance-id with the token: %q, want %q", r[5], inst.instance.ID)
	}
	sum := md5.Sum(userData)
	if want := hex.EncodeToString(sum[:]); r[6] != want {
		t.Errorf("user-data with the token has MD5 %q, want %s (of %q)", r[6], want, userData)
	}
	if code := vm.Wait(guestTimeout); code != 0 {
		t.Errorf("exit status %d after the guest's poweroff, want 0", code)
	}
}

// newTestVPC makes a VPC with the test subnet's gateway on its bridge and
// one tap for the guest. Cleanup removes the tap and the namespace (after
// the servers and the VMM, whose cleanups are registered later and so run
// first) and checks that the namespace is gone.
func newTestVPC(t *testing.T) (*vpc.VPC, string) {
	t.Helper()
	// "lt" is not hex: a gureum daemon on the same host leaves namespaces
	// that are not of its own ID shape alone.
	id := fmt.Sprintf("vpc-lt%x", time.Now().UnixNano())
	v, err := vpc.Create(id, "")
	if err != nil {
		t.Fatalf("create VPC (needs the bridge and br_netfilter modules): %v", err)
	}
	tapName := vpc.TapName("eni-" + id)
	t.Cleanup(func() {
		if err := v.RemoveTap(tapName); err != nil {
			t.Errorf("remove tap: %v", err)
		}
		if err := v.Delete(); err != nil {
			t.Errorf("delete VPC: %v", err)
		}
		if namespace.Exists(v.Namespace()) {
			t.Errorf("namespace %s is still there", v.Namespace())
		}
	})
	if err := v.AddGateway(vpcGateway); err != nil {
		t.Fatal(err)
	}
	if err := v.AddTap(tapName); err != nil {
		t.Fatal(err)
	}
	return v, tapName
}
