package secgroup

import (
	"fmt"
	"net/netip"
	"sort"
	"sync"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"

	"gureum/network"
	"gureum/network/namespace"
)

// Table names in the VPC namespace (see the package comment).
const (
	RulesTable = "gureum"       // family inet: stateful group rules
	PortsTable = "gureum-ports" // family bridge: anti-spoofing per port
)

// Firewall is the security group state of one VPC and its nftables
// rendering. Methods may be called from any goroutine; a mutex orders
// them. Each change is validated, rendered and applied before it is kept:
// if any step fails, the kernel and the Firewall keep the previous rules.
type Firewall struct {
	ns string

	mu     sync.Mutex
	groups map[string]Group
	ports  map[string]Port
}

// New returns the firewall of the VPC whose namespace is named ns. It has
// no groups and no ports until told; call Apply to install the (empty) rule
// set, or let the first change do it.
func New(ns string) *Firewall {
	return &Firewall{ns: ns, groups: map[string]Group{}, ports: map[string]Port{}}
}

// SetGroup creates or replaces a group's rules. Errors (nothing changed):
// InvalidParameterValue for a bad rule, InvalidGroup.NotFound for a rule
// naming a source group that does not exist (a group may name itself).
func (f *Firewall) SetGroup(g Group) error {
	if g.ID == "" {
		return network.Errorf(network.CodeInvalidParameterValue, "security group ID is empty")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, r := range g.Rules {
		if err := Validate(r); err != nil {
			return fmt.Errorf("group %s rule %d: %w", g.ID, i, err)
		}
		if _, ok := f.groups[r.Group]; r.Group != "" && r.Group != g.ID && !ok {
			return network.Errorf(network.CodeGroupNotFound, "group %s rule %d names group %s, which does not exist", g.ID, i, r.Group)
		}
	}
	g.Rules = append([]Rule(nil), g.Rules...)
	return f.change(func(groups map[string]Group, _ map[string]Port) { groups[g.ID] = g })
}

// DeleteGroup removes a group; refused (DependencyViolation) while a port
// is in it or another group's rule names it.
func (f *Firewall) DeleteGroup(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.groups[id]; !ok {
		return network.Errorf(network.CodeGroupNotFound, "group %s does not exist", id)
	}
	for _, p := range f.ports {
		for _, g := range p.Groups {
			if g == id {
				return network.Errorf(network.CodeDependencyViolation, "group %s is used by port %s", id, p.Name)
			}
		}
	}
	for _, g := range f.groups {
		for _, r := range g.Rules {
			if r.Group == id && g.ID != id {
				return network.Errorf(network.CodeDependencyViolation, "group %s is named by a rule of group %s", id, g.ID)
			}
		}
	}
	return f.change(func(groups map[string]Group, _ map[string]Port) { delete(groups, id) })
}

// SetPort adds a port or changes its groups. Its groups must exist.
func (f *Firewall) SetPort(p Port) error {
	if p.Name == "" || len(p.Name) > 15 {
		return network.Errorf(network.CodeInvalidParameterValue, "bad port name %q", p.Name)
	}
	if len(p.MAC) != 6 || !p.Address.Is4() {
		return network.Errorf(network.CodeInvalidParameterValue, "port %s needs a MAC and an IPv4 address", p.Name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, g := range p.Groups {
		if _, ok := f.groups[g]; !ok {
			return network.Errorf(network.CodeGroupNotFound, "group %s does not exist", g)
		}
	}
	for _, o := range f.ports {
		if o.Name != p.Name && o.Address == p.Address {
			return network.Errorf(network.CodeAddressInUse, "address %s is port %s's", p.Address, o.Name)
		}
	}
	p.Groups = append([]string(nil), p.Groups...)
	return f.change(func(_ map[string]Group, ports map[string]Port) { ports[p.Name] = p })
}

// RemovePort forgets a port (terminate). Removing an unknown port is not an
// error.
func (f *Firewall) RemovePort(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.ports[name]; !ok {
		return nil
	}
	return f.change(func(_ map[string]Group, ports map[string]Port) { delete(ports, name) })
}

// Apply installs the current rules again (after a daemon restart, say).
func (f *Firewall) Apply() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.install(f.groups, f.ports)
}

// Remove deletes both tables from the namespace.
func (f *Firewall) Remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.withConn(func(c *nftables.Conn) error {
		for _, t := range []*nftables.Table{rulesTable(), portsTable()} {
			c.AddTable(t)
			c.DelTable(t)
		}
		return c.Flush()
	})
}

// change applies edit to copies of the state, installs the result, and
// keeps it only if the kernel took it. Callers hold f.mu.
func (f *Firewall) change(edit func(map[string]Group, map[string]Port)) error {
	groups := make(map[string]Group, len(f.groups))
	for k, v := range f.groups {
		groups[k] = v
	}
	ports := make(map[string]Port, len(f.ports))
	for k, v := range f.ports {
		ports[k] = v
	}
	edit(groups, ports)
	if err := f.install(groups, ports); err != nil {
		return err
	}
	f.groups, f.ports = groups, ports
	return nil
}

// install renders the state and replaces both tables in one batch.
func (f *Firewall) install(groups map[string]Group, ports map[string]Port) error {
	plan := newPlan(groups, ports)
	return f.withConn(func(c *nftables.Conn) error {
		plan.render(c)
		if err := c.Flush(); err != nil {
			return fmt.Errorf("install security group rules in %s: %w", f.ns, err)
		}
		return nil
	})
}

func (f *Firewall) withConn(fn func(c *nftables.Conn) error) error {
	h, err := netns.GetFromPath(namespace.Path(f.ns))
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", f.ns, err)
	}
	defer h.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(h)), nftables.WithSockOptions(largeBuffers))
	if err != nil {
		return fmt.Errorf("nftables in %s: %w", f.ns, err)
	}
	defer c.CloseLasting()
	return fn(c)
}

// batchBufferBytes sizes the netlink socket's buffers for a ruleset
// change. A change is one batch holding the whole ruleset, and the kernel
// acknowledges every message in it; a VPC's ruleset has rules per port and
// per member of each source group, so a few dozen instances in one default
// group make thousands of rules. With the default buffers (wmem_max and
// rmem_max, about 200 KiB) the batch is refused (EMSGSIZE) or the
// acknowledgements are dropped (ENOBUFS).
const batchBufferBytes = 64 << 20

// largeBuffers sets both buffers (SO_SNDBUFFORCE and SO_RCVBUFFORCE, which
// root may set beyond the sysctl limits; the plain options otherwise).
func largeBuffers(c *netlink.Conn) error {
	if err := c.SetWriteBuffer(batchBufferBytes); err != nil {
		return err
	}
	return c.SetReadBuffer(batchBufferBytes)
}

// plan is the state sorted for rendering: ports by name, and every
// group's members, so a source-group rule becomes one match per member.
type plan struct {
	groups  map[string]Group
	ports   []Port
	members map[string][]netip.Addr
}

func newPlan(groups map[string]Group, ports map[string]Port) *plan {
	p := &plan{groups: groups, members: map[string][]netip.Addr{}}
	for _, port := range ports {
		p.ports = append(p.ports, port)
	}
	sort.Slice(p.ports, func(i, j int) bool { return p.ports[i].Name < p.ports[j].Name })
	for _, port := range p.ports {
		for _, g := range port.Groups {
			p.members[g] = append(p.members[g], port.Address)
		}
	}
	return p
}

// rulesOf is the union of the rules of a port's groups in one direction.
func (p *plan) rulesOf(port Port, d Direction) []Rule {
	var out []Rule
	for _, g := range port.Groups {
		for _, r := range p.groups[g].Rules {
			if r.Direction == d {
				out = append(out, r)
			}
		}
	}
	return out
}
