package vpc

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"gureum/network/namespace"
)

// The uplink: an optional way out of a VPC, off unless asked for.
//
// A VPC on its own is closed: nothing links its namespace to the host's
// network. AddUplink adds a veth pair, a virtual cable whose two ends live
// in different namespaces:
//
//	 guest 10.1.1.5 ─ tap ─ gureum-br0 (10.1.1.1)            host namespace
//	                        │ VPC namespace           ┌──────────────────────┐
//	                        └ routes via gureum-up0 ──┤ gupXXXXXXXXXXXX       │
//	                          100.127.a.b+2/30        │ 100.127.a.b+1/30     │
//	                          masquerade out of it    │ masquerade out of    │
//	                                                  │ every other interface│
//	                                                  └──── eth0 ── outside ─┘
//
// A guest's packet to the outside goes to its gateway, the bridge; the VPC
// namespace routes it (IPv4 forwarding is on there) through its default
// route into the veth, rewriting the source to its end's address
// (masquerade, in table ip gureum-uplink). The host receives it on its end
// and routes it like any other packet (IPv4 forwarding on), rewriting the
// source again to the address of whatever interface it leaves by (table
// ip gureum-uplink-<id> in the host's namespace). Conntrack remembers both
// rewrites and undoes them on the replies. Two rewrites because VPCs may
// use the same CIDRs: after the first, every VPC's traffic has a source
// address that is unique on the host.
//
// The host-side table also keeps guests out of the host and of other
// VPCs' uplinks: from its veth end the host accepts only replies to
// connections it opened, and forwards nothing into another uplink.
//
// Link addresses are a /30 from UplinkRange (RFC 6598 shared address
// space, which home and cloud networks rarely use), chosen from a hash of
// the VPC ID and moved on while it collides with an address of the host
// or of the VPC's bridge.
//
// The veth pair disappears with the VPC namespace; the host-side table
// does not, so destroy (Delete, RemoveOrphans) removes it explicitly, and
// RemoveOrphans also removes tables whose namespace is gone.

// UplinkRange holds the /30 link networks of every uplink.
var UplinkRange = netip.MustParsePrefix("100.127.0.0/16")

// Names of the uplink's parts.
const (
	// UplinkPort is the VPC namespace's end of the veth pair.
	UplinkPort = "gureum-up0"
	// UplinkHostPrefix starts the host end's name (see UplinkHostName).
	UplinkHostPrefix = "gup"
	// UplinkTable is the nftables table (family ip) in the VPC namespace.
	UplinkTable = "gureum-uplink"
	// UplinkHostTablePrefix starts the name of each VPC's table (family
	// ip) in the host's namespace; the VPC ID without "vpc-" follows.
	UplinkHostTablePrefix = "gureum-uplink-"
)

// Uplink describes an existing uplink.
type Uplink struct {
	HostInterface string       // host end of the veth pair
	HostAddress   netip.Prefix // on HostInterface; the VPC's default gateway
	VPCAddress    netip.Prefix // on UplinkPort; guests' traffic leaves with it
	HostTable     string       // the host-side nftables table
}

// UplinkHostName is the host end of VPC id's veth: "gup" and 12 hex
// digits of a hash of the ID (interface names hold 15 bytes).
func UplinkHostName(id string) string {
	sum := sha256.Sum256([]byte(id))
	return UplinkHostPrefix + hex.EncodeToString(sum[:6])
}

// uplinkHostTable is the host-side table of VPC id.
func uplinkHostTable(id string) string {
	return UplinkHostTablePrefix + strings.TrimPrefix(id, "vpc-")
}

// AddUplink connects the VPC to the host's network as described at the
// top of this file, and turns on IPv4 forwarding in the VPC namespace and
// in the host's (net.ipv4.ip_forward=1, which stays on after the uplink
// is gone: other things on the host may rely on it by then). It fails
// with os.ErrExist if the VPC has an uplink; a failure part-way removes
// what was made. The caller serialises changes to one VPC.
func (v *VPC) AddUplink() (Uplink, error) {
	if _, ok, err := v.Uplink(); err != nil {
		return Uplink{}, err
	} else if ok {
		return Uplink{}, fmt.Errorf("VPC %s: uplink: %w", v.id, os.ErrExist)
	}
	u, err := v.pickUplink()
	if err != nil {
		return Uplink{}, err
	}
	if err := v.makeUplink(u); err != nil {
		if rerr := v.RemoveUplink(); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return Uplink{}, fmt.Errorf("VPC %s: uplink: %w", v.id, err)
	}
	return u, nil
}

// pickUplink chooses the link network: the /30 of UplinkRange a hash of
// the ID points at, or the next one free of the host's and the bridge's
// addresses.
func (v *VPC) pickUplink() (Uplink, error) {
	used, err := hostPrefixes()
	if err != nil {
		return Uplink{}, err
	}
	info, err := v.Describe()
	if err != nil {
		return Uplink{}, err
	}
	used = append(used, info.Gateways...)
	sum := sha256.Sum256([]byte(v.id))
	blocks := uint32(1) << (30 - UplinkRange.Bits())
	base := binary.BigEndian.Uint32(UplinkRange.Addr().AsSlice())
	start := binary.BigEndian.Uint32(sum[:4]) % blocks
	for i := uint32(0); i < blocks; i++ {
		n := base + (start+i)%blocks*4
		link := netip.PrefixFrom(addrFromUint32(n), 30)
		if overlapsAny(link, used) {
			continue
		}
		return Uplink{
			HostInterface: UplinkHostName(v.id),
			HostAddress:   netip.PrefixFrom(addrFromUint32(n+1), 30),
			VPCAddress:    netip.PrefixFrom(addrFromUint32(n+2), 30),
			HostTable:     uplinkHostTable(v.id),
		}, nil
	}
	return Uplink{}, fmt.Errorf("VPC %s: uplink: every /30 of %s is in use", v.id, UplinkRange)
}

func addrFromUint32(n uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], n)
	return netip.AddrFrom4(b)
}

func overlapsAny(p netip.Prefix, others []netip.Prefix) bool {
	for _, o := range others {
		if p.Overlaps(o) {
			return true
		}
	}
	return false
}

// hostPrefixes lists the IPv4 networks of the host's own addresses.
func hostPrefixes() ([]netip.Prefix, error) {
	addrs, err := netlink.AddrList(nil, unix.AF_INET)
	if err != nil {
		return nil, fmt.Errorf("list host addresses: %w", err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		if !ok {
			continue
		}
		bits, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip, bits).Masked())
	}
	return out, nil
}

// makeUplink creates the pair, addresses, route, forwarding and tables of
// u, in that order.
func (v *VPC) makeUplink(u Uplink) error {
	vpcNS, err := netns.GetFromPath(namespace.Path(v.Namespace()))
	if err != nil {
		return fmt.Errorf("open namespace: %w", err)
	}
	defer vpcNS.Close()
	// The pair is made in the host's namespace (this goroutine's thread
	// is in it: only namespace.Do moves threads, and it moves them back)
	// with its peer created directly inside the VPC's.
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: u.HostInterface},
		PeerName:      UplinkPort,
		PeerNamespace: netlink.NsFd(vpcNS),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s: %w", u.HostInterface, err)
	}
	host, err := netlink.LinkByName(u.HostInterface)
	if err != nil {
		return fmt.Errorf("find %s: %w", u.HostInterface, err)
	}
	if err := netlink.AddrAdd(host, &netlink.Addr{IPNet: prefixToIPNet(u.HostAddress)}); err != nil {
		return fmt.Errorf("address %s on %s: %w", u.HostAddress, u.HostInterface, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("set %s up: %w", u.HostInterface, err)
	}
	err = v.withHandle(func(h *netlink.Handle) error {
		link, err := h.LinkByName(UplinkPort)
		if err != nil {
			return fmt.Errorf("find %s: %w", UplinkPort, err)
		}
		if err := h.AddrAdd(link, &netlink.Addr{IPNet: prefixToIPNet(u.VPCAddress)}); err != nil {
			return fmt.Errorf("address %s on %s: %w", u.VPCAddress, UplinkPort, err)
		}
		if err := h.LinkSetUp(link); err != nil {
			return fmt.Errorf("set %s up: %w", UplinkPort, err)
		}
		route := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: u.HostAddress.Addr().AsSlice()}
		if err := h.RouteAdd(route); err != nil {
			return fmt.Errorf("default route via %s: %w", u.HostAddress.Addr(), err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := v.Do(enableForwarding); err != nil {
		return fmt.Errorf("in the VPC namespace: %w", err)
	}
	if err := enableForwarding(); err != nil {
		return fmt.Errorf("on the host: %w", err)
	}
	if err := withNftables(vpcNS, func(c *nftables.Conn) error {
		renderVPCUplink(c)
		return nil
	}); err != nil {
		return fmt.Errorf("VPC-side nftables: %w", err)
	}
	if err := withNftables(netns.None(), func(c *nftables.Conn) error {
		renderHostUplink(c, u)
		return nil
	}); err != nil {
		return fmt.Errorf("host-side nftables: %w", err)
	}
	return nil
}

// enableForwarding sets net.ipv4.ip_forward in the calling thread's
// namespace (the /proc/sys/net files show the reader's namespace).
func enableForwarding() error {
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0); err != nil {
		return fmt.Errorf("enable IPv4 forwarding: %w", err)
	}
	return nil
}

// withNftables runs fn with an nftables connection in namespace ns (or,
// for netns.None(), in the calling thread's) and sends what fn queued as
// one batch: all of it takes effect, or none.
func withNftables(ns netns.NsHandle, fn func(c *nftables.Conn) error) error {
	var opts []nftables.ConnOption
	if ns.IsOpen() {
		opts = append(opts, nftables.WithNetNSFd(int(ns)))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	defer c.CloseLasting()
	if err := fn(c); err != nil {
		return err
	}
	return c.Flush()
}

// Uplink reports the VPC's uplink, read from the kernel: ok is false when
// it has none.
func (v *VPC) Uplink() (u Uplink, ok bool, err error) {
	name := UplinkHostName(v.id)
	link, err := netlink.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return Uplink{}, false, nil
	}
	if err != nil {
		return Uplink{}, false, fmt.Errorf("VPC %s: find %s: %w", v.id, name, err)
	}
	u = Uplink{HostInterface: name, HostTable: uplinkHostTable(v.id)}
	addrs, err := netlink.AddrList(link, unix.AF_INET)
	if err != nil {
		return Uplink{}, false, fmt.Errorf("VPC %s: addresses of %s: %w", v.id, name, err)
	}
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP.To4())
		bits, _ := a.Mask.Size()
		if bits == 30 {
			u.HostAddress = netip.PrefixFrom(ip, bits)
			u.VPCAddress = netip.PrefixFrom(ip.Next(), bits)
		}
	}
	return u, true, nil
}

// HasUplink reports whether VPC id has an uplink (its host end exists).
// It does not check that the VPC exists.
func HasUplink(id string) bool {
	_, err := net.InterfaceByName(UplinkHostName(id))
	return err == nil
}

// RemoveUplink removes the VPC's uplink: the host-side table, the veth
// pair (deleting one end deletes both; the VPC's default route goes with
// it) and the VPC-side table. Forwarding stays on in both namespaces.
// Removing a missing uplink is not an error.
func (v *VPC) RemoveUplink() error {
	var errs []error
	if err := removeHostUplink(v.id); err != nil {
		errs = append(errs, err)
	}
	if namespace.Exists(v.Namespace()) {
		if err := removeVPCUplinkTable(v.Namespace()); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("VPC %s: remove uplink: %w", v.id, err)
	}
	return nil
}

// removeVPCUplinkTable removes the uplink's table from VPC namespace ns.
func removeVPCUplinkTable(ns string) error {
	h, err := netns.GetFromPath(namespace.Path(ns))
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", ns, err)
	}
	defer h.Close()
	err = withNftables(h, func(c *nftables.Conn) error {
		t := &nftables.Table{Name: UplinkTable, Family: nftables.TableFamilyIPv4}
		c.AddTable(t) // a no-op if it exists, so the delete cannot fail on a missing table
		c.DelTable(t)
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove VPC-side table: %w", err)
	}
	return nil
}

// removeHostUplink removes VPC id's host-side table and host veth end, if
// there.
func removeHostUplink(id string) error {
	var errs []error
	err := withNftables(netns.None(), func(c *nftables.Conn) error {
		t := &nftables.Table{Name: uplinkHostTable(id), Family: nftables.TableFamilyIPv4}
		c.AddTable(t)
		c.DelTable(t)
		return nil
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("remove host-side table: %w", err))
	}
	link, err := netlink.LinkByName(UplinkHostName(id))
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
	case err != nil:
		errs = append(errs, fmt.Errorf("find %s: %w", UplinkHostName(id), err))
	case link.Type() != "veth":
		errs = append(errs, fmt.Errorf("%s is a %s, not a veth", UplinkHostName(id), link.Type()))
	default:
		if err := netlink.LinkDel(link); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", UplinkHostName(id), err))
		}
	}
	return errors.Join(errs...)
}

// removeStaleUplinks removes host-side uplink tables whose VPC namespace
// is gone (deleted by hand, say): their veth went with the namespace.
func removeStaleUplinks() error {
	var stale []string
	err := withNftables(netns.None(), func(c *nftables.Conn) error {
		tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
		if err != nil {
			return fmt.Errorf("list host tables: %w", err)
		}
		for _, t := range tables {
			if !strings.HasPrefix(t.Name, UplinkHostTablePrefix) {
				continue
			}
			id := "vpc-" + strings.TrimPrefix(t.Name, UplinkHostTablePrefix)
			if !namespace.Exists(NamespaceName(id)) {
				c.DelTable(t)
				stale = append(stale, t.Name)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove stale uplink tables %v: %w", stale, err)
	}
	return nil
}
