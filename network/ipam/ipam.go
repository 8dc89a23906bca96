// Package ipam keeps a VPC's address plan: which subnets exist (a CIDR in
// one availability zone), and which network interface has which fixed
// private address and MAC. The plan is written to a Store after every
// change, so a daemon restart hands every interface the same address and
// MAC again (and with them the same DHCP lease).
//
// Addresses are chosen as EC2 chooses them: in every subnet the network
// address, .1 (the VPC router, here the bridge), .2 (DNS), .3 (reserved)
// and the broadcast address are never given to an interface.
package ipam

import (
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"

	"gureum/network"
)

// Prefix lengths EC2 allows for VPCs and subnets.
const (
	MinPrefixLen = 16
	MaxPrefixLen = 28
)

// reservedLow is how many addresses at the start of a subnet are never
// given out: network, router, DNS, and one for future use.
const reservedLow = 4

// VPC is the part of a VPC the address plan needs.
type VPC struct {
	ID   string       `json:"id"`
	CIDR netip.Prefix `json:"cidr"`
}

// Subnet is a CIDR of a VPC in one zone.
type Subnet struct {
	ID    string       `json:"id"`
	VPCID string       `json:"vpc_id"`
	CIDR  netip.Prefix `json:"cidr"`
	Zone  string       `json:"zone"`
}

// Gateway is the subnet's router address (.1), assigned to the VPC bridge.
func (s Subnet) Gateway() netip.Addr { return s.CIDR.Addr().Next() }

// DNS is the subnet's resolver address (.2), as in EC2.
func (s Subnet) DNS() netip.Addr { return s.CIDR.Addr().Next().Next() }

// Interface is a network interface's fixed identity in its subnet.
type Interface struct {
	ID       string     `json:"id"`
	SubnetID string     `json:"subnet_id"`
	Address  netip.Addr `json:"address"`
	MAC      string     `json:"mac"`
}

// HardwareAddr parses MAC (which Allocate always writes well-formed).
func (i Interface) HardwareAddr() net.HardwareAddr {
	m, _ := net.ParseMAC(i.MAC)
	return m
}

// State is everything the plan persists.
type State struct {
	VPCs       []VPC       `json:"vpcs"`
	Subnets    []Subnet    `json:"subnets"`
	Interfaces []Interface `json:"interfaces"`
}

// IPAM is the address plan of every VPC. All methods may be called from
// any goroutine; one mutex orders them, and each change is saved to the
// store before the method returns. A change whose save fails is undone in
// memory and reported: nothing changed.
type IPAM struct {
	mu    sync.Mutex
	store Store
	state State
}

// New loads the plan from store.
func New(store Store) (*IPAM, error) {
	st, err := store.Load()
	if err != nil {
		return nil, fmt.Errorf("load address plan: %w", err)
	}
	return &IPAM{store: store, state: st}, nil
}

// ValidateVPCCIDR checks that cidr is an IPv4 network between /16 and /28
// written with its host bits zero.
func ValidateVPCCIDR(cidr netip.Prefix) error {
	return validatePrefix("VPC", cidr)
}

func validatePrefix(what string, cidr netip.Prefix) error {
	if !cidr.IsValid() || !cidr.Addr().Is4() {
		return network.Errorf(network.CodeInvalidParameterValue, "%s CIDR %s is not an IPv4 network", what, cidr)
	}
	if cidr.Bits() < MinPrefixLen || cidr.Bits() > MaxPrefixLen {
		return network.Errorf(network.CodeInvalidParameterValue, "%s CIDR %s: prefix length must be /%d to /%d", what, cidr, MinPrefixLen, MaxPrefixLen)
	}
	if cidr.Masked() != cidr {
		return network.Errorf(network.CodeInvalidParameterValue, "%s CIDR %s has host bits set (did you mean %s?)", what, cidr, cidr.Masked())
	}
	return nil
}

// AddVPC records a VPC's CIDR. It fails with InvalidParameterValue for a
// bad CIDR or an ID already in use.
func (p *IPAM) AddVPC(v VPC) error {
	if err := ValidateVPCCIDR(v.CIDR); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.vpc(v.ID); ok {
		return network.Errorf(network.CodeAlreadyExists, "VPC %s already exists", v.ID)
	}
	return p.change(func(st *State) { st.VPCs = append(st.VPCs, v) })
}

// RemoveVPC forgets a VPC; it is refused (DependencyViolation) while the
// VPC has subnets.
func (p *IPAM) RemoveVPC(id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.vpc(id); !ok {
		return network.Errorf(network.CodeVPCNotFound, "VPC %s does not exist", id)
	}
	for _, s := range p.state.Subnets {
		if s.VPCID == id {
			return network.Errorf(network.CodeDependencyViolation, "VPC %s still has subnet %s", id, s.ID)
		}
	}
	return p.change(func(st *State) {
		st.VPCs = deleteWhere(st.VPCs, func(v VPC) bool { return v.ID == id })
	})
}

// VPC returns a recorded VPC.
func (p *IPAM) VPC(id string) (VPC, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.vpc(id)
}

func (p *IPAM) vpc(id string) (VPC, bool) {
	for _, v := range p.state.VPCs {
		if v.ID == id {
			return v, true
		}
	}
	return VPC{}, false
}

// AddSubnet records a subnet. Errors, each leaving the plan unchanged:
// InvalidParameterValue (bad CIDR, no zone, ID in use), InvalidVpcID.NotFound,
// InvalidSubnet.Range (not inside the VPC CIDR), InvalidSubnet.Conflict
// (overlaps another subnet of the VPC).
func (p *IPAM) AddSubnet(s Subnet) error {
	if err := validatePrefix("subnet", s.CIDR); err != nil {
		return err
	}
	if s.Zone == "" {
		return network.Errorf(network.CodeInvalidParameterValue, "subnet %s needs an availability zone", s.ID)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.vpc(s.VPCID)
	if !ok {
		return network.Errorf(network.CodeVPCNotFound, "VPC %s does not exist", s.VPCID)
	}
	if _, ok := p.subnet(s.ID); ok {
		return network.Errorf(network.CodeAlreadyExists, "subnet %s already exists", s.ID)
	}
	if !v.CIDR.Contains(s.CIDR.Addr()) || s.CIDR.Bits() < v.CIDR.Bits() {
		return network.Errorf(network.CodeInvalidSubnetRange, "subnet CIDR %s is not inside VPC %s (%s)", s.CIDR, v.ID, v.CIDR)
	}
	for _, o := range p.state.Subnets {
		if o.VPCID == s.VPCID && o.CIDR.Overlaps(s.CIDR) {
			return network.Errorf(network.CodeInvalidSubnetConflict, "subnet CIDR %s overlaps subnet %s (%s)", s.CIDR, o.ID, o.CIDR)
		}
	}
	return p.change(func(st *State) { st.Subnets = append(st.Subnets, s) })
}

// RemoveSubnet forgets a subnet; refused (DependencyViolation) while
// interfaces are in it.
func (p *IPAM) RemoveSubnet(id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.subnet(id); !ok {
		return network.Errorf(network.CodeSubnetNotFound, "subnet %s does not exist", id)
	}
	for _, i := range p.state.Interfaces {
		if i.SubnetID == id {
			return network.Errorf(network.CodeDependencyViolation, "subnet %s still has interface %s", id, i.ID)
		}
	}
	return p.change(func(st *State) {
		st.Subnets = deleteWhere(st.Subnets, func(s Subnet) bool { return s.ID == id })
	})
}

// Subnet returns a recorded subnet.
func (p *IPAM) Subnet(id string) (Subnet, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.subnet(id)
}

func (p *IPAM) subnet(id string) (Subnet, bool) {
	for _, s := range p.state.Subnets {
		if s.ID == id {
			return s, true
		}
	}
	return Subnet{}, false
}

// Subnets lists the subnets of a VPC ("" for all), sorted by ID.
func (p *IPAM) Subnets(vpcID string) []Subnet {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Subnet
	for _, s := range p.state.Subnets {
		if vpcID == "" || s.VPCID == vpcID {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Allocate gives interface id a fixed address in a subnet and a MAC derived
// from id. want picks the address (EC2's "private IP address" parameter);
// the zero Addr takes the lowest free one. Allocating an id that already
// exists returns its record unchanged, so a caller that crashed between
// allocating and recording can simply ask again.
func (p *IPAM) Allocate(subnetID, id string, want netip.Addr) (Interface, error) {
	if id == "" {
		return Interface{}, network.Errorf(network.CodeInvalidParameterValue, "interface ID is empty")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if i, ok := p.iface(id); ok {
		return i, nil
	}
	s, ok := p.subnet(subnetID)
	if !ok {
		return Interface{}, network.Errorf(network.CodeSubnetNotFound, "subnet %s does not exist", subnetID)
	}
	used := map[netip.Addr]bool{}
	for _, i := range p.state.Interfaces {
		if i.SubnetID == subnetID {
			used[i.Address] = true
		}
	}
	first, last := usableRange(s.CIDR)
	addr := want
	if want.IsValid() {
		if !want.Is4() || want.Less(first) || last.Less(want) {
			return Interface{}, network.Errorf(network.CodeInvalidParameterValue, "address %s is not a usable address of subnet %s (%s to %s)", want, s.ID, first, last)
		}
		if used[want] {
			return Interface{}, network.Errorf(network.CodeAddressInUse, "address %s is already in use in subnet %s", want, s.ID)
		}
	} else {
		addr = netip.Addr{}
		for a := first; !last.Less(a); a = a.Next() {
			if !used[a] {
				addr = a
				break
			}
		}
		if !addr.IsValid() {
			return Interface{}, network.Errorf(network.CodeAddressLimitExceeded, "subnet %s has no free address", s.ID)
		}
	}
	i := Interface{ID: id, SubnetID: subnetID, Address: addr, MAC: MACFor(id).String()}
	if err := p.change(func(st *State) { st.Interfaces = append(st.Interfaces, i) }); err != nil {
		return Interface{}, err
	}
	return i, nil
}

// Release frees an interface's address. Releasing an unknown id fails with
// InvalidNetworkInterfaceID.NotFound.
func (p *IPAM) Release(id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.iface(id); !ok {
		return network.Errorf(network.CodeInterfaceNotFound, "interface %s does not exist", id)
	}
	return p.change(func(st *State) {
		st.Interfaces = deleteWhere(st.Interfaces, func(i Interface) bool { return i.ID == id })
	})
}

// Interface returns an interface's record.
func (p *IPAM) Interface(id string) (Interface, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.iface(id)
}

func (p *IPAM) iface(id string) (Interface, bool) {
	for _, i := range p.state.Interfaces {
		if i.ID == id {
			return i, true
		}
	}
	return Interface{}, false
}

// Interfaces lists the interfaces of a VPC ("" for all), sorted by ID.
func (p *IPAM) Interfaces(vpcID string) []Interface {
	p.mu.Lock()
	defer p.mu.Unlock()
	inVPC := map[string]bool{}
	for _, s := range p.state.Subnets {
		if vpcID == "" || s.VPCID == vpcID {
			inVPC[s.ID] = true
		}
	}
	var out []Interface
	for _, i := range p.state.Interfaces {
		if inVPC[i.SubnetID] {
			out = append(out, i)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out
}

// change applies edit to a copy of the state, saves the copy, and only
// then makes it current; callers hold p.mu.
func (p *IPAM) change(edit func(*State)) error {
	next := State{
		VPCs:       append([]VPC(nil), p.state.VPCs...),
		Subnets:    append([]Subnet(nil), p.state.Subnets...),
		Interfaces: append([]Interface(nil), p.state.Interfaces...),
	}
	edit(&next)
	if err := p.store.Save(next); err != nil {
		return fmt.Errorf("save address plan: %w", err)
	}
	p.state = next
	return nil
}

// usableRange is the first and last address an interface may get: after
// the four reserved at the start, before the broadcast address.
func usableRange(cidr netip.Prefix) (first, last netip.Addr) {
	base := cidr.Masked().Addr().As4()
	n := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	size := uint32(1) << (32 - cidr.Bits())
	return addrFrom(n + reservedLow), addrFrom(n + size - 2)
}

func addrFrom(n uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

// MACFor derives an interface's MAC from its ID: the first six bytes of
// SHA-256(id), with the multicast bit cleared and the locally-administered
// bit set, so it never collides with a vendor-assigned address and is the
// same every time the interface is set up.
func MACFor(id string) net.HardwareAddr {
	sum := sha256.Sum256([]byte("gureum-eni:" + id))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}

func deleteWhere[T any](s []T, match func(T) bool) []T {
	out := s[:0]
	for _, x := range s {
		if !match(x) {
			out = append(out, x)
		}
	}
	return out
}
