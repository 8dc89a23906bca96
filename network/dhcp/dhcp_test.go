package dhcp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"gureum/network/ipam"
	"gureum/network/namespace"
	"gureum/network/vpc"
	"gureum/vmm/vmmtest"
)

// plan makes an address plan with one subnet and one interface.
func plan(t *testing.T, vpcID string) (*ipam.IPAM, ipam.Interface) {
	t.Helper()
	p, err := ipam.New(&ipam.MemoryStore{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AddVPC(ipam.VPC{ID: vpcID, CIDR: netip.MustParsePrefix("10.20.0.0/16")}); err != nil {
		t.Fatal(err)
	}
	if err := p.AddSubnet(ipam.Subnet{ID: "subnet-1", VPCID: vpcID, CIDR: netip.MustParsePrefix("10.20.1.0/24"), Zone: "local-1a"}); err != nil {
		t.Fatal(err)
	}
	i, err := p.Allocate("subnet-1", "eni-dhcp", netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	return p, i
}

func TestReplyKnownAndUnknownMACs(t *testing.T) {
	p, iface := plan(t, "vpc-1")
	lookup := IPAMLookup{Plan: p, VPCID: "vpc-1"}
	discover, err := dhcpv4.NewDiscovery(iface.HardwareAddr())
	if err != nil {
		t.Fatal(err)
	}
	offer, ok := Reply(discover, lookup, time.Minute)
	if !ok || offer.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("no offer for a known MAC: %v", offer)
	}
	if !offer.YourIPAddr.Equal(net.ParseIP("10.20.1.4")) || !offer.Router()[0].Equal(net.ParseIP("10.20.1.1")) ||
		!offer.DNS()[0].Equal(net.ParseIP("10.20.1.2")) || offer.IPAddressLeaseTime(0) != time.Minute ||
		offer.SubnetMask().String() != "ffffff00" {
		t.Fatalf("offer: %s", offer.Summary())
	}
	req, err := dhcpv4.NewRequestFromOffer(offer)
	if err != nil {
		t.Fatal(err)
	}
	if ack, ok := Reply(req, lookup, time.Minute); !ok || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("request: %v", ack)
	}
	req.UpdateOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.20.1.99")))
	if nak, ok := Reply(req, lookup, time.Minute); !ok || nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("request for another address: %v", nak)
	}
	stranger, _ := dhcpv4.NewDiscovery(net.HardwareAddr{0x02, 1, 2, 3, 4, 5})
	if r, ok := Reply(stranger, lookup, time.Minute); ok {
		t.Fatalf("unknown MAC got %s", r.Summary())
	}
}

// TestDHCPOnTheBridge runs the server in a real VPC and a DHCP client in
// another namespace plugged into the bridge with the interface's MAC.
func TestDHCPOnTheBridge(t *testing.T) {
	vmmtest.RequireRoot(t)
	id := fmt.Sprintf("vpc-dhcp%d", os.Getpid())
	v, err := vpc.Create(id, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { namespace.Delete(v.Namespace()) })
	p, iface := plan(t, id)
	if err := v.AddGateway(netip.MustParsePrefix("10.20.1.1/24")); err != nil {
		t.Fatal(err)
	}
	srv, err := Start(v, IPAMLookup{Plan: p, VPCID: id}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	client := func(name string, mac net.HardwareAddr, wait time.Duration) (*nclient4.Lease, error) {
		ns := fmt.Sprintf("gureum-dhcpc-%d-%s", os.Getpid(), name)
		if err := namespace.Create(ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { namespace.Delete(ns) })
		if err := v.ConnectNamespace(vpc.Host{Namespace: ns, Name: "eth0", Port: "veth-" + name, MAC: mac}); err != nil {
			t.Fatal(err)
		}
		var c *nclient4.Client
		err := namespace.Do(ns, func() error {
			var err error
			c, err = nclient4.New("eth0", nclient4.WithTimeout(time.Second), nclient4.WithRetry(3))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		return c.Request(ctx)
	}
	lease, err := client("known", iface.HardwareAddr(), 5*time.Second)
	if err != nil {
		t.Fatalf("DHCP for a known MAC: %v", err)
	}
	if !lease.ACK.YourIPAddr.Equal(iface.Address.AsSlice()) || !lease.ACK.Router()[0].Equal(net.ParseIP("10.20.1.1")) {
		t.Fatalf("lease %s, want %s via 10.20.1.1", lease.ACK.Summary(), iface.Address)
	}
	if _, err := client("stranger", net.HardwareAddr{0x02, 9, 9, 9, 9, 9}, 1500*time.Millisecond); err == nil {
		t.Fatal("an unknown MAC got a lease")
	}
}
