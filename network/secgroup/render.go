package secgroup

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The rendered rule set, in nft's words (P is a port, A its address):
//
//	table bridge gureum-ports {
//	  chain prerouting { type filter hook prerouting priority -300; policy accept;
//	    iifname P ether saddr != MAC(P) drop
//	    iifname P ether type arp arp saddr ip A accept      (and 0.0.0.0: ARP probes)
//	    iifname P ether type ip ip saddr A accept
//	    iifname P ether type ip ip saddr 0.0.0.0 udp dport 67 accept   (DHCP)
//	    iifname P drop                                      (anything else: IPv6, spoofs)
//	  } }
//	table inet gureum {
//	  chain forward { type filter hook forward priority 0; policy accept;
//	    ct state established,related accept
//	    ct state invalid drop
//	    ip saddr A jump egress-P      (returns if allowed, drops if not)
//	    ip daddr A jump ingress-P     (accepts if allowed, drops if not)
//	  }
//	  chain output { type filter hook output priority 0; policy accept;
//	    ct state established,related accept
//	    ip daddr A jump ingress-P }   (the namespace's own traffic to a port)
//	  chain egress-P  { <rule> return …; drop }
//	  chain ingress-P { <rule> accept …; drop }
//	}
//
// Egress rules end in "return", not "accept": accept would end the whole
// forward hook, and the packet would skip the receiver's ingress chain.
// Traffic from a port to the namespace itself (DHCP, metadata, the
// gateway) meets no group rule, as in EC2.

func rulesTable() *nftables.Table {
	return &nftables.Table{Name: RulesTable, Family: nftables.TableFamilyINet}
}

func portsTable() *nftables.Table {
	return &nftables.Table{Name: PortsTable, Family: nftables.TableFamilyBridge}
}

// render queues the whole rule set on c. Each table is added (a no-op if it
// exists), deleted and added again, so the batch never fails for a missing
// table and replaces whatever was there.
func (p *plan) render(c *nftables.Conn) {
	ports := portsTable()
	rules := rulesTable()
	for _, t := range []*nftables.Table{ports, rules} {
		c.AddTable(t)
		c.DelTable(t)
		c.AddTable(t)
	}
	p.renderPorts(c, ports)
	p.renderRules(c, rules)
}

func (p *plan) renderPorts(c *nftables.Conn, t *nftables.Table) {
	pre := c.AddChain(&nftables.Chain{
		Name: "prerouting", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(-300),
		Policy: policy(nftables.ChainPolicyAccept),
	})
	add := func(e ...expr.Any) { c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: e}) }
	zero := netip.IPv4Unspecified()
	for _, port := range p.ports {
		in := iifname(port.Name)
		add(cat(in, etherSaddr(expr.CmpOpNeq, port.MAC), verdict(expr.VerdictDrop))...)
		for _, a := range []netip.Addr{port.Address, zero} {
			add(cat(in, etherType(unix.ETH_P_ARP), arpSenderIP(a), verdict(expr.VerdictAccept))...)
		}
		add(cat(in, etherType(unix.ETH_P_IP), loadCmp(expr.PayloadBaseNetworkHeader, 12, port.Address.AsSlice()), verdict(expr.VerdictAccept))...)
		add(cat(in, etherType(unix.ETH_P_IP), loadCmp(expr.PayloadBaseNetworkHeader, 12, zero.AsSlice()),
			loadCmp(expr.PayloadBaseNetworkHeader, 9, []byte{unix.IPPROTO_UDP}), portRange(67, 67), verdict(expr.VerdictAccept))...)
		add(cat(in, verdict(expr.VerdictDrop))...)
	}
}

func (p *plan) renderRules(c *nftables.Conn, t *nftables.Table) {
	forward := c.AddChain(&nftables.Chain{
		Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter,
		Policy: policy(nftables.ChainPolicyAccept),
	})
	output := c.AddChain(&nftables.Chain{
		Name: "output", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter,
		Policy: policy(nftables.ChainPolicyAccept),
	})
	for _, base := range []*nftables.Chain{forward, output} {
		c.AddRule(&nftables.Rule{Table: t, Chain: base, Exprs: cat(ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept))})
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: forward, Exprs: cat(ctState(expr.CtStateBitINVALID), verdict(expr.VerdictDrop))})

	for _, port := range p.ports {
		egress := c.AddChain(&nftables.Chain{Name: "egress-" + port.Name, Table: t})
		ingress := c.AddChain(&nftables.Chain{Name: "ingress-" + port.Name, Table: t})
		for _, r := range p.rulesOf(port, Egress) {
			for _, m := range p.matches(r) {
				c.AddRule(&nftables.Rule{Table: t, Chain: egress, Exprs: cat(m, verdict(expr.VerdictReturn))})
			}
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: egress, Exprs: verdict(expr.VerdictDrop)})
		for _, r := range p.rulesOf(port, Ingress) {
			for _, m := range p.matches(r) {
				c.AddRule(&nftables.Rule{Table: t, Chain: ingress, Exprs: cat(m, verdict(expr.VerdictAccept))})
			}
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: ingress, Exprs: verdict(expr.VerdictDrop)})

		addr := port.Address.AsSlice()
		c.AddRule(&nftables.Rule{Table: t, Chain: forward, Exprs: cat(ipv4(), loadCmp(expr.PayloadBaseNetworkHeader, 12, addr), jump(egress.Name))})
	}
	for _, port := range p.ports {
		addr := port.Address.AsSlice()
		for _, base := range []*nftables.Chain{forward, output} {
			c.AddRule(&nftables.Rule{Table: t, Chain: base, Exprs: cat(ipv4(), loadCmp(expr.PayloadBaseNetworkHeader, 16, addr), jump("ingress-"+port.Name))})
		}
	}
}

// matches turns a rule into one expression list per peer: one for a CIDR,
// one per member for a source group (none if the group is empty). The
// peer is the packet's source for ingress and its destination for egress.
func (p *plan) matches(r Rule) [][]expr.Any {
	peerOffset := uint32(12) // ip saddr
	if r.Direction == Egress {
		peerOffset = 16 // ip daddr
	}
	head := ipv4()
	proto, _ := normalizeProtocol(r.Protocol)
	switch proto {
	case TCP:
		head = cat(head, l4proto(unix.IPPROTO_TCP), portRange(r.FromPort, r.ToPort))
	case UDP:
		head = cat(head, l4proto(unix.IPPROTO_UDP), portRange(r.FromPort, r.ToPort))
	case ICMP:
		head = cat(head, l4proto(unix.IPPROTO_ICMP))
		if r.FromPort >= 0 {
			head = cat(head, loadCmp(expr.PayloadBaseTransportHeader, 0, []byte{byte(r.FromPort)}))
		}
		if r.ToPort >= 0 {
			head = cat(head, loadCmp(expr.PayloadBaseTransportHeader, 1, []byte{byte(r.ToPort)}))
		}
	}
	if r.CIDR.IsValid() {
		if r.CIDR.Bits() == 0 {
			return [][]expr.Any{head}
		}
		return [][]expr.Any{cat(head, cidr(peerOffset, r.CIDR))}
	}
	var out [][]expr.Any
	for _, a := range p.members[r.Group] {
		out = append(out, cat(head, loadCmp(expr.PayloadBaseNetworkHeader, peerOffset, a.AsSlice())))
	}
	return out
}

// Expression builders. Each loads a field into register 1 and compares it;
// nftables runs a rule's expressions in order and stops at the first
// comparison that fails.

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func policy(p nftables.ChainPolicy) *nftables.ChainPolicy { return &p }

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

func jump(chain string) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}
}

// iifname matches the input interface; names are compared as the kernel
// stores them, zero-padded to IFNAMSIZ.
func iifname(name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b},
	}
}

// etherType matches the frame's EtherType (meta protocol, big-endian).
func etherType(t uint16) []expr.Any {
	b := make([]byte, 2)
	binary.BigEndian.PutUint16(b, t)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b},
	}
}

func etherSaddr(op expr.CmpOp, mac net.HardwareAddr) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6},
		&expr.Cmp{Op: op, Register: 1, Data: []byte(mac)},
	}
}

// arpSenderIP matches the sender protocol address of an Ethernet/IPv4
// ARP packet: 8 bytes of header, 6 of sender MAC, then the address.
func arpSenderIP(a netip.Addr) []expr.Any {
	return loadCmp(expr.PayloadBaseNetworkHeader, 14, a.AsSlice())
}

func loadCmp(base expr.PayloadBase, offset uint32, data []byte) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: base, Offset: offset, Len: uint32(len(data))},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data},
	}
}

// ipv4 makes the rest of an inet rule apply to IPv4 only (the payload
// offsets below are IPv4's).
func ipv4() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
	}
}

func l4proto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

// portRange matches the TCP or UDP destination port (bytes 2–3 of both
// headers).
func portRange(from, to int) []expr.Any {
	lo, hi := make([]byte, 2), make([]byte, 2)
	binary.BigEndian.PutUint16(lo, uint16(from))
	binary.BigEndian.PutUint16(hi, uint16(to))
	load := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
	if from == to {
		return []expr.Any{load, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: lo}}
	}
	return []expr.Any{load, &expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: lo, ToData: hi}}
}

// cidr matches an IPv4 address field against a network: mask, compare.
func cidr(offset uint32, p netip.Prefix) []expr.Any {
	mask := net.CIDRMask(p.Bits(), 32)
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Masked().Addr().AsSlice()},
	}
}

// ctState matches packets whose conntrack state has any of bits.
func ctState(bits uint32) []expr.Any {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, bits)
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: b, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
	}
}
