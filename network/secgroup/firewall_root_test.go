package secgroup

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"gureum/network"
	"gureum/network/namespace"
	"gureum/vmm/vmmtest"
)

var testNamespaces atomic.Int32

func newTestNamespace(t *testing.T) string {
	t.Helper()
	vmmtest.RequireRoot(t)
	name := fmt.Sprintf("gureum-sgtest-%d-%d", os.Getpid(), testNamespaces.Add(1))
	if err := namespace.Create(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { namespace.Delete(name) })
	return name
}

func nftList(t *testing.T, ns string) string {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		if os.Getenv("GUREUM_REQUIRE_KVM") == "1" {
			t.Fatal("nft (apt package nftables) is not installed")
		}
		t.Skip("nft (apt package nftables) is not installed: skipping")
	}
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list ruleset: %v\n%s", err, out)
	}
	return string(out)
}

func TestFirewallRulesetAsNftSeesIt(t *testing.T) {
	ns := newTestNamespace(t)
	fw := New(ns)
	web := NewGroup("sg-web")
	web.Rules = append(web.Rules,
		Rule{Direction: Ingress, Protocol: TCP, FromPort: 80, ToPort: 80, Group: "sg-web"},
		Rule{Direction: Ingress, Protocol: "6", FromPort: 8000, ToPort: 8080, CIDR: netip.MustParsePrefix("10.9.0.0/16")},
		Rule{Direction: Ingress, Protocol: ICMP, FromPort: 8, ToPort: -1, CIDR: netip.MustParsePrefix("0.0.0.0/0")},
	)
	if err := fw.SetGroup(web); err != nil {
		t.Fatal(err)
	}
	mac, _ := net.ParseMAC("02:00:00:00:00:01")
	if err := fw.SetPort(Port{Name: "tapweb", MAC: mac, Address: netip.MustParseAddr("10.9.1.4"), Groups: []string{"sg-web"}}); err != nil {
		t.Fatal(err)
	}
	out := nftList(t, ns)
	for _, want := range []string{
		"table bridge gureum-ports",
		`iifname "tapweb" ether saddr != 02:00:00:00:00:01 drop`,
		"table inet gureum",
		"ct state established,related accept",
		"ip saddr 10.9.1.4 jump egress-tapweb",
		"ip daddr 10.9.1.4 jump ingress-tapweb",
		"tcp dport 80 ip saddr 10.9.1.4 accept",
		"tcp dport 8000-8080 ip saddr 10.9.0.0/16 accept",
		"icmp type echo-request accept",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("ruleset lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("nft list ruleset:\n%s", out)
	}

	// Bad rules are refused and change nothing in the kernel.
	for _, bad := range []Rule{
		{Direction: Ingress, Protocol: TCP, FromPort: 80, ToPort: 70000, CIDR: netip.MustParsePrefix("0.0.0.0/0")},
		{Direction: Ingress, Protocol: TCP, FromPort: 90, ToPort: 80, CIDR: netip.MustParsePrefix("0.0.0.0/0")},
		{Direction: Ingress, Protocol: "gre", CIDR: netip.MustParsePrefix("0.0.0.0/0")},
		{Direction: Ingress, Protocol: TCP, FromPort: 80, ToPort: 80, CIDR: netip.MustParsePrefix("10.0.0.1/8")},
		{Direction: Ingress, Protocol: TCP, FromPort: 80, ToPort: 80},
		{Direction: "sideways", Protocol: TCP, FromPort: 80, ToPort: 80, CIDR: netip.MustParsePrefix("0.0.0.0/0")},
	} {
		g := NewGroup("sg-web")
		g.Rules = append(g.Rules, bad)
		if err := fw.SetGroup(g); network.CodeOf(err) != network.CodeInvalidParameterValue {
			t.Errorf("rule %+v: %v, want InvalidParameterValue", bad, err)
		}
	}
	g := NewGroup("sg-x")
	g.Rules = append(g.Rules, Rule{Direction: Ingress, Protocol: TCP, FromPort: 1, ToPort: 1, Group: "sg-missing"})
	if err := fw.SetGroup(g); network.CodeOf(err) != network.CodeGroupNotFound {
		t.Errorf("rule naming a missing group: %v", err)
	}
	if after := nftList(t, ns); after != out {
		t.Errorf("refused changes changed the ruleset:\nbefore\n%s\nafter\n%s", out, after)
	}
	if err := fw.DeleteGroup("sg-web"); network.CodeOf(err) != network.CodeDependencyViolation {
		t.Errorf("delete a group in use: %v", err)
	}
	if err := fw.RemovePort("tapweb"); err != nil {
		t.Fatal(err)
	}
	if err := fw.DeleteGroup("sg-web"); err != nil {
		t.Fatal(err)
	}
	if err := fw.Remove(); err != nil {
		t.Fatal(err)
	}
	if out := nftList(t, ns); strings.Contains(out, "gureum") {
		t.Errorf("tables left after Remove:\n%s", out)
	}
}

// TestFirewallManyMembers applies a ruleset with 60 ports in one group
// that admits its own members (EC2's default group): one rule per member
// per port, several thousand kernel acknowledgements in one batch, which
// overflowed the default netlink receive buffer (ENOBUFS) before the
// connection asked for a larger one.
func TestFirewallManyMembers(t *testing.T) {
	ns := newTestNamespace(t)
	fw := New(ns)
	g := NewGroup("sg-default")
	g.Rules = append(g.Rules, Rule{Direction: Ingress, Protocol: "-1", Group: "sg-default"})
	if err := fw.SetGroup(g); err != nil {
		t.Fatal(err)
	}
	for i := range 60 {
		mac := net.HardwareAddr{0x02, 0, 0, 0, 1, byte(i)}
		p := Port{Name: fmt.Sprintf("tapm%d", i), MAC: mac, Address: netip.AddrFrom4([4]byte{10, 9, 2, byte(10 + i)}), Groups: []string{"sg-default"}}
		if err := fw.SetPort(p); err != nil {
			t.Fatalf("port %d of 60: %v", i+1, err)
		}
	}
	if out := nftList(t, ns); !strings.Contains(out, "ip saddr 10.9.2.69") {
		t.Errorf("ruleset lacks the 60th member")
	}
}
