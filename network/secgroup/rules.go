// Package secgroup enforces security groups with nftables inside a VPC's
// network namespace.
//
// A security group is a list of allow rules, inbound (ingress) and
// outbound (egress); a port (an instance's tap, or any interface on the
// VPC bridge) belongs to one or more groups and is allowed what the union
// of their rules allows. Inbound traffic nothing allows is dropped;
// outbound traffic is allowed by the allow-all egress rule every group
// starts with (NewGroup), as in EC2. Replies to allowed traffic always pass:
// the filter is stateful (conntrack: "ct state established,related
// accept"), so an instance that may call out gets its answers without an
// inbound rule for them.
//
// Why two nftables tables, and why the inet family for the rules: frames
// between taps are switched by the VPC's bridge. The bridge family sees
// them with the bridge port they came in on, but this kernel has no
// connection tracking for the bridge family (CONFIG_NF_CONNTRACK_BRIDGE is
// off here and in many distribution kernels), so stateful rules cannot live
// there. Bridge netfilter (br_netfilter, turned on per namespace by the vpc
// package) passes bridged IPv4 packets through the inet hooks as well,
// where conntrack works but the port is no longer known. So:
//
//   - table bridge gureum-ports pins every port to its own MAC and IPv4
//     address (anti-spoofing, stateless, by port name: iifname), and
//   - table inet gureum holds the stateful rules, matched by the address
//     the bridge table has made trustworthy (ip saddr/daddr).
//
// Every change renders both tables whole and replaces them in one netlink
// batch (delete and re-create inside one transaction): the kernel switches
// from the old rules to the new ones atomically and at once, so there is
// never a moment with half a rule set, and a rule change applies to the
// next packet. Connections that the old rules allowed and conntrack already
// tracks go on, as in EC2.
package secgroup

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"gureum/network"
)

// Direction is which way a rule allows traffic, seen from the port.
type Direction string

// Directions.
const (
	Ingress Direction = "ingress"
	Egress  Direction = "egress"
)

// Protocols a rule can name; AllProtocols matches every IPv4 packet.
const (
	TCP          = "tcp"
	UDP          = "udp"
	ICMP         = "icmp"
	AllProtocols = "all"
)

// Rule allows one kind of traffic. Exactly one of CIDR and Group names the
// peer: the source of inbound traffic or the destination of outbound
// traffic. For TCP and UDP, FromPort..ToPort is the destination port
// range (0–65535). For ICMP, FromPort is the ICMP type and ToPort the code,
// -1 meaning any (EC2's convention). For all protocols the ports are
// ignored.
type Rule struct {
	Direction Direction
	Protocol  string
	FromPort  int
	ToPort    int
	CIDR      netip.Prefix
	Group     string
}

// Group is a security group: an ID and its rules.
type Group struct {
	ID    string
	Rules []Rule
}

// NewGroup returns a group with EC2's default rule set: no inbound rule,
// one rule allowing all outbound traffic.
func NewGroup(id string) Group {
	return Group{ID: id, Rules: []Rule{{Direction: Egress, Protocol: AllProtocols, CIDR: netip.MustParsePrefix("0.0.0.0/0")}}}
}

// Port is an interface on the VPC bridge that groups apply to. Name is the
// bridge port (the tap), MAC and Address are the only source addresses
// frames from it may carry.
type Port struct {
	Name    string
	MAC     net.HardwareAddr
	Address netip.Addr
	Groups  []string
}

// normalizeProtocol accepts the names and EC2's numbers ("6", "17", "1",
// "-1").
func normalizeProtocol(p string) (string, bool) {
	switch strings.ToLower(p) {
	case TCP, "6":
		return TCP, true
	case UDP, "17":
		return UDP, true
	case ICMP, "1":
		return ICMP, true
	case AllProtocols, "-1":
		return AllProtocols, true
	}
	return "", false
}

// Validate checks a rule on its own (not whether its source group
// exists); its error has code InvalidParameterValue.
func Validate(r Rule) error {
	bad := func(format string, args ...any) error {
		return network.Errorf(network.CodeInvalidParameterValue, format, args...)
	}
	if r.Direction != Ingress && r.Direction != Egress {
		return bad("rule direction %q: want ingress or egress", r.Direction)
	}
	proto, ok := normalizeProtocol(r.Protocol)
	if !ok {
		return bad("protocol %q: want tcp, udp, icmp or all (6, 17, 1, -1)", r.Protocol)
	}
	switch proto {
	case TCP, UDP:
		if r.FromPort < 0 || r.FromPort > 65535 || r.ToPort < 0 || r.ToPort > 65535 {
			return bad("%s port range %d-%d: ports are 0 to 65535", proto, r.FromPort, r.ToPort)
		}
		if r.FromPort > r.ToPort {
			return bad("%s port range %d-%d: from-port is above to-port", proto, r.FromPort, r.ToPort)
		}
	case ICMP:
		if r.FromPort < -1 || r.FromPort > 255 || r.ToPort < -1 || r.ToPort > 255 {
			return bad("icmp type %d code %d: each is -1 (any) or 0 to 255", r.FromPort, r.ToPort)
		}
		if r.FromPort == -1 && r.ToPort != -1 {
			return bad("icmp code %d needs an icmp type", r.ToPort)
		}
	}
	hasCIDR, hasGroup := r.CIDR.IsValid(), r.Group != ""
	if hasCIDR == hasGroup {
		return bad("a rule names exactly one peer: a CIDR or a source group")
	}
	if hasCIDR {
		if !r.CIDR.Addr().Is4() {
			return bad("CIDR %s is not IPv4", r.CIDR)
		}
		if r.CIDR.Masked() != r.CIDR {
			return bad("CIDR %s has host bits set (did you mean %s?)", r.CIDR, r.CIDR.Masked())
		}
	}
	return nil
}

// String is the rule in nft-like words, for messages and tests.
func (r Rule) String() string {
	peer := r.Group
	if r.CIDR.IsValid() {
		peer = r.CIDR.String()
	}
	proto, _ := normalizeProtocol(r.Protocol)
	ports := ""
	switch proto {
	case TCP, UDP:
		ports = " " + strconv.Itoa(r.FromPort) + "-" + strconv.Itoa(r.ToPort)
	case ICMP:
		ports = fmt.Sprintf(" type %d code %d", r.FromPort, r.ToPort)
	}
	return fmt.Sprintf("%s %s%s %s", r.Direction, proto, ports, peer)
}
