// Package vpc makes a VPC out of Linux parts: a network namespace that
// gureum creates, a bridge inside it that plays the VPC router, and one tap
// per instance interface plugged into the bridge.
//
//	          VPC namespace gureum-vpc-<id>
//	┌──────────────────────────────────────────────────────┐
//	│  gureum-br0 (bridge): 10.1.1.1/24 10.1.2.1/24 …       │
//	│                       169.254.169.254/32 (metadata)   │
//	│     │           │            │                        │
//	│   tapA        tapB       veth (a test host or LB)     │
//	└─────┼───────────┼─────────────────────────────────────┘
//	   VMM of A    VMM of B      (each holds its tap's fd)
//
// The bridge carries every subnet's gateway address (.1), so instances in
// different subnets of one VPC reach each other through it as through a
// router, and instances of one subnet directly as on a switch. Nothing
// connects the namespace to the host's own network: different VPCs cannot
// see each other, and guests cannot reach the host's addresses. The one
// exception is asked for explicitly: an uplink (uplink.go) lets a VPC's
// guests out through the host with NAT.
//
// Handoff to the VMM. A tap is attached to the namespace it was created
// in; gureum-vmm opens its tap by name (tap.Open) in the namespace of the
// thread that calls it. So the daemon either starts the VMM inside the
// namespace (Start: the child is forked from a thread that has entered the
// namespace and inherits it), or opens the tap itself (OpenTap, returning
// an fd bound to the tap) and passes the fd down to a VMM that takes one
// (tap.FromFile). The taps are persistent: they exist from AddTap to
// RemoveTap whether or not a VMM has them open, so a VMM restart finds its
// tap where it left it.
//
// All functions may be called from any goroutine; the kernel serialises the
// changes. The caller (the daemon) keeps the desired state and must not
// change one VPC from two places at once.
package vpc

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"gureum/network"
	"gureum/network/namespace"
)

// NamespacePrefix starts the name of every namespace gureum makes for a
// VPC, so that startup cleanup can find those no VPC owns.
const NamespacePrefix = "gureum-vpc-"

// BridgeName is the bridge inside every VPC namespace (interface names are
// per namespace, so every VPC can use the same one).
const BridgeName = "gureum-br0"

// MetadataAddr is the instance metadata service's address, on the bridge.
var MetadataAddr = netip.MustParseAddr("169.254.169.254")

// VPC is a VPC namespace that exists.
type VPC struct {
	id string
}

// NamespaceName is the namespace of VPC id ("vpc-0abc" → "gureum-vpc-0abc").
func NamespaceName(id string) string {
	return NamespacePrefix + strings.TrimPrefix(id, "vpc-")
}

// idFromNamespace inverts NamespaceName.
func idFromNamespace(name string) string {
	return "vpc-" + strings.TrimPrefix(name, NamespacePrefix)
}

// TapName is the tap of interface id: "tap" and 12 hex digits of a hash of
// id, because interface names hold at most 15 bytes while EC2-style IDs
// are longer. It is the same on every call, so the daemon need not store it.
func TapName(interfaceID string) string {
	sum := sha256.Sum256([]byte(interfaceID))
	return "tap" + hex.EncodeToString(sum[:6])
}

func checkID(id string) error {
	if !strings.HasPrefix(id, "vpc-") || len(id) < 5 || len(id) > 40 || strings.ContainsAny(id, "/ \x00") {
		return network.Errorf(network.CodeInvalidParameterValue, "bad VPC ID %q (want vpc-…)", id)
	}
	return nil
}

// ownerAliasPrefix starts the alias of a VPC's bridge that names the
// daemon owning the VPC (see Create and RemoveOrphans).
const ownerAliasPrefix = "gureum-owner="

// Create makes the namespace of VPC id with its bridge up and the metadata
// address on it. owner, if not empty, names who made it (a daemon: a
// string unique to it on the host); it is kept as the bridge's alias, and
// RemoveOrphans removes only VPCs of the owner it is given, so that two
// daemons (or a daemon and a benchmark) on one host leave each other's
// VPCs alone. It fails with InvalidParameterValue.AlreadyExists if the
// namespace exists. A failure part-way removes what was made.
func Create(id, owner string) (*VPC, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	name := NamespaceName(id)
	if namespace.Exists(name) {
		return nil, network.Errorf(network.CodeAlreadyExists, "VPC %s already exists", id)
	}
	if err := namespace.Create(name); err != nil {
		return nil, fmt.Errorf("create VPC %s: %w", id, err)
	}
	v := &VPC{id: id}
	if err := v.setUp(owner); err != nil {
		namespace.Delete(name)
		return nil, fmt.Errorf("create VPC %s: %w", id, err)
	}
	return v, nil
}

// setUp makes the bridge and turns on bridge netfilter (see secgroup: the
// security groups' stateful rules see bridged IPv4 packets through it).
func (v *VPC) setUp(owner string) error {
	err := v.Do(func() error {
		for _, f := range []string{"bridge-nf-call-iptables", "bridge-nf-call-ip6tables"} {
			if err := os.WriteFile("/proc/sys/net/bridge/"+f, []byte("1"), 0); err != nil {
				return fmt.Errorf("enable bridge netfilter: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return v.withHandle(func(h *netlink.Handle) error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: BridgeName}}
		if err := h.LinkAdd(br); err != nil {
			return fmt.Errorf("add bridge: %w", err)
		}
		link, err := h.LinkByName(BridgeName)
		if err != nil {
			return fmt.Errorf("find bridge: %w", err)
		}
		if owner != "" {
			if err := h.LinkSetAlias(link, ownerAliasPrefix+owner); err != nil {
				return fmt.Errorf("bridge alias: %w", err)
			}
		}
		meta := &netlink.Addr{IPNet: &net.IPNet{IP: MetadataAddr.AsSlice(), Mask: net.CIDRMask(32, 32)}}
		if err := h.AddrAdd(link, meta); err != nil {
			return fmt.Errorf("add metadata address: %w", err)
		}
		if err := h.LinkSetUp(link); err != nil {
			return fmt.Errorf("bridge up: %w", err)
		}
		return nil
	})
}

// Open returns an existing VPC, or InvalidVpcID.NotFound.
func Open(id string) (*VPC, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if !namespace.Exists(NamespaceName(id)) {
		return nil, network.Errorf(network.CodeVPCNotFound, "VPC %s does not exist", id)
	}
	return &VPC{id: id}, nil
}

// List returns the IDs of every VPC namespace on the host, sorted.
func List() ([]string, error) {
	names, err := namespace.List(NamespacePrefix)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(names))
	for _, n := range names {
		ids = append(ids, idFromNamespace(n))
	}
	sort.Strings(ids)
	return ids, nil
}

// ID is the VPC's ID.
func (v *VPC) ID() string { return v.id }

// Namespace is the name of the VPC's namespace (for `ip netns exec`).
func (v *VPC) Namespace() string { return NamespaceName(v.id) }

// Delete removes the VPC's namespace and with it the bridge, addresses and
// firewall. It is refused with DependencyViolation while taps exist: the
// daemon removes every instance interface first. Servers listening in the
// namespace (DHCP, metadata) must be closed before: an open socket keeps
// the namespace alive, nameless.
func (v *VPC) Delete() error {
	taps, err := v.Taps()
	if err != nil {
		return err
	}
	if len(taps) > 0 {
		return network.Errorf(network.CodeDependencyViolation, "VPC %s still has interfaces (taps %s)", v.id, strings.Join(taps, ", "))
	}
	return v.destroy()
}

func (v *VPC) destroy() error {
	// The uplink's host-side table outlives the namespace, so it goes
	// first; its veth pair goes with the namespace. A VPC without an
	// uplink has nothing to lose here: an error then (nftables missing,
	// say) leaves at most a stale table, which RemoveOrphans removes.
	if err := removeHostUplink(v.id); err != nil && HasUplink(v.id) {
		return fmt.Errorf("delete VPC %s: uplink: %w", v.id, err)
	}
	if err := namespace.Delete(v.Namespace()); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return network.Errorf(network.CodeVPCNotFound, "VPC %s does not exist", v.id)
		}
		return fmt.Errorf("delete VPC %s: %w", v.id, err)
	}
	return nil
}

// Owner returns the owner the VPC was created with ("" if none).
func (v *VPC) Owner() (string, error) {
	var owner string
	err := v.withHandle(func(h *netlink.Handle) error {
		link, err := h.LinkByName(BridgeName)
		if err != nil {
			return fmt.Errorf("find bridge: %w", err)
		}
		owner, _ = strings.CutPrefix(link.Attrs().Alias, ownerAliasPrefix)
		return nil
	})
	return owner, err
}

// SetOwner records owner as the VPC's owner (see Create), for a VPC made
// without one.
func (v *VPC) SetOwner(owner string) error {
	return v.withHandle(func(h *netlink.Handle) error {
		link, err := h.LinkByName(BridgeName)
		if err != nil {
			return fmt.Errorf("find bridge: %w", err)
		}
		return h.LinkSetAlias(link, ownerAliasPrefix+owner)
	})
}

// RemoveOrphans deletes every VPC namespace of owner whose ID owned does
// not claim, taps, uplink and all, and returns the IDs it removed; VPCs of
// other owners, or without one, are left alone. It also removes host-side
// uplink tables whose namespace is gone. The daemon calls it at start with
// its own list of VPCs, after re-adopting running VMMs.
func RemoveOrphans(owner string, owned func(id string) bool) ([]string, error) {
	if owner == "" {
		return nil, errors.New("remove orphan VPCs: no owner given")
	}
	ids, err := List()
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, id := range ids {
		if owned(id) {
			continue
		}
		if o, err := (&VPC{id: id}).Owner(); err != nil || o != owner {
			continue // another's, or half made by someone: not ours to judge
		}
		if err := (&VPC{id: id}).destroy(); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, id)
	}
	if err := removeStaleUplinks(); err != nil {
		errs = append(errs, err)
	}
	return removed, errors.Join(errs...)
}

// Do runs fn on a thread inside the VPC's namespace (see namespace.Do).
// Sockets fn opens stay in the namespace: this is how servers and dialers
// for the VPC are made.
func (v *VPC) Do(fn func() error) error {
	return namespace.Do(v.Namespace(), fn)
}

// withHandle runs fn with a netlink socket opened in the namespace.
func (v *VPC) withHandle(fn func(h *netlink.Handle) error) error {
	ns, err := netns.GetFromPath(namespace.Path(v.Namespace()))
	if err != nil {
		return fmt.Errorf("VPC %s: open namespace: %w", v.id, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("VPC %s: netlink: %w", v.id, err)
	}
	defer h.Close()
	return fn(h)
}

// AddGateway puts a subnet's router address (gateway/prefix length, as
// 10.1.1.1/24) on the bridge. Adding one that is there already is not an
// error, so the daemon can replay its subnets after a restart.
func (v *VPC) AddGateway(gw netip.Prefix) error {
	return v.withHandle(func(h *netlink.Handle) error {
		br, err := h.LinkByName(BridgeName)
		if err != nil {
			return fmt.Errorf("VPC %s: find bridge: %w", v.id, err)
		}
		err = h.AddrAdd(br, &netlink.Addr{IPNet: prefixToIPNet(gw)})
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("VPC %s: add gateway %s: %w", v.id, gw, err)
		}
		return nil
	})
}

// RemoveGateway takes a subnet's router address off the bridge.
func (v *VPC) RemoveGateway(gw netip.Prefix) error {
	return v.withHandle(func(h *netlink.Handle) error {
		br, err := h.LinkByName(BridgeName)
		if err != nil {
			return fmt.Errorf("VPC %s: find bridge: %w", v.id, err)
		}
		err = h.AddrDel(br, &netlink.Addr{IPNet: prefixToIPNet(gw)})
		if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("VPC %s: remove gateway %s: %w", v.id, gw, err)
		}
		return nil
	})
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
