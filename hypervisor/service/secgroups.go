package service

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"gureum/api"
	"gureum/hypervisor/lifecycle"
	"gureum/hypervisor/store"
	"gureum/network/secgroup"
)

// Security groups. A group belongs to one VPC and lives in that VPC's
// secgroup.Firewall; every change is made in the firewall first (which
// validates it and installs it in the kernel atomically, so it applies to
// the next packet) and then recorded. If recording fails the firewall is
// put back, so a refused or failed request changes nothing.

const maxGroupRules = 60

func groupNotFound(id string) error {
	return api.Errorf(api.CodeInvalidGroupNotFound, "The security group '%s' does not exist", id)
}

// visibleGroup loads a group caller may see: its own, or the default
// group of the shared default VPC.
func visibleGroup(tx store.Tx, caller Caller, id string) (*groupRecord, error) {
	if !validNetworkID("sg", id) {
		return nil, groupNotFound(id)
	}
	var g groupRecord
	err := store.GetJSON(tx, kindGroup, id, &g)
	if errors.Is(err, store.ErrNotFound) {
		return nil, groupNotFound(id)
	}
	if err != nil {
		return nil, err
	}
	if g.Owner != caller.AccountID {
		v, err := visibleVPC(tx, caller, g.VpcID)
		if err != nil || v.DefaultGroup != g.ID {
			return nil, groupNotFound(id)
		}
	}
	return &g, nil
}

func ownGroup(tx store.Tx, caller Caller, id string) (*groupRecord, error) {
	g, err := visibleGroup(tx, caller, id)
	if err == nil && g.Owner != caller.AccountID {
		return nil, api.Errorf(api.CodeUnauthorizedOperation, "You are not authorized to change security group '%s'.", id)
	}
	return g, err
}

func (g *groupRecord) toAPI() api.SecurityGroup {
	return api.SecurityGroup{GroupID: g.ID, GroupName: g.Name, Description: g.Description, VpcID: g.VpcID,
		OwnerID: g.Owner, Rules: append([]api.SecurityGroupRule{}, g.Rules...)}
}

// normalizeRule checks a rule on its own and writes it one way: protocol
// by name, ports -1 for "all", CIDR in canonical form. Errors are
// InvalidParameterValue.
func normalizeRule(r api.SecurityGroupRule) (api.SecurityGroupRule, error) {
	fr, err := toFirewallRule(r)
	if err != nil {
		return r, err
	}
	if err := secgroup.Validate(fr); err != nil {
		return r, netError(err)
	}
	out := api.SecurityGroupRule{Direction: r.Direction, FromPort: r.FromPort, ToPort: r.ToPort, GroupID: r.GroupID}
	switch strings.ToLower(r.Protocol) {
	case "tcp", "6":
		out.Protocol = secgroup.TCP
	case "udp", "17":
		out.Protocol = secgroup.UDP
	case "icmp", "1":
		out.Protocol = secgroup.ICMP
	default:
		out.Protocol, out.FromPort, out.ToPort = secgroup.AllProtocols, -1, -1
	}
	if fr.CIDR.IsValid() {
		out.CidrIP = fr.CIDR.String()
	}
	return out, nil
}

// toFirewallRule is an API rule in the firewall's terms.
func toFirewallRule(r api.SecurityGroupRule) (secgroup.Rule, error) {
	fr := secgroup.Rule{Direction: secgroup.Direction(r.Direction), Protocol: r.Protocol, FromPort: r.FromPort, ToPort: r.ToPort, Group: r.GroupID}
	if r.CidrIP != "" {
		p, err := netip.ParsePrefix(r.CidrIP)
		if err != nil {
			return fr, api.Errorf(api.CodeInvalidParameterValue, "Invalid CIDR '%s' in a rule.", r.CidrIP)
		}
		fr.CIDR = p
	}
	return fr, nil
}

// firewallGroup is a group record as the firewall takes it; withoutRefs
// leaves out rules naming other groups (for the first pass at start).
func firewallGroup(g groupRecord, withoutRefs bool) (secgroup.Group, error) {
	out := secgroup.Group{ID: g.ID}
	for _, r := range g.Rules {
		if withoutRefs && r.GroupID != "" && r.GroupID != g.ID {
			continue
		}
		fr, err := toFirewallRule(r)
		if err != nil {
			return out, err
		}
		out.Rules = append(out.Rules, fr)
	}
	return out, nil
}

// SecurityGroups lists the groups caller may see, of one VPC or ("") all.
func (s *Service) SecurityGroups(caller Caller, vpcID string) ([]api.SecurityGroup, error) {
	if err := s.networkOn(); err != nil {
		return nil, err
	}
	out := []api.SecurityGroup{}
	err := s.store.View(func(tx store.Tx) error {
		if vpcID != "" {
			if _, err := visibleVPC(tx, caller, vpcID); err != nil {
				return err
			}
		}
		var all []groupRecord
		if err := listJSON(tx, kindGroup, &all); err != nil {
			return err
		}
		for _, g := range all {
			if vpcID != "" && g.VpcID != vpcID {
				continue
			}
			if v, err := visibleGroup(tx, caller, g.ID); err == nil {
				out = append(out, v.toAPI())
			}
		}
		return nil
	})
	return out, err
}

// SecurityGroup describes one group.
func (s *Service) SecurityGroup(caller Caller, id string) (api.SecurityGroup, error) {
	if err := s.networkOn(); err != nil {
		return api.SecurityGroup{}, err
	}
	var out api.SecurityGroup
	err := s.store.View(func(tx store.Tx) error {
		g, err := visibleGroup(tx, caller, id)
		if err == nil {
			out = g.toAPI()
		}
		return err
	})
	return out, err
}

// CreateSecurityGroup makes a group in a VPC of caller's (default: the
// default VPC) with EC2's initial rules: all outbound, no inbound.
func (s *Service) CreateSecurityGroup(caller Caller, req api.CreateSecurityGroupRequest) (api.SecurityGroup, error) {
	if err := s.networkOn(); err != nil {
		return api.SecurityGroup{}, err
	}
	if req.GroupName == "" || len(req.GroupName) > 255 || strings.HasPrefix(req.GroupName, "sg-") {
		return api.SecurityGroup{}, api.Errorf(api.CodeInvalidParameterValue, "Invalid group name '%s' (1-255 characters, not starting with sg-).", req.GroupName)
	}
	if req.GroupName == defaultGroup {
		return api.SecurityGroup{}, api.Errorf(api.CodeInvalidParameterValue, "The name 'default' is reserved for the VPC's default group.")
	}
	if len(req.Description) > 255 {
		return api.SecurityGroup{}, api.Errorf(api.CodeInvalidParameterValue, "The description is limited to 255 characters.")
	}
	s.net.mu.Lock()
	defer s.net.mu.Unlock()
	if req.VpcID == "" {
		req.VpcID = s.defaultVPCID()
	}
	g := &groupRecord{ID: newNetworkID("sg"), VpcID: req.VpcID, Owner: caller.AccountID, Name: req.GroupName,
		Description: req.Description, Rules: []api.SecurityGroupRule{
			{Direction: api.DirectionEgress, Protocol: secgroup.AllProtocols, FromPort: -1, ToPort: -1, CidrIP: "0.0.0.0/0"}}}
	err := s.store.View(func(tx store.Tx) error {
		if _, err := ownVPC(tx, caller, req.VpcID); err != nil {
			return err
		}
		var all []groupRecord
		if err := listJSON(tx, kindGroup, &all); err != nil {
			return err
		}
		for _, o := range all {
			if o.VpcID == req.VpcID && o.Name == req.GroupName {
				return api.Errorf(api.CodeInvalidGroupDuplicate, "The security group '%s' already exists in VPC '%s' (%s).", req.GroupName, req.VpcID, o.ID)
			}
		}
		return nil
	})
	if err != nil {
		return api.SecurityGroup{}, err
	}
	rt, err := s.net.runtime(g.VpcID)
	if err != nil {
		return api.SecurityGroup{}, err
	}
	fg, _ := firewallGroup(*g, false)
	if err := rt.fw.SetGroup(fg); err != nil {
		return api.SecurityGroup{}, netError(err)
	}
	if err := s.store.Update(func(tx store.Tx) error { return store.PutJSON(tx, kindGroup, g.ID, g) }); err != nil {
		rt.fw.DeleteGroup(g.ID)
		return api.SecurityGroup{}, err
	}
	s.log.Info("security group created", "group", g.ID, "vpc", g.VpcID, "name", g.Name)
	return g.toAPI(), nil
}

// defaultVPCID is the default VPC's id, or "" if there is none.
func (s *Service) defaultVPCID() string {
	var id string
	s.store.View(func(tx store.Tx) error {
		var all []vpcRecord
		listJSON(tx, kindVPC, &all)
		for _, v := range all {
			if v.IsDefault {
				id = v.ID
			}
		}
		return nil
	})
	return id
}

// DeleteSecurityGroup removes a group of caller's. A VPC's default group
// goes only with its VPC (CannotDelete); a group an instance is in or
// another group's rule names is DependencyViolation.
func (s *Service) DeleteSecurityGroup(caller Caller, id string) error {
	if err := s.networkOn(); err != nil {
		return err
	}
	s.net.mu.Lock()
	defer s.net.mu.Unlock()
	var g *groupRecord
	err := s.store.View(func(tx store.Tx) error {
		var err error
		if g, err = ownGroup(tx, caller, id); err != nil {
			return err
		}
		if g.Name == defaultGroup {
			return api.Errorf(api.CodeCannotDelete, "The default security group of VPC '%s' cannot be deleted.", g.VpcID)
		}
		return nil
	})
	if err != nil {
		return err
	}
	rt, err := s.net.runtime(g.VpcID)
	if err != nil {
		return err
	}
	if err := rt.fw.DeleteGroup(id); err != nil {
		return netError(err)
	}
	if err := s.store.Update(func(tx store.Tx) error { return tx.Delete(kindGroup, id) }); err != nil {
		if fg, ferr := firewallGroup(*g, false); ferr == nil {
			rt.fw.SetGroup(fg)
		}
		return err
	}
	s.log.Info("security group deleted", "group", id)
	return nil
}

// AuthorizeSecurityGroup adds rules to a group of caller's; a rule the
// group has already is InvalidPermission.Duplicate. The new rules apply
// to the next packet.
func (s *Service) AuthorizeSecurityGroup(caller Caller, id string, req api.SecurityGroupRulesRequest) (api.SecurityGroup, error) {
	return s.changeRules(caller, id, req, true)
}

// RevokeSecurityGroup removes rules from a group of caller's; a rule the
// group does not have is InvalidPermission.NotFound. Connections already
// open go on (they are tracked), as in EC2.
func (s *Service) RevokeSecurityGroup(caller Caller, id string, req api.SecurityGroupRulesRequest) (api.SecurityGroup, error) {
	return s.changeRules(caller, id, req, false)
}

func (s *Service) changeRules(caller Caller, id string, req api.SecurityGroupRulesRequest, add bool) (api.SecurityGroup, error) {
	if err := s.networkOn(); err != nil {
		return api.SecurityGroup{}, err
	}
	if len(req.Rules) == 0 {
		return api.SecurityGroup{}, api.Errorf(api.CodeMissingParameter, "The request must name at least one rule.")
	}
	s.net.mu.Lock()
	defer s.net.mu.Unlock()
	var g *groupRecord
	err := s.store.View(func(tx store.Tx) error {
		var err error
		if g, err = ownGroup(tx, caller, id); err != nil {
			return err
		}
		for _, r := range req.Rules {
			if r.GroupID == "" || r.GroupID == id {
				continue
			}
			// A source group must be one of the same VPC that caller
			// may see.
			o, err := visibleGroup(tx, caller, r.GroupID)
			if err != nil || o.VpcID != g.VpcID {
				return api.Errorf(api.CodeInvalidGroupNotFound, "The security group '%s' does not exist in VPC '%s'", r.GroupID, g.VpcID)
			}
		}
		return nil
	})
	if err != nil {
		return api.SecurityGroup{}, err
	}
	next := *g
	next.Rules = slices.Clone(g.Rules)
	for i, r := range req.Rules {
		nr, err := normalizeRule(r)
		if err != nil {
			return api.SecurityGroup{}, fmt.Errorf("rule %d: %w", i, err)
		}
		at := slices.Index(next.Rules, nr)
		switch {
		case add && at >= 0:
			return api.SecurityGroup{}, api.Errorf(api.CodeInvalidPermissionDup, "The rule '%s' already exists in group '%s'.", ruleText(nr), id)
		case add:
			next.Rules = append(next.Rules, nr)
		case at < 0:
			return api.SecurityGroup{}, api.Errorf(api.CodeInvalidPermissionNotFound, "The rule '%s' does not exist in group '%s'.", ruleText(nr), id)
		default:
			next.Rules = slices.Delete(next.Rules, at, at+1)
		}
	}
	if len(next.Rules) > maxGroupRules {
		return api.SecurityGroup{}, api.Errorf(api.CodeInvalidParameterValue, "A group holds at most %d rules.", maxGroupRules)
	}
	rt, err := s.net.runtime(g.VpcID)
	if err != nil {
		return api.SecurityGroup{}, err
	}
	fg, err := firewallGroup(next, false)
	if err != nil {
		return api.SecurityGroup{}, err
	}
	if err := rt.fw.SetGroup(fg); err != nil {
		return api.SecurityGroup{}, netError(err)
	}
	if err := s.store.Update(func(tx store.Tx) error { return store.PutJSON(tx, kindGroup, id, &next) }); err != nil {
		if old, ferr := firewallGroup(*g, false); ferr == nil {
			rt.fw.SetGroup(old)
		}
		return api.SecurityGroup{}, err
	}
	s.log.Info("security group rules changed", "group", id, "rules", len(next.Rules))
	return next.toAPI(), nil
}

func ruleText(r api.SecurityGroupRule) string {
	fr, _ := toFirewallRule(r)
	return fr.String()
}

// checkGroupsFor resolves an instance's groups in VPC v: the VPC's default
// group when none is named; each must be visible to caller and of v.
func checkGroupsFor(tx store.Tx, caller Caller, v *vpcRecord, groups []string) ([]string, error) {
	if len(groups) == 0 {
		return []string{v.DefaultGroup}, nil
	}
	if len(groups) > 5 {
		return nil, api.Errorf(api.CodeInvalidParameterValue, "An instance is in at most 5 security groups.")
	}
	out := []string{}
	for _, id := range groups {
		g, err := visibleGroup(tx, caller, id)
		if err != nil {
			return nil, err
		}
		if g.VpcID != v.ID {
			return nil, api.Errorf(api.CodeInvalidParameterValue, "Security group %s is of VPC %s, not of the instance's VPC %s.", id, g.VpcID, v.ID)
		}
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out, nil
}

// SetInstanceSecurityGroups replaces the groups of an instance of
// caller's; the change applies to its interface at once, running or not.
func (s *Service) SetInstanceSecurityGroups(caller Caller, id string, req api.InstanceSecurityGroupsRequest) (api.Instance, error) {
	if err := s.networkOn(); err != nil {
		return api.Instance{}, err
	}
	s.net.mu.Lock()
	defer s.net.mu.Unlock()
	var r *instanceRecord
	var groups []string
	err := s.store.View(func(tx store.Tx) error {
		var st *lifecycle.Status
		var err error
		if r, st, err = ownedInstance(tx, caller, id); err != nil {
			return err
		}
		if r.Network == nil || !liveState(st.State) {
			return api.Errorf(api.CodeIncorrectInstanceState, "The instance '%s' has no network interface.", id)
		}
		v, err := visibleVPC(tx, caller, r.Network.VpcID)
		if err != nil {
			return err
		}
		groups, err = checkGroupsFor(tx, caller, v, req.GroupIDs)
		return err
	})
	if err != nil {
		return api.Instance{}, err
	}
	rt, err := s.net.runtime(r.Network.VpcID)
	if err != nil {
		return api.Instance{}, err
	}
	old := r.Network.port()
	r.Network.Groups = groups
	if err := rt.fw.SetPort(r.Network.port()); err != nil {
		return api.Instance{}, netError(err)
	}
	err = s.store.Update(func(tx store.Tx) error {
		cur, err := getInstance(tx, id)
		if err != nil {
			return err
		}
		cur.Network.Groups = groups
		return putInstance(tx, cur)
	})
	if err != nil {
		rt.fw.SetPort(old)
		return api.Instance{}, err
	}
	return s.Instance(caller, id)
}
