package service

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"gureum/api"
	"gureum/hypervisor/store"
	"gureum/network"
	"gureum/network/ipam"
	"gureum/network/secgroup"
	"gureum/network/vpc"
)

// The VPC and subnet requests. Each runs under net.mu, so the checks it
// makes (a subnet is empty, a name is free) still hold when it acts.

func vpcNotFound(id string) error {
	return api.Errorf(api.CodeInvalidVpcIDNotFound, "The vpc ID '%s' does not exist", id)
}

func subnetNotFound(id string) error {
	return api.Errorf(api.CodeInvalidSubnetIDNotFound, "The subnet ID '%s' does not exist", id)
}

// visibleVPC loads a VPC that caller may use: its own, or the default VPC
// (shared by every account of the host). A foreign one is NotFound.
func visibleVPC(tx store.Tx, caller Caller, id string) (*vpcRecord, error) {
	var r vpcRecord
	if !validNetworkID("vpc", id) {
		return nil, vpcNotFound(id)
	}
	err := store.GetJSON(tx, kindVPC, id, &r)
	if errors.Is(err, store.ErrNotFound) || err == nil && r.Owner != caller.AccountID && !r.IsDefault {
		return nil, vpcNotFound(id)
	}
	return &r, err
}

// ownVPC is visibleVPC for changes: only the owner may change a VPC.
func ownVPC(tx store.Tx, caller Caller, id string) (*vpcRecord, error) {
	r, err := visibleVPC(tx, caller, id)
	if err == nil && r.Owner != caller.AccountID {
		return nil, api.Errorf(api.CodeUnauthorizedOperation, "You are not authorized to change VPC '%s'.", id)
	}
	return r, err
}

func visibleSubnet(tx store.Tx, caller Caller, id string) (*subnetRecord, error) {
	var r subnetRecord
	if !validNetworkID("subnet", id) {
		return nil, subnetNotFound(id)
	}
	err := store.GetJSON(tx, kindSubnet, id, &r)
	if errors.Is(err, store.ErrNotFound) {
		return nil, subnetNotFound(id)
	}
	if err != nil {
		return nil, err
	}
	if _, err := visibleVPC(tx, caller, r.VpcID); err != nil {
		return nil, subnetNotFound(id)
	}
	return &r, nil
}

func (r *vpcRecord) toAPI() api.Vpc {
	return api.Vpc{VpcID: r.ID, OwnerID: r.Owner, CidrBlock: r.CIDR, State: "available", IsDefault: r.IsDefault,
		DefaultSecurityGroupID: r.DefaultGroup, Tags: slices.Clone(r.Tags)}
}

func (s *Service) subnetToAPI(r *subnetRecord) api.Subnet {
	free := 0
	if p, err := netip.ParsePrefix(r.CIDR); err == nil {
		used := 0
		for _, i := range s.net.plan.Interfaces(r.VpcID) {
			if i.SubnetID == r.ID {
				used++
			}
		}
		free = (1 << (32 - p.Bits())) - 5 - used // network, .1, .2, .3, broadcast
	}
	return api.Subnet{SubnetID: r.ID, VpcID: r.VpcID, OwnerID: r.Owner, CidrBlock: r.CIDR, AvailabilityZone: r.Zone,
		State: "available", AvailableIPAddressCount: free, DefaultForAz: r.DefaultForAz, Tags: slices.Clone(r.Tags)}
}

// parseCIDR reads an IPv4 CIDR for a VPC or subnet; the range checks are
// ipam's.
func parseCIDR(what, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, api.Errorf(api.CodeInvalidParameterValue, "Value (%s) for parameter %s is invalid. This is not a valid IPv4 CIDR block.", s, what)
	}
	if err := ipam.ValidateVPCCIDR(p); err != nil {
		return netip.Prefix{}, netError(err)
	}
	return p, nil
}

// withUplink fills in whether the VPC has an uplink, which the kernel
// knows (the host end of its veth exists) and the record does not.
func withUplink(v api.Vpc) api.Vpc {
	v.Uplink = vpc.HasUplink(v.VpcID)
	return v
}

// Vpcs lists the VPCs caller may use, sorted by id.
func (s *Service) Vpcs(caller Caller) ([]api.Vpc, error) {
	if err := s.networkOn(); err != nil {
		return nil, err
	}
	out := []api.Vpc{}
	err := s.store.View(func(tx store.Tx) error {
		var all []vpcRecord
		if err := listJSON(tx, kindVPC, &all); err != nil {
			return err
		}
		for i := range all {
			if all[i].Owner == caller.AccountID || all[i].IsDefault {
				out = append(out, withUplink(all[i].toAPI()))
			}
		}
		return nil
	})
	return out, err
}

// Vpc describes one VPC.
func (s *Service) Vpc(caller Caller, id string) (api.Vpc, error) {
	if err := s.networkOn(); err != nil {
		return api.Vpc{}, err
	}
	var out api.Vpc
	err := s.store.View(func(tx store.Tx) error {
		r, err := visibleVPC(tx, caller, id)
		if err == nil {
			out = withUplink(r.toAPI())
		}
		return err
	})
	return out, err
}

// CreateVpc makes a VPC with its default security group, and its uplink
// if asked (req.Uplink). A bad CIDR is InvalidParameterValue and changes
// nothing; so does an uplink that cannot be made.
func (s *Service) CreateVpc(caller Caller, req api.CreateVpcRequest) (api.Vpc, error) {
	if err := s.networkOn(); err != nil {
		return api.Vpc{}, err
	}
	tags, err := checkTags(req.Tags, "")
	if err != nil {
		return api.Vpc{}, err
	}
	s.net.mu.Lock()
	defer s.net.mu.Unlock()
	r, err := s.createVPCWithLocked(caller.AccountID, req.CidrBlock, false, tags, req.Uplink)
	if err != nil {
		return api.Vpc{}, err
	}
	s.log.Info("VPC created", "vpc", r.ID, "cidr", r.CIDR, "owner", r.Owner, "uplink", req.Uplink)
	return withUplink(r.toAPI()), nil
}

// createVPCLocked makes a VPC without an uplink (see createVPCWithLocked).
// Callers hold net.mu.
func (s *Service) createVPCLocked(owner, cidr string, isDefault bool, tags []api.Tag) (*vpcRecord, error) {
	return s.createVPCWithLocked(owner, cidr, isDefault, tags, false)
}

// createVPCWithLocked makes a VPC: address plan, namespace with its
// default group, servers and (if uplink) its uplink, then the records.
// Callers hold net.mu.
func (s *Service) createVPCWithLocked(owner, cidr string, isDefault bool, tags []api.Tag, uplink bool) (*vpcRecord, error) {
	p, err := parseCIDR("cidrBlock", cidr)
	if err != nil {
		return nil, err
	}
	r := &vpcRecord{ID: newNetworkID("vpc"), Owner: owner, CIDR: p.String(), IsDefault: isDefault,
		DefaultGroup: newNetworkID("sg"), Tags: tags, Uplink: uplink}
	if err := s.net.plan.AddVPC(ipam.VPC{ID: r.ID, CIDR: p}); err != nil {
		return nil, netError(err)
	}
	undoPlan := func() { s.net.plan.RemoveVPC(r.ID) }
	v, err := vpc.Create(r.ID, s.net.owner)
	if err != nil {
		undoPlan()
		return nil, netError(err)
	}
	rt := &vpcRuntime{v: v, fw: secgroup.New(v.Namespace())}
	g := groupRecord{ID: r.DefaultGroup, VpcID: r.ID, Owner: owner, Name: defaultGroup,
		Description: "default VPC security group", Rules: defaultGroupRules(r.DefaultGroup)}
	fg, err := firewallGroup(g, false)
	if err == nil {
		err = rt.fw.SetGroup(fg)
	}
	if err == nil {
		err = s.startServers(rt)
	}
	if err == nil && uplink {
		_, err = v.AddUplink()
	}
	if err == nil {
		err = s.store.Update(func(tx store.Tx) error {
			if err := store.PutJSON(tx, kindVPC, r.ID, r); err != nil {
				return err
			}
			return store.PutJSON(tx, kindGroup, g.ID, g)
		})
	}
	if err != nil {
		if terr := rt.teardown(); terr != nil {
			s.log.Warn("half-made VPC not removed", "vpc", r.ID, "err", terr)
		}
		undoPlan()
		return nil, fmt.Errorf("create VPC: %w", err)
	}
	s.net.vpcs[r.ID] = rt
	return r, nil
}

// defaultGroupRules are EC2's rules of a VPC's default group: inbound
// from its own members, outbound anywhere.
func defaultGroupRules(id string) []api.SecurityGroupRule {
	return []api.SecurityGroupRule{
		{Direction: api.DirectionIngress, Protocol: secgroup.AllProtocols, FromPort: -1, ToPort: -1, GroupID: id},
		{Direction: api.DirectionEgress, Protocol: secgroup.AllProtocols, FromPort: -1, ToPort: -1, CidrIP: "0.0.0.0/0"},
	}
}

// DeleteVpc removes a VPC of caller's. It is refused with
// DependencyViolation while the VPC has subnets or security groups other
// than its default one (instances live in subnets, so an empty VPC has
// none).
func (s *Service) DeleteVpc(caller Caller, id string) error {
	if err := s.networkOn(); err != nil {
		return err
	}
	s.net.mu.Lock()
	defer s.net.mu.Unlock()
	var r *vpcRecord
	err := s.store.Update(func(tx store.Tx) error {
		var err error
		if r, err = ownVPC(tx, caller, id); err != nil {
			return err
		}
		var subs []subnetRecord
		var groups []groupRecord
		if err := listJSON(tx, kindSubnet, &subs); err != nil {
			return err
		}
		if err := listJSON(tx, kindGroup, &groups); err != nil {
			return err
		}
		for _, sub := range subs {
			if sub.VpcID == id {
				return api.Errorf(api.CodeDependencyViolation, "The vpc '%s' has dependencies and cannot be deleted: subnet %s.", id, sub.ID)
			}
		}
		for _, g := range groups {
			if g.VpcID == id && g.ID != r.DefaultGroup {
				return api.Errorf(api.CodeDependencyViolation, "The vpc '%s' has dependencies and cannot be deleted: security group %s.", id, g.ID)
			}
		}
		if err := tx.Delete(kindGroup, r.DefaultGroup); err != nil {
			return err
		}
		return tx.Delete(kindVPC, id)
	})
	if err != nil {
		return err
	}
	// The record is gone: from here a failure leaves only what the next
	// start removes (an orphan namespace, a plan entry).
	if rt := s.net.vpcs[id]; rt != nil {
		delete(s.net.vpcs, id)
		if err := rt.teardown(); err != nil {
			s.log.Warn("VPC namespace not removed", "vpc", id, "err", err)
		}
	}
	if err := s.net.plan.RemoveVPC(id); err != nil && network.CodeOf(err) != network.CodeVPCNotFound {
		s.log.Warn("VPC not removed from the address plan", "vpc", id, "err", err)
	}
	s.log.Info("VPC deleted", "vpc", id)
	return nil
}

// Subnets lists the subnets caller may use, of one VPC or ("") all.
func (s *Service) Subnets(caller Caller, vpcID string) ([]api.Subnet, error) {
	if err := s.networkOn(); err != nil {
		return nil, err
	}
	out := []api.Subnet{}
	err := s.store.View(func(tx store.Tx) error {
		if vpcID != "" {
			if _, err := visibleVPC(tx, caller, vpcID); err != nil {
				return err
			}
		}
		var all []subnetRecord
		if err := listJSON(tx, kindSubnet, &all); err != nil {
			return err
		}
		for i := range all {
			if vpcID != "" && all[i].VpcID != vpcID {
				continue
			}
			if _, err := visibleVPC(tx, caller, all[i].VpcID); err == nil {
				out = append(out, s.subnetToAPI(&all[i]))
			}
		}
		return nil
	})
	return out, err
}

// Subnet describes one subnet.
func (s *Service) Subnet(caller Caller, id string) (api.Subnet, error) {
	if err := s.networkOn(); err != nil {
		return api.Subnet{}, err
	}
	var out api.Subnet
	err := s.store.View(func(tx store.Tx) error {
		r, err := visibleSubnet(tx, caller, id)
		if err == nil {
			out = s.subnetToAPI(r)
		}
		return err
	})
	return out, err
}

// CreateSubnet adds a subnet to a VPC of caller's. Errors, each changing
// nothing: InvalidParameterValue (bad CIDR or zone), InvalidSubnet.Range
// (outside the VPC), InvalidSubnet.Conflict (overlaps a subnet).
func (s *Service) CreateSubnet(caller Caller, req api.CreateSubnetRequest) (api.Subnet, error) {
	if err := s.networkOn(); err != nil {
		return api.Subnet{}, err
	}
	zone, err := s.checkZone(req.AvailabilityZone)
	if err != nil {
		return api.Subnet{}, err
	}
	tags, err := checkTags(req.Tags, "")
	if err != nil {
		return api.Subnet{}, err
	}
	s.net.mu.Lock()
	defer s.net.mu.Unlock()
	var v *vpcRecord
	if err := s.store.View(func(tx store.Tx) (err error) { v, err = ownVPC(tx, caller, req.VpcID); return err }); err != nil {
		return api.Subnet{}, err
	}
	r, err := s.createSubnetLocked(caller.AccountID, v, req.CidrBlock, zone, false, tags)
	if err != nil {
		return api.Subnet{}, err
	}
	s.log.Info("subnet created", "subnet", r.ID, "vpc", r.VpcID, "cidr", r.CIDR, "zone", r.Zone)
	return s.subnetToAPI(r), nil
}

// createSubnetLocked records the subnet in the plan, puts its gateway on
// the bridge, then records it. Callers hold net.mu.
func (s *Service) createSubnetLocked(owner string, v *vpcRecord, cidr, zone string, defaultForAz bool, tags []api.Tag) (*subnetRecord, error) {
	p, err := parseCIDR("cidrBlock", cidr)
	if err != nil {
		return nil, err
	}
	rt, err := s.net.runtime(v.ID)
	if err != nil {
		return nil, err
	}
	r := &subnetRecord{ID: newNetworkID("subnet"), VpcID: v.ID, Owner: owner, CIDR: p.String(), Zone: zone,
		DefaultForAz: defaultForAz, Tags: tags}
	if err := s.net.plan.AddSubnet(ipam.Subnet{ID: r.ID, VPCID: v.ID, CIDR: p, Zone: zone}); err != nil {
		return nil, netError(err)
	}
	gw := gatewayOf(r.CIDR)
	err = rt.v.AddGateway(gw)
	if err == nil {
		err = s.store.Update(func(tx store.Tx) error { return store.PutJSON(tx, kindSubnet, r.ID, r) })
		if err != nil {
			rt.v.RemoveGateway(gw)
		}
	}
	if err != nil {
		s.net.plan.RemoveSubnet(r.ID)
		return nil, fmt.Errorf("create subnet: %w", err)
	}
	return r, nil
}

// DeleteSubnet removes a subnet of caller's; DependencyViolation while
// an instance (running, stopped, or terminating) has an address in it.
func (s *Service) DeleteSubnet(caller Caller, id string) error {
	if err := s.networkOn(); err != nil {
		return err
	}
	s.net.mu.Lock()
	defer s.net.mu.Unlock()
	var r *subnetRecord
	err := s.store.Update(func(tx store.Tx) error {
		var err error
		if r, err = visibleSubnet(tx, caller, id); err != nil {
			return err
		}
		if _, err := ownVPC(tx, caller, r.VpcID); err != nil {
			return err
		}
		for _, i := range s.net.plan.Interfaces(r.VpcID) {
			if i.SubnetID == id {
				return api.Errorf(api.CodeDependencyViolation, "The subnet '%s' has dependencies and cannot be deleted: instance %s.", id, instanceOfInterface(i.ID))
			}
		}
		return tx.Delete(kindSubnet, id)
	})
	if err != nil {
		return err
	}
	if rt := s.net.vpcs[r.VpcID]; rt != nil {
		if err := rt.v.RemoveGateway(gatewayOf(r.CIDR)); err != nil {
			s.log.Warn("subnet gateway not removed", "subnet", id, "err", err)
		}
	}
	if err := s.net.plan.RemoveSubnet(id); err != nil {
		s.log.Warn("subnet not removed from the address plan", "subnet", id, "err", err)
	}
	s.log.Info("subnet deleted", "subnet", id)
	return nil
}
