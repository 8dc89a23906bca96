package service

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"gureum/api"
	"gureum/hypervisor/store"
	"gureum/hypervisor/supervisor"
	"gureum/network"
	"gureum/network/imds"
	"gureum/network/ipam"
	"gureum/network/vpc"
)

// An instance's interface through its life:
//
//	RunInstances   ipam.Allocate (address, MAC), recorded with the instance
//	StartVMM       AddTap + firewall SetPort (both idempotent), then the VMM
//	               starts inside the VPC's namespace with --net TAP,mac=MAC
//	stop / start   nothing: the tap, port, address and MAC stay
//	ReleaseResources (terminate) RemovePort, RemoveTap, ipam.Release

// networkPlan is the validated network part of a RunInstances request.
type networkPlan struct {
	vpc        *vpcRecord
	subnet     *subnetRecord
	groups     []string
	want       netip.Addr
	httpTokens string
}

// planNetwork checks the request's subnet, groups, address and metadata
// option without changing anything. It returns nil when networking is
// off and the request names nothing of it.
func (s *Service) planNetwork(caller Caller, req api.RunInstancesRequest, count int) (*networkPlan, error) {
	if s.net == nil {
		if req.SubnetID != "" || len(req.SecurityGroupIDs) > 0 || req.PrivateIP != "" {
			return nil, networkDisabled()
		}
		return nil, nil
	}
	np := &networkPlan{httpTokens: req.MetadataHTTPTokens}
	switch np.httpTokens {
	case "":
		np.httpTokens = api.HTTPTokensOptional
	case api.HTTPTokensOptional, api.HTTPTokensRequired:
	default:
		return nil, api.Errorf(api.CodeInvalidParameterValue, "Invalid value '%s' for HttpTokens (optional, required).", req.MetadataHTTPTokens)
	}
	if req.PrivateIP != "" {
		a, err := netip.ParseAddr(req.PrivateIP)
		if err != nil || !a.Is4() {
			return nil, api.Errorf(api.CodeInvalidParameterValue, "Invalid private IP address '%s'.", req.PrivateIP)
		}
		if count != 1 {
			return nil, api.Errorf(api.CodeInvalidParameterValue, "A private IP address can be given only when launching one instance.")
		}
		np.want = a
	}
	err := s.store.View(func(tx store.Tx) error {
		subnetID := req.SubnetID
		if subnetID == "" {
			subnetID = s.defaultSubnet(tx)
			if subnetID == "" {
				return api.Errorf(api.CodeMissingParameter, "There is no default subnet; the request must name a subnet.")
			}
		}
		var err error
		if np.subnet, err = visibleSubnet(tx, caller, subnetID); err != nil {
			return err
		}
		if np.vpc, err = visibleVPC(tx, caller, np.subnet.VpcID); err != nil {
			return err
		}
		np.groups, err = checkGroupsFor(tx, caller, np.vpc, req.SecurityGroupIDs)
		return err
	})
	if err != nil {
		return nil, err
	}
	return np, nil
}

// defaultSubnet is the default VPC's subnet of the first zone (or of any
// zone, if that one was deleted).
func (s *Service) defaultSubnet(tx store.Tx) string {
	var subs []subnetRecord
	listJSON(tx, kindSubnet, &subs)
	best := ""
	for _, sub := range subs {
		if !sub.DefaultForAz {
			continue
		}
		if sub.Zone == s.zones()[0] {
			return sub.ID
		}
		if best == "" {
			best = sub.ID
		}
	}
	return best
}

// allocate gives each new instance its interface. A failure releases
// what was allocated: nothing changed.
func (s *Service) allocateInterfaces(np *networkPlan, instIDs []string) (map[string]*instanceNetwork, func(), error) {
	out := map[string]*instanceNetwork{}
	release := func() {
		for id := range out {
			s.net.plan.Release(interfaceID(id))
		}
	}
	if np == nil {
		return out, func() {}, nil
	}
	for _, id := range instIDs {
		iface, err := s.net.plan.Allocate(np.subnet.ID, interfaceID(id), np.want)
		if err != nil {
			release()
			return nil, nil, netError(err)
		}
		out[id] = &instanceNetwork{VpcID: np.vpc.ID, SubnetID: np.subnet.ID, Zone: np.subnet.Zone,
			InterfaceID: iface.ID, PrivateIP: iface.Address.String(), MAC: iface.MAC, Groups: np.groups, HTTPTokens: np.httpTokens}
	}
	return out, release, nil
}

// plugInstance makes the instance's tap and firewall port exist (again)
// before its VMM starts.
func (s *Service) plugInstance(r *instanceRecord) error {
	if r.Network == nil || s.net == nil {
		return nil
	}
	s.net.mu.Lock()
	defer s.net.mu.Unlock()
	rt, err := s.net.runtime(r.Network.VpcID)
	if err != nil {
		return err
	}
	if err := rt.v.AddTap(vpc.TapName(r.Network.InterfaceID)); err != nil {
		return err
	}
	return rt.fw.SetPort(r.Network.port())
}

// unplugInstance gives back a terminated instance's interface: firewall
// port, tap, address. Each step tolerates being done already, so a
// termination replayed after a crash finishes the job.
func (s *Service) unplugInstance(r *instanceRecord) error {
	if r.Network == nil || s.net == nil {
		return nil
	}
	s.net.mu.Lock()
	defer s.net.mu.Unlock()
	if rt := s.net.vpcs[r.Network.VpcID]; rt != nil {
		if err := rt.fw.RemovePort(vpc.TapName(r.Network.InterfaceID)); err != nil {
			return err
		}
		if err := rt.v.RemoveTap(vpc.TapName(r.Network.InterfaceID)); err != nil {
			return err
		}
	}
	if err := s.net.plan.Release(r.Network.InterfaceID); err != nil && network.CodeOf(err) != network.CodeInterfaceNotFound {
		return err
	}
	return nil
}

// networkSpec puts the interface into the VMM's spec: the VMM runs inside
// the VPC's namespace (where its tap is) with one virtio-net device of
// the interface's MAC, and the kernel command line carries the address
// as a static fallback for guests without a DHCP client: the test guest
// (a PVH ELF) reads ip= and gw=, the Linux images (bzImage) read
// gureum.ip=, gureum.gw= and gureum.dns= when DHCP gets no lease.
func (s *Service) networkSpec(r *instanceRecord, sp *supervisor.Spec) {
	n := r.Network
	if n == nil || s.net == nil {
		return
	}
	sp.NetNS = vpc.NamespaceName(n.VpcID)
	sp.Nets = append(sp.Nets, supervisor.Net{Tap: vpc.TapName(n.InterfaceID), MAC: n.MAC})
	sub, ok := s.net.plan.Subnet(n.SubnetID)
	if !ok {
		return
	}
	addr := fmt.Sprintf("%s/%d", n.PrivateIP, sub.CIDR.Bits())
	var words string
	if isELF(r.Kernel) {
		words = fmt.Sprintf("ip=%s gw=%s", addr, sub.Gateway())
	} else {
		words = fmt.Sprintf("gureum.ip=%s gureum.gw=%s gureum.dns=%s", addr, sub.Gateway(), sub.DNS())
	}
	sp.Cmdline = strings.TrimSpace(sp.Cmdline + " " + words)
}

// isELF reports whether the kernel file starts with the ELF magic (a PVH
// kernel such as the test guest) rather than a bzImage.
func isELF(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 4)
	_, err = io.ReadFull(f, head)
	return err == nil && string(head) == "\x7fELF"
}

// metadataLookup answers the metadata service of one VPC from the
// instance records: the asker is the instance whose interface has the
// source address (the firewall's anti-spoofing table ties addresses to
// taps). It runs on the service's HTTP goroutines.
type metadataLookup struct {
	s     *Service
	vpcID string
}

func (l metadataLookup) InstanceByAddress(addr netip.Addr) (imds.Instance, bool) {
	var iface ipam.Interface
	found := false
	for _, i := range l.s.net.plan.Interfaces(l.vpcID) {
		if i.Address == addr {
			iface, found = i, true
			break
		}
	}
	if !found {
		return imds.Instance{}, false
	}
	var r *instanceRecord
	err := l.s.store.View(func(tx store.Tx) (err error) {
		r, err = getInstance(tx, instanceOfInterface(iface.ID))
		return err
	})
	if err != nil || r.Network == nil {
		return imds.Instance{}, false
	}
	return imds.Instance{
		ID: r.ID, Type: r.Type, LocalIPv4: iface.Address, AvailabilityZone: r.Network.Zone,
		Hostname: hostname(iface.Address), MAC: iface.MAC, UserData: []byte(r.UserData),
		RequireToken: r.Network.HTTPTokens == api.HTTPTokensRequired,
	}, true
}
