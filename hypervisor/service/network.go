package service

// Networking wires the network/ packages into the control plane: every VPC
// the daemon records is a namespace with a bridge (network/vpc), its
// subnets' gateways on that bridge, one tap per instance interface, a
// DHCP server, a metadata service and a firewall of security groups. The
// address plan (network/ipam) is saved in the daemon's own store, so a
// restart hands every interface the same address and MAC.
//
// Records and the kernel. The store holds what should exist (VPC, subnet
// and group records, each instance's interface in its record); the kernel
// holds what does. A create first changes the address plan and the kernel
// and then records; a delete first removes the record. Either way a
// daemon killed half-way leaves kernel state or plan entries that no
// record owns, and openNetwork removes exactly those at the next start,
// then rebuilds every recorded VPC (namespace, gateways, taps, servers,
// rules).
//
// Concurrency: networking.mu orders every network change and guards the
// map of running VPCs; it is never held while a store transaction that
// could wait for it runs elsewhere, and store transactions are opened
// inside it (never the other way round).

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"gureum/api"
	"gureum/hypervisor/ids"
	"gureum/hypervisor/lifecycle"
	"gureum/hypervisor/store"
	"gureum/network"
	"gureum/network/dhcp"
	"gureum/network/imds"
	"gureum/network/ipam"
	"gureum/network/secgroup"
	"gureum/network/vpc"
)

// NetworkConfig configures the daemon's VPCs.
type NetworkConfig struct {
	// Enabled turns networking on: instances get an interface in a VPC.
	// It needs root (namespaces, taps, nftables) and iproute2's `ip`,
	// which starts each VMM inside its VPC's namespace. Off, instances
	// have no network device and the VPC routes answer Unsupported.
	Enabled bool
	// DefaultVPCCIDR is the default VPC made at the first start (default
	// 172.31.0.0/16, EC2's); "none" makes none. It gets one /20 subnet
	// per zone, from the bottom of the range.
	DefaultVPCCIDR string
	// LeaseTime is the DHCP lease (default an hour).
	LeaseTime time.Duration
}

// DefaultZones are the availability zones when Config.Zones is empty.
var DefaultZones = []string{"local-1a", "local-1b"}

// DefaultVPCCIDR is the default VPC's range, as in EC2.
const DefaultVPCCIDR = "172.31.0.0/16"

// Store kinds of the network records.
const (
	kindVPC    = "vpc"
	kindSubnet = "subnet"
	kindGroup  = "security-group"
	// kindNetwork holds the address plan ("plan") and the id of the
	// default VPC once made ("default-vpc"), so that a default VPC the
	// user deleted is not made again.
	kindNetwork    = "network"
	keyPlan        = "plan"
	keyDefaultVPC  = "default-vpc"
	defaultGroup   = "default"
	defaultSubnetB = 20 // prefix length of the default VPC's subnets
)

// vpcRecord is a VPC as the daemon records it; its CIDR is also in the
// address plan.
type vpcRecord struct {
	ID           string    `json:"id"`
	Owner        string    `json:"owner"`
	CIDR         string    `json:"cidr"`
	IsDefault    bool      `json:"is_default,omitempty"`
	DefaultGroup string    `json:"default_group"`
	Tags         []api.Tag `json:"tags,omitempty"`
	// Uplink records that the VPC was made with an uplink, so that a
	// start after a clean shutdown (which removes namespaces) or a reboot
	// makes it again.
	Uplink bool `json:"uplink,omitempty"`
}

// subnetRecord is a subnet as the daemon records it.
type subnetRecord struct {
	ID           string    `json:"id"`
	VpcID        string    `json:"vpc_id"`
	Owner        string    `json:"owner"`
	CIDR         string    `json:"cidr"`
	Zone         string    `json:"zone"`
	DefaultForAz bool      `json:"default_for_az,omitempty"`
	Tags         []api.Tag `json:"tags,omitempty"`
}

// groupRecord is a security group; Rules are kept normalized (see
// normalizeRule), so equal rules compare equal.
type groupRecord struct {
	ID          string                  `json:"id"`
	VpcID       string                  `json:"vpc_id"`
	Owner       string                  `json:"owner"`
	Name        string                  `json:"name"`
	Description string                  `json:"description,omitempty"`
	Rules       []api.SecurityGroupRule `json:"rules"`
}

// instanceNetwork is an instance's interface, kept in its record from
// launch to the end of termination. Stop and start keep it, and with it
// the address and the MAC.
type instanceNetwork struct {
	VpcID       string   `json:"vpc_id"`
	SubnetID    string   `json:"subnet_id"`
	Zone        string   `json:"zone"`
	InterfaceID string   `json:"interface_id"`
	PrivateIP   string   `json:"private_ip"`
	MAC         string   `json:"mac"`
	Groups      []string `json:"groups"`
	HTTPTokens  string   `json:"http_tokens"`
}

// describe adds the interface to an instance's description.
func (n *instanceNetwork) describe(in *api.Instance) {
	if n == nil {
		return
	}
	in.VpcID, in.SubnetID, in.AvailabilityZone = n.VpcID, n.SubnetID, n.Zone
	in.PrivateIP, in.MACAddress, in.MetadataHTTPTokens = n.PrivateIP, n.MAC, n.HTTPTokens
	in.SecurityGroupIDs = slices.Clone(n.Groups)
}

// port is the interface as the firewall sees it.
func (n *instanceNetwork) port() secgroup.Port {
	addr, _ := netip.ParseAddr(n.PrivateIP)
	return secgroup.Port{Name: vpc.TapName(n.InterfaceID), MAC: ipam.MACFor(n.InterfaceID), Address: addr, Groups: n.Groups}
}

// interfaceID is the id of an instance's (only) interface: derived from
// the instance id, so a launch retried after a crash allocates the same
// interface again instead of a second one.
func interfaceID(instanceID string) string { return "eni-" + strings.TrimPrefix(instanceID, "i-") }

// instanceOfInterface inverts interfaceID.
func instanceOfInterface(eni string) string { return "i-" + strings.TrimPrefix(eni, "eni-") }

// newNetworkID makes an id of the EC2 shape with another prefix (vpc-,
// subnet-, sg-): 17 random hex digits, as ids.New.
func newNetworkID(prefix string) string { return prefix + "-" + ids.New(ids.Instance)[2:] }

// validNetworkID reports whether s is prefix-<17 hex digits>.
func validNetworkID(prefix, s string) bool {
	return ids.Valid(ids.Instance, "i-"+strings.TrimPrefix(s, prefix+"-")) && strings.HasPrefix(s, prefix+"-")
}

// networking is the Service's network state.
type networking struct {
	zones []string
	plan  *ipam.IPAM
	lease time.Duration
	owner string // this daemon as the owner of its VPC namespaces (vpc.Create)

	mu   sync.Mutex // orders network changes; guards vpcs
	vpcs map[string]*vpcRuntime
}

// vpcRuntime is one VPC as it runs: its namespace, firewall and servers.
type vpcRuntime struct {
	v    *vpc.VPC
	fw   *secgroup.Firewall
	dhcp *dhcp.Server
	meta *imds.Server
}

// planStore keeps the address plan in the daemon's store, as one record
// written whole after every change (ipam.Store's contract).
type planStore struct{ st store.Store }

func (p planStore) Load() (ipam.State, error) {
	var st ipam.State
	err := p.st.View(func(tx store.Tx) error { return store.GetJSON(tx, kindNetwork, keyPlan, &st) })
	if errors.Is(err, store.ErrNotFound) {
		return ipam.State{}, nil
	}
	return st, err
}

func (p planStore) Save(st ipam.State) error {
	return p.st.Update(func(tx store.Tx) error { return store.PutJSON(tx, kindNetwork, keyPlan, st) })
}

// netError turns a network package refusal into the API error of the
// same code; other errors (the machine failed) pass unchanged.
func netError(err error) error {
	var ne *network.Error
	if !errors.As(err, &ne) {
		return err
	}
	code := api.Code(ne.Code)
	if strings.HasPrefix(ne.Code, string(api.CodeInvalidParameterValue)) {
		code = api.CodeInvalidParameterValue
	}
	msg := ne.Message
	if msg != "" {
		msg = strings.ToUpper(msg[:1]) + msg[1:] + "."
	}
	return &api.Error{Code: code, Message: msg}
}

func networkDisabled() error {
	return api.Errorf(api.CodeUnsupported, "Networking is not enabled on this daemon (gureum daemon --network).")
}

// networkOn reports whether VPCs are enabled; the VPC API answers
// Unsupported otherwise.
func (s *Service) networkOn() error {
	if s.net == nil {
		return networkDisabled()
	}
	return nil
}

// Zones returns the host's availability zones, in configured order.
func (s *Service) Zones() []api.AvailabilityZone {
	out := []api.AvailabilityZone{}
	for _, z := range s.zones() {
		out = append(out, api.AvailabilityZone{ZoneName: z, State: "available"})
	}
	return out
}

func (s *Service) zones() []string {
	if len(s.cfg.Zones) > 0 {
		return s.cfg.Zones
	}
	return DefaultZones
}

// checkZone resolves a requested zone ("" is the first).
func (s *Service) checkZone(z string) (string, error) {
	if z == "" {
		return s.zones()[0], nil
	}
	if !slices.Contains(s.zones(), z) {
		return "", api.Errorf(api.CodeInvalidParameterValue, "Invalid availability zone '%s' (this host has %s).", z, strings.Join(s.zones(), ", "))
	}
	return z, nil
}

// networkState is every network record, read in one transaction.
type networkState struct {
	vpcs      []vpcRecord
	subnets   []subnetRecord
	groups    []groupRecord
	instances map[string]*instanceRecord // by interface id: instances with an interface
}

func loadNetworkState(tx store.Tx) (*networkState, error) {
	ns := &networkState{instances: map[string]*instanceRecord{}}
	if err := listJSON(tx, kindVPC, &ns.vpcs); err != nil {
		return nil, err
	}
	if err := listJSON(tx, kindSubnet, &ns.subnets); err != nil {
		return nil, err
	}
	if err := listJSON(tx, kindGroup, &ns.groups); err != nil {
		return nil, err
	}
	var insts []instanceRecord
	if err := listJSON(tx, kindInstance, &insts); err != nil {
		return nil, err
	}
	for i := range insts {
		n := insts[i].Network
		if n == nil {
			continue
		}
		// A terminated instance gave its interface back (tap, firewall
		// port, address, which a later instance may hold now); its record
		// stays for describe only.
		st, err := lifecycle.Get(tx, insts[i].ID)
		if err != nil {
			return nil, err
		}
		if st.State == lifecycle.Terminated {
			continue
		}
		ns.instances[n.InterfaceID] = &insts[i]
	}
	return ns, nil
}

// listJSON decodes every record of a kind into *out.
func listJSON[T any](tx store.Tx, kind string, out *[]T) error {
	ents, err := tx.List(kind)
	if err != nil {
		return fmt.Errorf("list %s: %w", kind, err)
	}
	for _, e := range ents {
		var v T
		if err := store.GetJSON(tx, kind, e.Key, &v); err != nil {
			return err
		}
		*out = append(*out, v)
	}
	return nil
}

// openNetwork is the start-up half of networking (docs/networking.md,
// "What the daemon must wire"): it loads the address plan, drops plan
// entries and namespaces no record owns, rebuilds every recorded VPC, and
// makes the default VPC at the very first start.
func (s *Service) openNetwork() error {
	if !s.cfg.Network.Enabled {
		return nil
	}
	plan, err := ipam.New(planStore{s.store})
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	owner, err := vpcOwner(s.cfg.DataDir)
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	n := &networking{zones: s.zones(), plan: plan, lease: s.cfg.Network.LeaseTime, owner: owner, vpcs: map[string]*vpcRuntime{}}
	s.net = n
	var st *networkState
	if err := s.store.View(func(tx store.Tx) (err error) { st, err = loadNetworkState(tx); return err }); err != nil {
		return fmt.Errorf("service: network records: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	s.dropUnownedPlan(st)
	// Namespaces of this daemon's VPCs that no record owns: made by a
	// create the daemon did not finish recording, or left by a delete cut
	// short. Other daemons' VPCs (another data directory) and others'
	// namespaces (tests, benchmarks) are left alone.
	removed, err := vpc.RemoveOrphans(n.owner, func(id string) bool {
		return !validNetworkID("vpc", id) || slices.ContainsFunc(st.vpcs, func(r vpcRecord) bool { return r.ID == id })
	})
	for _, id := range removed {
		s.log.Info("removed a VPC namespace no record owns", "vpc", id)
	}
	if err != nil {
		s.log.Warn("orphan VPC cleanup incomplete", "err", err)
	}
	for _, r := range st.vpcs {
		if err := s.startVPC(r, st); err != nil {
			return fmt.Errorf("service: VPC %s: %w", r.ID, err)
		}
	}
	return s.ensureDefaultVPC()
}

// dropUnownedPlan removes from the address plan what no record owns:
// interfaces of instances never recorded (or whose record forgot them),
// then subnets and VPCs without records.
func (s *Service) dropUnownedPlan(st *networkState) {
	p := s.net.plan
	for _, i := range p.Interfaces("") {
		if r := st.instances[i.ID]; r == nil {
			s.log.Info("releasing an address no instance owns", "interface", i.ID, "address", i.Address)
			if err := p.Release(i.ID); err != nil {
				s.log.Warn("release failed", "interface", i.ID, "err", err)
			}
		}
	}
	for _, sub := range p.Subnets("") {
		if !slices.ContainsFunc(st.subnets, func(r subnetRecord) bool { return r.ID == sub.ID }) {
			if err := p.RemoveSubnet(sub.ID); err != nil {
				s.log.Warn("unrecorded subnet not removed", "subnet", sub.ID, "err", err)
			}
		}
	}
	var planVPCs []string
	for _, sub := range st.subnets {
		planVPCs = append(planVPCs, sub.VpcID)
	}
	for _, r := range st.vpcs {
		planVPCs = append(planVPCs, r.ID)
	}
	known, _ := planStore{s.store}.Load()
	for _, v := range known.VPCs {
		if !slices.Contains(planVPCs, v.ID) {
			if err := p.RemoveVPC(v.ID); err != nil {
				s.log.Warn("unrecorded VPC not removed from the address plan", "vpc", v.ID, "err", err)
			}
		}
	}
}

// startVPC makes VPC r run: its namespace (made again if a clean
// shutdown removed it), gateways, taps, firewall and servers. Callers
// hold net.mu.
func (s *Service) startVPC(r vpcRecord, st *networkState) error {
	v, err := vpc.Open(r.ID)
	if network.CodeOf(err) == network.CodeVPCNotFound {
		v, err = vpc.Create(r.ID, s.net.owner)
	} else if err == nil {
		// Made by an older version without an owner, or by this daemon.
		if o, oerr := v.Owner(); oerr == nil && o == "" {
			err = v.SetOwner(s.net.owner)
		}
	}
	if err != nil {
		return err
	}
	rt := &vpcRuntime{v: v, fw: secgroup.New(v.Namespace())}
	for _, sub := range st.subnets {
		if sub.VpcID == r.ID {
			if err := v.AddGateway(gatewayOf(sub.CIDR)); err != nil {
				return err
			}
		}
	}
	// Groups twice: first without rules naming other groups (which may
	// not be set yet), then whole.
	var groups []groupRecord
	for _, g := range st.groups {
		if g.VpcID == r.ID {
			groups = append(groups, g)
		}
	}
	for pass := 0; pass < 2; pass++ {
		for _, g := range groups {
			fg, err := firewallGroup(g, pass == 0)
			if err != nil {
				return err
			}
			if err := rt.fw.SetGroup(fg); err != nil {
				return err
			}
		}
	}
	for _, in := range st.instances {
		if in.Network.VpcID != r.ID {
			continue
		}
		if err := v.AddTap(vpc.TapName(in.Network.InterfaceID)); err != nil {
			return err
		}
		if err := rt.fw.SetPort(in.Network.port()); err != nil {
			return err
		}
	}
	if err := rt.fw.Apply(); err != nil {
		return err
	}
	if r.Uplink {
		if _, ok, err := v.Uplink(); err != nil {
			return err
		} else if !ok {
			if _, err := v.AddUplink(); err != nil {
				return err
			}
		}
	}
	if err := s.startServers(rt); err != nil {
		return err
	}
	s.net.vpcs[r.ID] = rt
	return nil
}

// startServers starts the VPC's DHCP server and metadata service.
func (s *Service) startServers(rt *vpcRuntime) error {
	id := rt.v.ID()
	var err error
	rt.dhcp, err = dhcp.Start(rt.v, dhcp.IPAMLookup{Plan: s.net.plan, VPCID: id, Hostname: func(i ipam.Interface) string {
		return hostname(i.Address)
	}}, s.net.lease)
	if err != nil {
		return err
	}
	rt.meta, err = imds.Start(rt.v, imds.NewHandler(metadataLookup{s: s, vpcID: id}, nil))
	if err != nil {
		rt.dhcp.Close()
		return err
	}
	return nil
}

// stopServers closes what listens in the namespace: an open socket would
// keep a deleted namespace alive.
func (rt *vpcRuntime) stopServers() {
	if rt.dhcp != nil {
		rt.dhcp.Close()
	}
	if rt.meta != nil {
		rt.meta.Close()
	}
}

// teardown removes a VPC from the kernel: servers, taps, rules and
// namespace.
func (rt *vpcRuntime) teardown() error {
	rt.stopServers()
	taps, _ := rt.v.Taps()
	for _, t := range taps {
		rt.v.RemoveTap(t)
	}
	return rt.v.Delete()
}

// closeNetwork stops the servers; VPCs in which no VMM runs are removed
// from the kernel too, so a clean shutdown of an idle daemon leaves the
// host as it found it (the next start rebuilds them from the records).
// VPCs with running VMMs stay, with their rules, for the guests' sake.
func (s *Service) closeNetwork() {
	if s.net == nil {
		return
	}
	busy := map[string]bool{}
	for _, in := range s.sup.List() {
		if r, _, err := s.load(in.ID); err == nil && r.Network != nil {
			busy[r.Network.VpcID] = true
		}
	}
	s.net.mu.Lock()
	defer s.net.mu.Unlock()
	for id, rt := range s.net.vpcs {
		if busy[id] {
			rt.stopServers()
			continue
		}
		if err := rt.teardown(); err != nil {
			s.log.Warn("idle VPC not removed at shutdown", "vpc", id, "err", err)
		}
	}
	s.net.vpcs = map[string]*vpcRuntime{}
}

// gatewayOf is a subnet's router address with the subnet's length, as it
// goes on the bridge (10.1.1.0/24 → 10.1.1.1/24).
func gatewayOf(cidr string) netip.Prefix {
	p, _ := netip.ParsePrefix(cidr)
	return netip.PrefixFrom(p.Addr().Next(), p.Bits())
}

// hostname is EC2's private DNS name shape for an address.
func hostname(a netip.Addr) string {
	return "ip-" + strings.ReplaceAll(a.String(), ".", "-") + ".gureum.internal"
}

// ensureDefaultVPC makes the default VPC, with one subnet per zone, the
// first time the daemon starts with networking. Callers hold net.mu.
func (s *Service) ensureDefaultVPC() error {
	cidr := s.cfg.Network.DefaultVPCCIDR
	if cidr == "" {
		cidr = DefaultVPCCIDR
	}
	if cidr == "none" {
		return nil
	}
	var made string
	err := s.store.View(func(tx store.Tx) error {
		b, err := tx.Get(kindNetwork, keyDefaultVPC)
		made = string(b)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil || made != "" {
		return err
	}
	r, err := s.createVPCLocked(AdminAccount, cidr, true, nil)
	if err != nil {
		return fmt.Errorf("service: default VPC: %w", err)
	}
	base, _ := netip.ParsePrefix(cidr)
	for i, z := range s.zones() {
		sub, ok := nthSubnet(base, defaultSubnetB, i)
		if !ok {
			break
		}
		if _, err := s.createSubnetLocked(AdminAccount, r, sub.String(), z, true, nil); err != nil {
			return fmt.Errorf("service: default subnet in %s: %w", z, err)
		}
	}
	s.log.Info("default VPC made", "vpc", r.ID, "cidr", cidr)
	return s.store.Update(func(tx store.Tx) error { return tx.Put(kindNetwork, keyDefaultVPC, []byte(r.ID)) })
}

// nthSubnet is the i-th /bits block of base, or false if base is too
// small (a default VPC narrower than /20 gets only what fits; at least
// one block as large as the VPC itself).
func nthSubnet(base netip.Prefix, bits, i int) (netip.Prefix, bool) {
	if bits < base.Bits() {
		bits = base.Bits()
	}
	count := 1 << (bits - base.Bits())
	if i >= count {
		return netip.Prefix{}, false
	}
	a := base.Addr().As4()
	n := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	n += uint32(i) << (32 - bits)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), bits), true
}

// runtime returns a running VPC. Callers hold net.mu.
func (n *networking) runtime(id string) (*vpcRuntime, error) {
	rt := n.vpcs[id]
	if rt == nil {
		return nil, fmt.Errorf("VPC %s is not running", id)
	}
	return rt, nil
}

// liveState reports whether an instance in state st may still use its
// interface (everything but terminated).
func liveState(st lifecycle.State) bool { return st != lifecycle.Terminated }

// vpcOwner names this daemon as the owner of its VPC namespaces: a hash
// of its data directory, which no other daemon on the host can share
// while it runs (the state file is locked).
func vpcOwner(dataDir string) (string, error) {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return "", fmt.Errorf("data directory: %w", err)
	}
	sum := sha256.Sum256([]byte(abs))
	return "daemon-" + hex.EncodeToString(sum[:8]), nil
}
