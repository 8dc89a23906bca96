package network_test

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"gureum/network/ipam"
	"gureum/network/namespace"
	"gureum/network/secgroup"
	"gureum/network/vpc"
	"gureum/vmm/vmmtest"
)

// bootTimeout is generous: on KVM without hardware virtualization every
// guest instruction is emulated.
const bootTimeout = 90 * time.Second

// testVPC is one VPC of the test with its plan and firewall.
type testVPC struct {
	v    *vpc.VPC
	plan *ipam.IPAM
	fw   *secgroup.Firewall
}

func newTestVPC(t *testing.T, n int, cidr, subnet string) *testVPC {
	t.Helper()
	id := fmt.Sprintf("vpc-e2e%d-%d", os.Getpid(), n)
	v, err := vpc.Create(id, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if taps, _ := v.Taps(); len(taps) > 0 {
			for _, tp := range taps {
				v.RemoveTap(tp)
			}
		}
		namespace.Delete(v.Namespace())
	})
	plan, err := ipam.New(&ipam.MemoryStore{})
	if err != nil {
		t.Fatal(err)
	}
	if err := plan.AddVPC(ipam.VPC{ID: id, CIDR: netip.MustParsePrefix(cidr)}); err != nil {
		t.Fatal(err)
	}
	s := ipam.Subnet{ID: "subnet-" + id, VPCID: id, CIDR: netip.MustParsePrefix(subnet), Zone: "local-1a"}
	if err := plan.AddSubnet(s); err != nil {
		t.Fatal(err)
	}
	if err := v.AddGateway(netip.PrefixFrom(s.Gateway(), s.CIDR.Bits())); err != nil {
		t.Fatal(err)
	}
	return &testVPC{v: v, plan: plan, fw: secgroup.New(v.Namespace())}
}

func (tv *testVPC) subnet() ipam.Subnet { return tv.plan.Subnets(tv.v.ID())[0] }

// guest boots the test guest in serve mode on a tap in the VPC, with the
// interface's fixed address and MAC, in the given groups.
func (tv *testVPC) guest(t *testing.T, eni string, groups ...string) ipam.Interface {
	t.Helper()
	iface := tv.port(t, eni, netip.Addr{}, groups...)
	tv.boot(t, iface)
	return iface
}

// port allocates an interface of the plan (at address want, or the next
// free one) and gives it a tap in the VPC and a firewall port in the
// given groups, ready for boot. Allocating first lets guests that probe
// each other know both addresses before either boots.
func (tv *testVPC) port(t *testing.T, eni string, want netip.Addr, groups ...string) ipam.Interface {
	t.Helper()
	iface, err := tv.plan.Allocate(tv.subnet().ID, eni, want)
	if err != nil {
		t.Fatal(err)
	}
	tapName := vpc.TapName(eni)
	if err := tv.v.AddTap(tapName); err != nil {
		t.Fatal(err)
	}
	if err := tv.fw.SetPort(secgroup.Port{Name: tapName, MAC: iface.HardwareAddr(), Address: iface.Address, Groups: groups}); err != nil {
		t.Fatal(err)
	}
	return iface
}

// boot starts the test guest in serve mode on the interface's tap, with
// its address and MAC and any extra command-line words (peer=…), and
// waits until it is ready.
func (tv *testVPC) boot(t *testing.T, iface ipam.Interface, words ...string) *vmmtest.VMM {
	t.Helper()
	s := tv.subnet()
	cmdline := fmt.Sprintf("serve ip=%s/%d gw=%s name=%s", iface.Address, s.CIDR.Bits(), s.Gateway(), iface.ID)
	if len(words) > 0 {
		cmdline += " " + strings.Join(words, " ")
	}
	vm := vmmtest.StartVMM(t, vmmtest.Options{NetNS: tv.v.Namespace(),
		Args: []string{"--cpus", "1", "--cmdline", cmdline, "--net", vpc.TapName(iface.ID) + ",mac=" + iface.MAC}})
	vm.WaitFor(`gureum-testguest: ready`, bootTimeout)
	return vm
}

// peerLine waits for the guest's report on peer (one line, printed once
// the probe succeeded or gave up) and returns it.
func peerLine(t *testing.T, vm *vmmtest.VMM, peer netip.Addr, timeout time.Duration) string {
	t.Helper()
	m := vm.WaitFor(`(peer `+regexp.QuoteMeta(peer.String())+`: [^\r\n]*)\r?\n`, timeout) // the whole line
	return m[1]
}

// client makes a namespace on the VPC's bridge with an interface of the
// plan (at address want, or the next free one), standing in for an
// instance that initiates traffic.
func (tv *testVPC) client(t *testing.T, eni string, want netip.Addr, groups ...string) string {
	t.Helper()
	s := tv.subnet()
	iface, err := tv.plan.Allocate(s.ID, eni, want)
	if err != nil {
		t.Fatal(err)
	}
	ns := fmt.Sprintf("gureum-e2e-%d-%s", os.Getpid(), eni)
	if err := namespace.Create(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { namespace.Delete(ns) })
	port := "v" + vpc.TapName(eni)[3:]
	err = tv.v.ConnectNamespace(vpc.Host{Namespace: ns, Name: "eth0", Port: port, MAC: iface.HardwareAddr(),
		Address: netip.PrefixFrom(iface.Address, s.CIDR.Bits()), Gateway: s.Gateway()})
	if err != nil {
		t.Fatal(err)
	}
	if err := tv.fw.SetPort(secgroup.Port{Name: port, MAC: iface.HardwareAddr(), Address: iface.Address, Groups: groups}); err != nil {
		t.Fatal(err)
	}
	return ns
}

func inNS(ns string, timeout time.Duration, name string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "timeout", fmt.Sprint(int(timeout.Seconds())), name}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func ping(ns string, addr netip.Addr) error {
	out, err := inNS(ns, 15*time.Second, "ping", "-c", "2", "-W", "3", addr.String())
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

func fetch(ns string, addr netip.Addr, maxTime int) (string, error) {
	return inNS(ns, time.Duration(maxTime+5)*time.Second, "curl", "-sS", "--max-time", fmt.Sprint(maxTime), "http://"+addr.String()+"/")
}

// TestVPCWithGuests boots two test guests in one VPC behind a security
// group that allows HTTP only from the group "sg-clients" and ping from
// the VPC. A client in that group pings and fetches both; a client in
// another group can ping but not fetch, until a rule change lets its group
// in; a client in another VPC reaches neither guest. Then the guests
// themselves initiate: two more guests in one VPC, in a group that lets
// in ICMP and HTTP only from its own members, probe each other (peer=)
// and both succeed; a guest in the other VPC probing one of them fails.
func TestVPCWithGuests(t *testing.T) {
	vmmtest.RequireRoot(t)
	vmmtest.RequireKVM(t)
	for _, tool := range []string{"ip", "ping", "curl", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (apt: iproute2, iputils-ping, curl, nftables)", tool)
		}
	}
	a := newTestVPC(t, 1, "10.40.0.0/16", "10.40.1.0/24")
	other := newTestVPC(t, 2, "10.40.0.0/16", "10.40.1.0/24")

	web := secgroup.NewGroup("sg-web")
	web.Rules = append(web.Rules,
		secgroup.Rule{Direction: secgroup.Ingress, Protocol: secgroup.TCP, FromPort: 80, ToPort: 80, Group: "sg-clients"},
		secgroup.Rule{Direction: secgroup.Ingress, Protocol: secgroup.ICMP, FromPort: -1, ToPort: -1, CIDR: netip.MustParsePrefix("10.40.0.0/16")})
	for _, g := range []secgroup.Group{secgroup.NewGroup("sg-clients"), secgroup.NewGroup("sg-others"), web} {
		if err := a.fw.SetGroup(g); err != nil {
			t.Fatal(err)
		}
	}
	g1 := a.guest(t, "eni-g1", "sg-web")
	g2 := a.guest(t, "eni-g2", "sg-web")
	good := a.client(t, "eni-c1", netip.Addr{}, "sg-clients")
	bad := a.client(t, "eni-c2", netip.Addr{}, "sg-others")
	// The other VPC has the same CIDR (VPCs are separate networks); its
	// client takes an address no one in VPC a has.
	stranger := other.client(t, "eni-c3", netip.MustParseAddr("10.40.1.50"))

	out, err := inNS(a.v.Namespace(), 10*time.Second, "nft", "list", "ruleset")
	if err != nil || !strings.Contains(out, "table inet gureum") || !strings.Contains(out, "table bridge gureum-ports") {
		t.Fatalf("nft list ruleset in the VPC: %v\n%s", err, out)
	}

	for _, g := range []ipam.Interface{g1, g2} {
		if err := ping(good, g.Address); err != nil {
			t.Fatalf("ping %s from sg-clients: %v", g.Address, err)
		}
		if body, err := fetch(good, g.Address, 20); err != nil || !strings.Contains(body, "gureum-testguest "+g.Address.String()) {
			t.Fatalf("HTTP %s from sg-clients: %v %q", g.Address, err, body)
		}
		if err := ping(bad, g.Address); err != nil {
			t.Fatalf("ping %s from sg-others (ICMP is allowed from the VPC): %v", g.Address, err)
		}
		if body, err := fetch(bad, g.Address, 2); err == nil {
			t.Fatalf("HTTP %s from sg-others got through: %q", g.Address, body)
		}
		if err := ping(stranger, g.Address); err == nil {
			t.Fatalf("a client in another VPC pinged %s", g.Address)
		}
	}

	// Let sg-others in: the next connection must get through within a
	// second of the change.
	web.Rules = append(web.Rules, secgroup.Rule{Direction: secgroup.Ingress, Protocol: secgroup.TCP, FromPort: 80, ToPort: 80, Group: "sg-others"})
	changed := time.Now()
	if err := a.fw.SetGroup(web); err != nil {
		t.Fatal(err)
	}
	body, err := fetch(bad, g1.Address, 1)
	if err != nil || !strings.Contains(body, "gureum-testguest") {
		t.Fatalf("HTTP from sg-others after the rule change: %v %q", err, body)
	}
	t.Logf("first fetch after the rule change done %v after it", time.Since(changed))

	// Guest to guest: sg-peers lets in ping and HTTP from its own members
	// only (a source-group rule), so both directions pass the firewall
	// as traffic the guests start. Both addresses are allocated first so
	// each guest can be told the other's.
	peers := secgroup.NewGroup("sg-peers")
	peers.Rules = append(peers.Rules,
		secgroup.Rule{Direction: secgroup.Ingress, Protocol: secgroup.TCP, FromPort: 80, ToPort: 80, Group: "sg-peers"},
		secgroup.Rule{Direction: secgroup.Ingress, Protocol: secgroup.ICMP, FromPort: -1, ToPort: -1, Group: "sg-peers"})
	if err := a.fw.SetGroup(peers); err != nil {
		t.Fatal(err)
	}
	p1 := a.port(t, "eni-p1", netip.MustParseAddr("10.40.1.60"), "sg-peers")
	p2 := a.port(t, "eni-p2", netip.MustParseAddr("10.40.1.61"), "sg-peers")
	// The other VPC's guest probes p1's address, which no one uses there
	// (its subnet is the same 10.40.1.0/24, so it asks by ARP on its own
	// bridge and nobody answers). Its group allows all egress, so it is
	// the VPC boundary, not its own firewall, that stops it.
	if err := other.fw.SetGroup(secgroup.NewGroup("sg-far")); err != nil {
		t.Fatal(err)
	}
	far := other.port(t, "eni-far", netip.MustParseAddr("10.40.1.70"), "sg-far")
	started := time.Now()
	vm1 := a.boot(t, p1, "peer="+p2.Address.String(), "peer.wait=60")
	vm2 := a.boot(t, p2, "peer="+p1.Address.String(), "peer.wait=60")
	vmFar := other.boot(t, far, "peer="+p1.Address.String(), "peer.wait=3")
	for _, c := range []struct {
		vm   *vmmtest.VMM
		peer ipam.Interface
	}{{vm1, p2}, {vm2, p1}} {
		line := peerLine(t, c.vm, c.peer.Address, 120*time.Second)
		// The body is the peer's "gureum-testguest <ip> <name>\n".
		body := fmt.Sprintf("gureum-testguest %s %s\n", c.peer.Address, c.peer.ID)
		want := fmt.Sprintf(": ok arp=1 ping=3/3 http=200 bytes=%d tries=", len(body))
		if !strings.Contains(line, want) {
			t.Errorf("guest to guest in one VPC: %q, want %q", line, want)
		}
		t.Logf("%s (%v after the first boot began)", line, time.Since(started))
	}
	line := peerLine(t, vmFar, p1.Address, 60*time.Second)
	if !strings.Contains(line, ": fail arp=0 ping=0/3 http=none ") {
		t.Errorf("a guest in another VPC probing %s: %q", p1.Address, line)
	}
	t.Logf("%s (from the other VPC)", line)
}
