package vpc

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"gureum/network/namespace"
)

// The uplink tests only inspect what AddUplink made and that it goes away
// again; no packet is sent through an uplink.

// keepHostForwarding restores the host's net.ipv4.ip_forward after the
// test, since AddUplink turns it on.
func keepHostForwarding(t *testing.T) {
	t.Helper()
	old, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile("/proc/sys/net/ipv4/ip_forward", old, 0) })
}

// hostTables lists the names of the host namespace's ip-family tables.
func hostTables(t *testing.T) []string {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseLasting()
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tb := range tables {
		names = append(names, tb.Name)
	}
	return names
}

// hasMasquerade reports whether chain postrouting of table (family ip) in
// namespace ns (netns.None(): the host's) holds a masquerade rule.
func hasMasquerade(t *testing.T, ns netns.NsHandle, table string) bool {
	t.Helper()
	var opts []nftables.ConnOption
	if ns.IsOpen() {
		opts = append(opts, nftables.WithNetNSFd(int(ns)))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseLasting()
	tb := &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}
	rules, err := c.GetRules(tb, &nftables.Chain{Name: "postrouting", Table: tb})
	if err != nil {
		t.Fatalf("rules of %s: %v", table, err)
	}
	for _, r := range rules {
		for _, e := range r.Exprs {
			if _, ok := e.(*expr.Masq); ok {
				return true
			}
		}
	}
	return false
}

// nftList returns `nft list table ip NAME`, run in namespace ns ("" for
// the host's), or skips the check when Debian's nft is not installed.
func nftList(t *testing.T, ns, table string) (string, bool) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Log("nft not installed (apt nftables): the rule text is not checked")
		return "", false
	}
	args := []string{"list", "table", "ip", table}
	cmd := exec.Command("nft", args...)
	if ns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nft %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), true
}

func TestUplinkLifecycle(t *testing.T) {
	v := newTestVPC(t)
	keepHostForwarding(t)
	if err := v.AddGateway(netip.MustParsePrefix("10.9.1.1/24")); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := v.Uplink(); err != nil || ok {
		t.Fatalf("a new VPC has an uplink (%v, %v)", ok, err)
	}
	u, err := v.AddUplink()
	if err != nil {
		t.Fatal(err)
	}
	if u.HostInterface != UplinkHostName(v.ID()) || len(u.HostInterface) > 15 {
		t.Errorf("host interface %q", u.HostInterface)
	}
	if !UplinkRange.Contains(u.HostAddress.Addr()) || u.HostAddress.Bits() != 30 ||
		u.VPCAddress.Addr() != u.HostAddress.Addr().Next() || u.VPCAddress.Bits() != 30 {
		t.Errorf("link addresses %s (host) and %s (VPC)", u.HostAddress, u.VPCAddress)
	}
	if _, err := v.AddUplink(); !errors.Is(err, os.ErrExist) {
		t.Errorf("a second uplink: %v, want ErrExist", err)
	}
	if got, ok, err := v.Uplink(); err != nil || !ok || got != u {
		t.Errorf("Uplink() = %+v, %v, %v; want %+v", got, ok, err, u)
	}
	if !HasUplink(v.ID()) {
		t.Error("HasUplink is false")
	}

	// Host end: a veth, up, with the host's address.
	host, err := netlink.LinkByName(u.HostInterface)
	if err != nil {
		t.Fatal(err)
	}
	if host.Type() != "veth" || host.Attrs().Flags&unix.IFF_UP == 0 {
		t.Errorf("host end is a %s with flags %v", host.Type(), host.Attrs().Flags)
	}
	if !hasAddress(t, nil, host, u.HostAddress) {
		t.Errorf("host end lacks %s", u.HostAddress)
	}

	// VPC end: address, default route via the host end, forwarding on.
	err = v.withHandle(func(h *netlink.Handle) error {
		link, err := h.LinkByName(UplinkPort)
		if err != nil {
			return err
		}
		if !hasAddress(t, h, link, u.VPCAddress) {
			t.Errorf("VPC end lacks %s", u.VPCAddress)
		}
		routes, err := h.RouteList(nil, unix.AF_INET)
		if err != nil {
			return err
		}
		found := false
		for _, r := range routes {
			isDefault := r.Dst == nil || r.Dst.IP.IsUnspecified()
			if isDefault && r.Gw.Equal(u.HostAddress.Addr().AsSlice()) && r.LinkIndex == link.Attrs().Index {
				found = true
			}
		}
		if !found {
			t.Errorf("no default route via %s in the VPC: %v", u.HostAddress.Addr(), routes)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var forwarding []byte
	if err := v.Do(func() (err error) { forwarding, err = os.ReadFile("/proc/sys/net/ipv4/ip_forward"); return err }); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(forwarding)) != "1" {
		t.Errorf("ip_forward in the VPC is %q", forwarding)
	}

	// Masquerade on both sides, as the library and as nft see it.
	vpcNS, err := netns.GetFromPath(namespace.Path(v.Namespace()))
	if err != nil {
		t.Fatal(err)
	}
	defer vpcNS.Close()
	if !hasMasquerade(t, vpcNS, UplinkTable) {
		t.Error("no masquerade rule in the VPC namespace")
	}
	if !hasMasquerade(t, netns.None(), u.HostTable) {
		t.Error("no masquerade rule on the host")
	}
	if text, ok := nftList(t, v.Namespace(), UplinkTable); ok {
		if !strings.Contains(text, `oifname "`+UplinkPort+`" masquerade`) {
			t.Errorf("VPC-side table:\n%s", text)
		}
	}
	if text, ok := nftList(t, "", u.HostTable); ok {
		want := "ip saddr " + u.VPCAddress.Addr().String() + ` oifname != "` + u.HostInterface + `" masquerade`
		if !strings.Contains(text, want) || !strings.Contains(text, `oifname "gup*" drop`) {
			t.Errorf("host-side table lacks %q or the drop between uplinks:\n%s", want, text)
		}
	}

	// Removing the uplink leaves the VPC; removing it twice is fine.
	if err := v.RemoveUplink(); err != nil {
		t.Fatal(err)
	}
	if err := v.RemoveUplink(); err != nil {
		t.Fatalf("removing a missing uplink: %v", err)
	}
	assertNoUplink(t, v, u)
	if !namespace.Exists(v.Namespace()) {
		t.Fatal("RemoveUplink removed the VPC")
	}

	// Made again, it goes with the VPC.
	if u, err = v.AddUplink(); err != nil {
		t.Fatal(err)
	}
	if err := v.Delete(); err != nil {
		t.Fatal(err)
	}
	assertNoUplink(t, v, u)
}

// TestUplinkOrphans: a VPC namespace removed behind the daemon's back
// leaves its host-side table, which RemoveOrphans removes; an orphan VPC
// with an uplink loses both.
func TestUplinkOrphans(t *testing.T) {
	keepHostForwarding(t)
	lost, orphan := newTestVPC(t), newTestVPC(t)
	ul, err := lost.AddUplink()
	if err != nil {
		t.Fatal(err)
	}
	uo, err := orphan.AddUplink()
	if err != nil {
		t.Fatal(err)
	}
	if err := namespace.Delete(lost.Namespace()); err != nil {
		t.Fatal(err)
	}
	removed, err := RemoveOrphans(testOwner, func(id string) bool { return id != orphan.ID() })
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != orphan.ID() {
		t.Fatalf("removed %v, want [%s]", removed, orphan.ID())
	}
	assertNoUplink(t, orphan, uo)
	assertNoUplink(t, lost, ul)
}

// assertNoUplink checks that u's host end and host table are gone. The
// veth of a deleted namespace is destroyed by the kernel shortly after,
// so its absence is awaited for up to a few seconds.
func assertNoUplink(t *testing.T, v *VPC, u Uplink) {
	t.Helper()
	for _, name := range hostTables(t) {
		if name == u.HostTable {
			t.Errorf("host table %s left", name)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for HasUplink(v.ID()) {
		if time.Now().After(deadline) {
			t.Errorf("host end %s left", u.HostInterface)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hasAddress(t *testing.T, h *netlink.Handle, link netlink.Link, want netip.Prefix) bool {
	t.Helper()
	var addrs []netlink.Addr
	var err error
	if h != nil {
		addrs, err = h.AddrList(link, unix.AF_INET)
	} else {
		addrs, err = netlink.AddrList(link, unix.AF_INET)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP.To4())
		bits, _ := a.Mask.Size()
		if netip.PrefixFrom(ip, bits) == want {
			return true
		}
	}
	return false
}
