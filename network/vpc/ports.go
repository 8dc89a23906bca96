package vpc

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sort"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"gureum/network/namespace"
	"gureum/network/tap"
)

// AddTap creates a persistent tap named name (see TapName) in the
// namespace, plugs it into the bridge and sets it up. The guest's MAC is
// not set here: the tap's own MAC is the host end of the wire; the guest's
// is given to the VMM (--net TAP,mac=…), and the bridge learns it from the
// guest's first frame. Adding a tap that exists already only plugs it in
// again.
func (v *VPC) AddTap(name string) error {
	err := v.Do(func() error {
		if _, err := net.InterfaceByName(name); err == nil {
			return nil
		}
		if _, err := tap.Create(name); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("VPC %s: add tap %s: %w", v.id, name, err)
	}
	return v.withHandle(func(h *netlink.Handle) error {
		if err := plug(h, name); err != nil {
			return fmt.Errorf("VPC %s: tap %s: %w", v.id, name, err)
		}
		return nil
	})
}

// plug attaches link name to the bridge and sets it up.
func plug(h *netlink.Handle, name string) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find: %w", err)
	}
	br, err := h.LinkByName(BridgeName)
	if err != nil {
		return fmt.Errorf("find bridge: %w", err)
	}
	if err := h.LinkSetMaster(link, br); err != nil {
		return fmt.Errorf("attach to bridge: %w", err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	return nil
}

// RemoveTap deletes a tap. A VMM that still holds it open loses its wire
// (its writes fail); the daemon stops the VMM first. A missing tap is not
// an error, so terminate can be retried.
func (v *VPC) RemoveTap(name string) error {
	return v.withHandle(func(h *netlink.Handle) error {
		link, err := h.LinkByName(name)
		var notFound netlink.LinkNotFoundError
		if errors.As(err, &notFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("VPC %s: find tap %s: %w", v.id, name, err)
		}
		if link.Type() != "tuntap" {
			return fmt.Errorf("VPC %s: %s is a %s, not a tap", v.id, name, link.Type())
		}
		if err := h.LinkDel(link); err != nil {
			return fmt.Errorf("VPC %s: delete tap %s: %w", v.id, name, err)
		}
		return nil
	})
}

// Taps lists the taps in the namespace, sorted.
func (v *VPC) Taps() ([]string, error) {
	var names []string
	err := v.withHandle(func(h *netlink.Handle) error {
		links, err := h.LinkList()
		if err != nil {
			return fmt.Errorf("VPC %s: list links: %w", v.id, err)
		}
		for _, l := range links {
			if l.Type() == "tuntap" {
				names = append(names, l.Attrs().Name)
			}
		}
		return nil
	})
	sort.Strings(names)
	return names, err
}

// Info is what Describe reports from the kernel.
type Info struct {
	ID        string
	Namespace string
	Bridge    string
	// Gateways are the subnet router addresses on the bridge (the
	// metadata address is left out).
	Gateways []netip.Prefix
	// Ports are the interfaces plugged into the bridge (taps and veths).
	Ports []string
}

// Describe reads the VPC's bridge, gateways and ports from its namespace.
func (v *VPC) Describe() (Info, error) {
	info := Info{ID: v.id, Namespace: v.Namespace(), Bridge: BridgeName}
	err := v.withHandle(func(h *netlink.Handle) error {
		br, err := h.LinkByName(BridgeName)
		if err != nil {
			return fmt.Errorf("VPC %s: find bridge: %w", v.id, err)
		}
		addrs, err := h.AddrList(br, unix.AF_INET)
		if err != nil {
			return fmt.Errorf("VPC %s: list addresses: %w", v.id, err)
		}
		for _, a := range addrs {
			ip, _ := netip.AddrFromSlice(a.IP.To4())
			bits, _ := a.Mask.Size()
			if ip == MetadataAddr {
				continue
			}
			info.Gateways = append(info.Gateways, netip.PrefixFrom(ip, bits))
		}
		links, err := h.LinkList()
		if err != nil {
			return fmt.Errorf("VPC %s: list links: %w", v.id, err)
		}
		for _, l := range links {
			if l.Attrs().MasterIndex == br.Attrs().Index {
				info.Ports = append(info.Ports, l.Attrs().Name)
			}
		}
		return nil
	})
	sort.Strings(info.Ports)
	return info, err
}

// OpenTap opens an fd bound to tap name in the namespace, with the 12-byte
// virtio_net_hdr in front of every frame that gureum-vmm expects
// (tap.VnetHdrLen). The fd can be passed to a VMM process (exec.Cmd's
// ExtraFiles) which wraps it with tap.FromFile; the caller closes its copy
// once the child has it.
func (v *VPC) OpenTap(name string) (*os.File, error) {
	var f *os.File
	err := v.Do(func() error {
		if _, err := net.InterfaceByName(name); err != nil {
			return fmt.Errorf("find tap: %w", err)
		}
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			unix.Close(fd)
			return err
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("attach: %w", err)
		}
		if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, tap.VnetHdrLen); err != nil {
			unix.Close(fd)
			return fmt.Errorf("set vnet header size: %w", err)
		}
		f = os.NewFile(uintptr(fd), name)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("VPC %s: open tap %s: %w", v.id, name, err)
	}
	return f, nil
}

// Start starts cmd inside the VPC's namespace: the fork happens on a
// thread that has entered it, and a child inherits its parent thread's
// namespaces. This is how the daemon starts a gureum-vmm that opens its
// tap by name. cmd must not set SysProcAttr.Cloneflags to a new network
// namespace.
func (v *VPC) Start(cmd *exec.Cmd) error {
	err := v.Do(func() error { return cmd.Start() })
	if err != nil {
		return fmt.Errorf("VPC %s: start %s: %w", v.id, cmd.Path, err)
	}
	return nil
}

// Host describes the far end of ConnectNamespace: an interface in another
// namespace that sits on the VPC's bridge like an instance would.
type Host struct {
	Namespace string // existing named namespace to put the interface in
	Name      string // interface name there (e.g. "eth0")
	Port      string // name of the bridge port in the VPC namespace
	MAC       net.HardwareAddr
	Address   netip.Prefix // address and subnet length (e.g. 10.1.1.20/24)
	Gateway   netip.Addr   // default route; the zero Addr for none
}

// ConnectNamespace plugs another namespace into the VPC with a veth pair:
// one end (h.Port) on the bridge, the other (h.Name) in h.Namespace with
// h's MAC, address and default route. Test hosts and load balancer
// front ends use it to stand on a VPC's network without being a VM. The
// pair disappears with either namespace.
func (v *VPC) ConnectNamespace(h Host) error {
	peer, err := netns.GetFromPath(namespace.Path(h.Namespace))
	if err != nil {
		return fmt.Errorf("VPC %s: open namespace %s: %w", v.id, h.Namespace, err)
	}
	defer peer.Close()
	err = v.withHandle(func(nh *netlink.Handle) error {
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: h.Port},
			PeerName:      h.Name,
			PeerNamespace: netlink.NsFd(peer),
		}
		if len(h.MAC) > 0 {
			veth.PeerHardwareAddr = h.MAC
		}
		if err := nh.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth: %w", err)
		}
		return plug(nh, h.Port)
	})
	if err != nil {
		return fmt.Errorf("VPC %s: connect %s: %w", v.id, h.Namespace, err)
	}
	ph, err := netlink.NewHandleAt(peer)
	if err != nil {
		return fmt.Errorf("VPC %s: netlink in %s: %w", v.id, h.Namespace, err)
	}
	defer ph.Close()
	link, err := ph.LinkByName(h.Name)
	if err != nil {
		return fmt.Errorf("VPC %s: find %s in %s: %w", v.id, h.Name, h.Namespace, err)
	}
	if h.Address.IsValid() {
		if err := ph.AddrAdd(link, &netlink.Addr{IPNet: prefixToIPNet(h.Address)}); err != nil {
			return fmt.Errorf("VPC %s: address %s in %s: %w", v.id, h.Address, h.Namespace, err)
		}
	}
	if err := ph.LinkSetUp(link); err != nil {
		return fmt.Errorf("VPC %s: set %s up in %s: %w", v.id, h.Name, h.Namespace, err)
	}
	if h.Gateway.IsValid() {
		route := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: h.Gateway.AsSlice()}
		if err := ph.RouteAdd(route); err != nil {
			return fmt.Errorf("VPC %s: default route via %s in %s: %w", v.id, h.Gateway, h.Namespace, err)
		}
	}
	return nil
}
