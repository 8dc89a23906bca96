package instancetype

import (
	"fmt"
	"sync"

	"gureum/api"
)

// Host is what a host offers to instances.
type Host struct {
	VCPUs     int     // host CPUs given to guests
	MemoryGiB float64 // host memory given to guests
	// CPUOvercommit and MemoryOvercommit multiply VCPUs and MemoryGiB:
	// 4 means four guest vCPUs per host CPU. Guests are mostly idle and
	// their memory is touched lazily, so both may exceed 1; memory beyond
	// 1 risks the host's OOM killer when guests do use what they were
	// given. Zero means 1.
	CPUOvercommit    float64
	MemoryOvercommit float64
	Devices          Devices
}

// Limits returns the vCPUs and memory the host can hand out.
func (h Host) Limits() (vcpus float64, memGiB float64) {
	c, m := h.CPUOvercommit, h.MemoryOvercommit
	if c <= 0 {
		c = 1
	}
	if m <= 0 {
		m = 1
	}
	return float64(h.VCPUs) * c, h.MemoryGiB * m
}

// Capacity accounts what running instances hold of a Host. Instances hold
// capacity from launch or start until stop or termination. Methods are
// safe for concurrent use.
type Capacity struct {
	host Host

	mu        sync.Mutex      // guards the fields below
	held      map[string]Type // by instance id
	vcpus     int
	memoryGiB float64
}

// NewCapacity returns empty accounting for host.
func NewCapacity(host Host) *Capacity {
	return &Capacity{host: host, held: map[string]Type{}}
}

// Usage is the capacity in use and the limits.
type Usage struct {
	VCPUs, VCPULimit       float64
	MemoryGiB, MemoryLimit float64
	Instances              int
}

// Usage returns what is held now.
func (c *Capacity) Usage() Usage {
	c.mu.Lock()
	defer c.mu.Unlock()
	vl, ml := c.host.Limits()
	return Usage{VCPUs: float64(c.vcpus), VCPULimit: vl, MemoryGiB: c.memoryGiB, MemoryLimit: ml, Instances: len(c.held)}
}

// Reserve takes capacity for instance id of type t. Reserving again for
// an id that holds capacity succeeds without taking more, so that a
// restarted daemon can re-adopt its instances with the same calls. A type
// the host cannot run is Unsupported; a full host is
// InsufficientInstanceCapacity, as EC2 answers.
func (c *Capacity) Reserve(id string, t Type) error {
	if ok, why := c.host.Devices.CanRun(t); !ok {
		return api.Errorf(api.CodeUnsupported, "The instance type '%s' is not supported on this host: %s.", t.Name, why)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.held[id]; ok {
		return nil
	}
	vl, ml := c.host.Limits()
	if float64(c.vcpus+t.VCPUs) > vl || c.memoryGiB+t.MemoryGiB > ml {
		return api.Errorf(api.CodeInsufficientInstanceCapacity,
			"We currently do not have sufficient %s capacity on this host (%s).", t.Name, c.describeLocked(vl, ml))
	}
	c.held[id] = t
	c.vcpus += t.VCPUs
	c.memoryGiB += t.MemoryGiB
	return nil
}

func (c *Capacity) describeLocked(vl, ml float64) string {
	return fmt.Sprintf("%d of %g vCPUs and %g of %g GiB in use", c.vcpus, vl, c.memoryGiB, ml)
}

// Release gives back what id holds; releasing an id that holds nothing is
// not an error (the terminate and stop steps run it idempotently).
func (c *Capacity) Release(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.held[id]
	if !ok {
		return
	}
	delete(c.held, id)
	c.vcpus -= t.VCPUs
	c.memoryGiB -= t.MemoryGiB
}
