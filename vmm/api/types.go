// Package api is the wire format of gureum-vmm's socket API (a small REST
// API over a unix socket, in the spirit of Firecracker's) and a thin client
// for it. The daemon imports this package and nothing else of vmm.
// docs/vmm-api.md and openapi.yaml describe the same endpoints.
package api

import "time"

// Endpoints.
const (
	PathVM      = "/vm"      // GET: VMInfo
	PathActions = "/actions" // PUT: ActionRequest
	PathMetrics = "/metrics" // GET: Metrics
)

// VMInfo answers GET /vm.
type VMInfo struct {
	State     string    `json:"state"` // created, running, paused, stopped
	End       *EndInfo  `json:"end,omitempty"`
	VCPUs     int       `json:"vcpus"`
	MemoryMiB uint64    `json:"memory_mib"`
	BootCount int       `json:"boot_count"`
	StartedAt time.Time `json:"started_at,omitzero"`
}

// EndInfo says how a VM ended: kind is poweroff (the guest powered off),
// reboot (the guest rebooted and the VMM runs with --no-reboot), crash (the
// guest or the VMM failed; reason says how) or stopped (stopped from
// outside).
type EndInfo struct {
	Kind   string    `json:"kind"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// ActionRequest is the body of PUT /actions.
type ActionRequest struct {
	// Action is one of pause, resume, shutdown, reboot, stop, ctrl_alt_del.
	Action string `json:"action"`
	// TimeoutMS bounds a graceful shutdown: after Ctrl-Alt-Del the guest
	// has this long to power off before the VM is stopped (default 10000).
	TimeoutMS int `json:"timeout_ms,omitempty"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error codes.
const (
	CodeInvalidParameter = "InvalidParameterValue"
	CodeIncorrectState   = "IncorrectState"
	CodeUnknownAction    = "InvalidAction"
	CodeNotFound         = "NotFound"
	CodeInternal         = "InternalError"
	CodeMethodNotAllowed = "MethodNotAllowed"
)

// Metrics answers GET /metrics. Counters restart at each boot of the guest
// (BootCount tells); times are nanoseconds.
type Metrics struct {
	BootCount int             `json:"boot_count"`
	UptimeNS  uint64          `json:"uptime_ns"` // since this boot started
	VCPUs     []VCPUMetrics   `json:"vcpus"`
	Devices   []DeviceMetrics `json:"devices"`
	// UnhandledIO and UnhandledMMIO count guest accesses no device claimed.
	UnhandledIO    uint64 `json:"unhandled_io"`
	UnhandledMMIO  uint64 `json:"unhandled_mmio"`
	ConsoleDropped uint64 `json:"console_dropped_bytes"`
}

// VCPUMetrics is one vCPU's accounting. BusyNS is the time its thread was
// on a host CPU less KVM's halt polling (time spent spinning for a wake-up
// while the guest is idle): the CPU time the guest actually asked for.
type VCPUMetrics struct {
	ID         int    `json:"id"`
	CPUTimeNS  uint64 `json:"cpu_time_ns"`
	HaltPollNS uint64 `json:"halt_poll_ns"`
	BusyNS     uint64 `json:"busy_ns"`
	// Exits counts exits to the VMM by reason (io, mmio, intr, other).
	Exits map[string]uint64 `json:"exits"`
	// KVM holds the vCPU's counters from KVM's binary stats fd (exits,
	// halt_exits, io_exits, ... as this kernel names them).
	KVM map[string]uint64 `json:"kvm,omitempty"`
}

// DeviceMetrics is one device's counters (ops, bytes, errors ...).
type DeviceMetrics struct {
	Name     string            `json:"name"`
	Counters map[string]uint64 `json:"counters"`
}
