// Package dhcp is the DHCP server of a VPC. It listens on the VPC bridge
// inside the VPC's namespace and gives every interface it knows (by MAC)
// the interface's fixed address, the subnet's gateway and DNS addresses and
// a lease time. It never picks addresses: ipam does, once, when the
// interface is created, so a lease is the same on every boot and after
// every daemon restart. A MAC it does not know gets no answer at all, as
// if no server were there.
//
// The exchange (RFC 2131): a booting guest broadcasts DISCOVER from
// 0.0.0.0; the server answers OFFER with the address; the guest broadcasts
// REQUEST for it; the server answers ACK (or NAK if the guest asked for an
// address that is not its own). Replies are broadcast on the bridge,
// because the guest has no address yet to unicast to.
package dhcp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"

	"gureum/network/ipam"
	"gureum/network/vpc"
)

// DefaultLeaseTime is what EC2's DHCP gives: an hour (guests renew at half).
const DefaultLeaseTime = time.Hour

// Lease is what one interface is told.
type Lease struct {
	Address  netip.Prefix // the fixed address with its subnet's length
	Gateway  netip.Addr
	DNS      netip.Addr
	Hostname string // may be empty
}

// Lookup finds the lease of a MAC. The daemon implements it on its state
// (IPAMLookup does so on an ipam plan). It is called from the server's
// goroutines, concurrently.
type Lookup interface {
	LeaseFor(mac net.HardwareAddr) (Lease, bool)
}

// Reply computes the answer to one request, or false for no answer. It is
// the whole protocol logic, kept apart from sockets.
func Reply(req *dhcpv4.DHCPv4, lookup Lookup, leaseTime time.Duration) (*dhcpv4.DHCPv4, bool) {
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return nil, false
	}
	lease, ok := lookup.LeaseFor(req.ClientHWAddr)
	if !ok {
		return nil, false
	}
	server := lease.Gateway.AsSlice()
	var kind dhcpv4.MessageType
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		kind = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		// A REQUEST naming another server is for that server.
		if id := req.ServerIdentifier(); id != nil && !id.Equal(server) {
			return nil, false
		}
		want := req.RequestedIPAddress()
		if want == nil || want.IsUnspecified() {
			want = req.ClientIPAddr
		}
		kind = dhcpv4.MessageTypeAck
		if want != nil && !want.IsUnspecified() && !want.Equal(lease.Address.Addr().AsSlice()) {
			kind = dhcpv4.MessageTypeNak
		}
	case dhcpv4.MessageTypeInform:
		kind = dhcpv4.MessageTypeAck
	default: // RELEASE, DECLINE: nothing to answer; the address stays reserved
		return nil, false
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(kind),
		dhcpv4.WithServerIP(server),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server)),
	}
	if kind != dhcpv4.MessageTypeNak {
		if req.MessageType() != dhcpv4.MessageTypeInform {
			mods = append(mods,
				dhcpv4.WithYourIP(lease.Address.Addr().AsSlice()),
				dhcpv4.WithLeaseTime(uint32(leaseTime/time.Second)))
		}
		mods = append(mods,
			dhcpv4.WithNetmask(net.CIDRMask(lease.Address.Bits(), 32)),
			dhcpv4.WithRouter(server),
			dhcpv4.WithDNS(lease.DNS.AsSlice()))
		if lease.Hostname != "" {
			mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(lease.Hostname)))
		}
	}
	resp, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		return nil, false
	}
	return resp, true
}

// Server serves one VPC's bridge.
type Server struct {
	srv       *server4.Server
	done      chan error
	closeOnce sync.Once
}

// Start listens on UDP port 67 of the VPC's bridge (the socket is made
// inside the namespace and bound to the bridge) and serves until Close.
func Start(v *vpc.VPC, lookup Lookup, leaseTime time.Duration) (*Server, error) {
	if leaseTime <= 0 {
		leaseTime = DefaultLeaseTime
	}
	var conn *net.UDPConn
	err := v.Do(func() error {
		c, err := server4.NewIPv4UDPConn(vpc.BridgeName, &net.UDPAddr{Port: dhcpv4.ServerPort})
		conn = c
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dhcp in VPC %s: listen: %w", v.ID(), err)
	}
	handle := func(c net.PacketConn, _ net.Addr, m *dhcpv4.DHCPv4) {
		resp, ok := Reply(m, lookup, leaseTime)
		if !ok {
			return
		}
		// The client may have no address yet: broadcast on the bridge
		// (every reply; a guest that has its address takes them too).
		c.WriteTo(resp.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort})
	}
	srv, err := server4.NewServer("", nil, handle, server4.WithConn(conn))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("dhcp in VPC %s: %w", v.ID(), err)
	}
	s := &Server{srv: srv, done: make(chan error, 1)}
	go func() { s.done <- srv.Serve() }()
	return s, nil
}

// Close stops the server and waits for its loop to end.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		err = s.srv.Close()
		serveErr := <-s.done
		if serveErr != nil && !errors.Is(serveErr, net.ErrClosed) {
			err = errors.Join(err, serveErr)
		}
	})
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close dhcp server: %w", err)
	}
	return nil
}

// IPAMLookup serves the leases of one VPC's interfaces from an ipam plan.
type IPAMLookup struct {
	Plan  *ipam.IPAM
	VPCID string
	// Hostname, if set, names the host of an interface (EC2:
	// ip-10-1-1-4.<region>.compute.internal).
	Hostname func(ipam.Interface) string
}

// LeaseFor finds the interface with this MAC in the VPC.
func (l IPAMLookup) LeaseFor(mac net.HardwareAddr) (Lease, bool) {
	for _, i := range l.Plan.Interfaces(l.VPCID) {
		if i.MAC != mac.String() {
			continue
		}
		s, ok := l.Plan.Subnet(i.SubnetID)
		if !ok {
			return Lease{}, false
		}
		lease := Lease{Address: netip.PrefixFrom(i.Address, s.CIDR.Bits()), Gateway: s.Gateway(), DNS: s.DNS()}
		if l.Hostname != nil {
			lease.Hostname = l.Hostname(i)
		}
		return lease, true
	}
	return Lease{}, false
}
