package vpc

import (
	"encoding/binary"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The uplink's nftables rules, in nft's words (P is UplinkPort, H the host
// end, V the VPC end's address):
//
//	VPC namespace:
//	table ip gureum-uplink {
//	  chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//	    oifname P masquerade }                     guests leave as V
//	  chain forward { type filter hook forward priority filter; policy accept;
//	    iifname P ct state established,related accept
//	    iifname P drop }                           nobody outside opens a connection to a guest
//	  chain input { type filter hook input priority filter; policy accept;
//	    iifname P ct state established,related accept
//	    iifname P drop }                           nor to the VPC's own servers
//	}
//
//	host namespace:
//	table ip gureum-uplink-<id> {
//	  chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//	    ip saddr V oifname != H masquerade }        V leaves as the host's address
//	  chain forward { type filter hook forward priority filter; policy accept;
//	    iifname H oifname "gup*" drop }             not into another VPC's uplink
//	  chain input { type filter hook input priority filter; policy accept;
//	    iifname H ct state established,related accept
//	    iifname H drop }                            guests do not reach the host's services
//	}
//
// Each render adds, deletes and adds its table again in one batch, so it
// replaces whatever was there and never fails on a missing table.

// renderVPCUplink queues the VPC namespace's table on c.
func renderVPCUplink(c *nftables.Conn) {
	t := replaceTable(c, UplinkTable)
	post, forward, input := uplinkChains(c, t)
	c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: cat(ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, UplinkPort), masquerade())})
	for _, ch := range []*nftables.Chain{forward, input} {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: cat(ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, UplinkPort), established(), accept())})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: cat(ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, UplinkPort), drop())})
	}
}

// renderHostUplink queues u's table in the host's namespace on c.
func renderHostUplink(c *nftables.Conn, u Uplink) {
	t := replaceTable(c, u.HostTable)
	post, forward, input := uplinkChains(c, t)
	saddr := []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: u.VPCAddress.Addr().AsSlice()},
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: cat(saddr, ifname(expr.MetaKeyOIFNAME, expr.CmpOpNeq, u.HostInterface), masquerade())})
	// A wildcard name ("gup*") compares only the prefix's bytes, without
	// the terminating zero an exact name is padded with.
	anyUplink := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(UplinkHostPrefix)},
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: forward, Exprs: cat(ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, u.HostInterface), anyUplink, drop())})
	c.AddRule(&nftables.Rule{Table: t, Chain: input, Exprs: cat(ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, u.HostInterface), established(), accept())})
	c.AddRule(&nftables.Rule{Table: t, Chain: input, Exprs: cat(ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, u.HostInterface), drop())})
}

// replaceTable queues the removal of table name (family ip), if there, and
// its creation afresh.
func replaceTable(c *nftables.Conn, name string) *nftables.Table {
	t := &nftables.Table{Name: name, Family: nftables.TableFamilyIPv4}
	c.AddTable(t)
	c.DelTable(t)
	return c.AddTable(t)
}

// uplinkChains adds the three base chains both tables use, all with
// policy accept: they only add restrictions to what other tables decide.
func uplinkChains(c *nftables.Conn, t *nftables.Table) (post, forward, input *nftables.Chain) {
	accept := nftables.ChainPolicyAccept
	post = c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})
	forward = c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	input = c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	return post, forward, input
}

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// ifname compares the input or output interface's name, zero-padded to
// IFNAMSIZ as the kernel stores it.
func ifname(key expr.MetaKey, op expr.CmpOp, name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: b},
	}
}

// established matches packets of connections conntrack has seen both ways
// (and ICMP errors about them).
func established() []expr.Any {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED)
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: b, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
	}
}

func masquerade() []expr.Any { return []expr.Any{&expr.Masq{}} }
func accept() []expr.Any     { return []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}} }
func drop() []expr.Any       { return []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}} }
