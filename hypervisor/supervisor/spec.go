package supervisor

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Spec is what the supervisor needs to run one instance's VMM. The control
// plane builds it from the instance, its type and its volumes.
type Spec struct {
	// ID names the instance; it becomes the run directory's and the
	// cgroup's name, so it is limited to letters, digits, '-', '_' and '.'.
	ID        string `json:"id"`
	Kernel    string `json:"kernel"`
	Initrd    string `json:"initrd,omitempty"`
	Cmdline   string `json:"cmdline,omitempty"`
	VCPUs     int    `json:"vcpus"`
	MemoryMiB uint64 `json:"memory_mib"`
	Disks     []Disk `json:"disks,omitempty"`
	// DriveSlots adds that many empty virtio-blk drives after Disks
	// (gureum-vmm --drive-slots), into which volumes are attached while
	// the guest runs.
	DriveSlots int   `json:"drive_slots,omitempty"`
	Nets       []Net `json:"nets,omitempty"`
	// NoReboot makes a guest reboot end the VMM (reported as EndReboot)
	// instead of resetting the machine in place, so the control plane can
	// start a fresh VMM with a possibly changed configuration.
	NoReboot bool `json:"no_reboot,omitempty"`
	// NetNS, when set, runs the VMM inside that named network namespace
	// (/run/netns/NAME), where its taps live: the wrapper is started
	// through nsenter --net, which enters only the network namespace.
	NetNS string `json:"netns,omitempty"`
	// Limits overrides the cgroup limits; the zero value means
	// DefaultLimits(VCPUs, MemoryMiB).
	Limits *Limits `json:"limits,omitempty"`
}

// Disk is one virtio-blk drive.
type Disk struct {
	Path     string `json:"path"`
	ReadOnly bool   `json:"read_only,omitempty"`
	// I/O limits the VMM enforces from boot (storage/ratelimit): sustained
	// operations and bytes per second and what an idle drive may save up.
	// Zero means unlimited (rates) or the VMM's default (bursts).
	IOPS           int64 `json:"iops,omitempty"`
	IOPSBurst      int64 `json:"iops_burst,omitempty"`
	BytesPerSecond int64 `json:"bps,omitempty"`
	BytesBurst     int64 `json:"bps_burst,omitempty"`
}

// Net is one virtio-net device on an existing tap.
type Net struct {
	Tap string `json:"tap"`
	MAC string `json:"mac,omitempty"`
}

// Limits are an instance's cgroup limits.
type Limits struct {
	// CPUMilli is how much CPU time the VMM's threads may use together,
	// in thousandths of one host CPU: 1000 is one full CPU, 200 is 20% of
	// one. Zero means no limit.
	CPUMilli int `json:"cpu_milli"`
	// MemoryBytes caps the memory charged to the group (guest RAM the
	// guest touched plus the VMM's own). Zero means no limit.
	MemoryBytes int64 `json:"memory_bytes"`
}

// MemoryOverheadMiB is added to the guest's RAM for the memory limit: the
// VMM's own heap, stacks, page tables and buffers. A test-guest VMM
// resides in under 10 MiB; the margin is for large queues and bursts.
const MemoryOverheadMiB = 64

// DefaultLimits gives an instance one full host CPU per vCPU and its RAM
// plus MemoryOverheadMiB.
func DefaultLimits(vcpus int, memoryMiB uint64) Limits {
	return Limits{CPUMilli: vcpus * 1000, MemoryBytes: int64(memoryMiB+MemoryOverheadMiB) << 20}
}

// ErrInvalidSpec wraps every validation failure of a Spec.
var ErrInvalidSpec = errors.New("invalid instance spec")

func invalidSpec(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidSpec, fmt.Sprintf(format, a...))
}

// validID reports whether id can name a directory and a cgroup safely.
func validID(id string) bool {
	if id == "" || len(id) > 64 || id == "." || id == ".." {
		return false
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// validate checks what gureum-vmm's flag syntax cannot carry (a comma in a
// disk path would be read as an option) and what would make a bad name.
func (s Spec) validate() error {
	if !validID(s.ID) {
		return invalidSpec("id %q: want 1-64 letters, digits, '-', '_' or '.'", s.ID)
	}
	if s.Kernel == "" {
		return invalidSpec("no kernel")
	}
	if s.VCPUs < 1 {
		return invalidSpec("vcpus %d: want at least 1", s.VCPUs)
	}
	if s.MemoryMiB < 1 {
		return invalidSpec("memory_mib %d: want at least 1", s.MemoryMiB)
	}
	for _, d := range s.Disks {
		if d.Path == "" || strings.Contains(d.Path, ",") {
			return invalidSpec("disk path %q: empty or contains a comma", d.Path)
		}
	}
	for _, n := range s.Nets {
		if n.Tap == "" || strings.ContainsAny(n.Tap, ",=") || strings.ContainsAny(n.MAC, ",=") {
			return invalidSpec("net %q mac %q: empty or contains ',' or '='", n.Tap, n.MAC)
		}
	}
	if s.DriveSlots < 0 {
		return invalidSpec("drive_slots %d: negative", s.DriveSlots)
	}
	if s.Limits != nil && (s.Limits.CPUMilli < 0 || s.Limits.MemoryBytes < 0) {
		return invalidSpec("negative limits")
	}
	return nil
}

// limits returns the cgroup limits the spec asks for.
func (s Spec) limits() Limits {
	if s.Limits != nil {
		return *s.Limits
	}
	return DefaultLimits(s.VCPUs, s.MemoryMiB)
}

// vmmArgs turns the spec into gureum-vmm flags (cmd/gureum-vmm), in
// service mode with the run directory's socket and log paths.
func (s Spec) vmmArgs(r record) []string {
	args := []string{
		"--kernel", s.Kernel,
		"--cpus", strconv.Itoa(s.VCPUs),
		"--memory", strconv.FormatUint(s.MemoryMiB, 10) + "M",
		"--api-sock", r.APISock,
		"--console-log", r.ConsoleLog,
		"--console-sock", r.ConsoleSock,
	}
	if s.Initrd != "" {
		args = append(args, "--initrd", s.Initrd)
	}
	if s.Cmdline != "" {
		args = append(args, "--cmdline", s.Cmdline)
	}
	for _, d := range s.Disks {
		v := d.Path
		if d.ReadOnly {
			v += ",ro"
		}
		for _, l := range []struct {
			key string
			n   int64
		}{{"iops", d.IOPS}, {"iops_burst", d.IOPSBurst}, {"bps", d.BytesPerSecond}, {"bps_burst", d.BytesBurst}} {
			if l.n > 0 {
				v += "," + l.key + "=" + strconv.FormatInt(l.n, 10)
			}
		}
		args = append(args, "--disk", v)
	}
	for _, n := range s.Nets {
		v := n.Tap
		if n.MAC != "" {
			v += ",mac=" + n.MAC
		}
		args = append(args, "--net", v)
	}
	if s.DriveSlots > 0 {
		args = append(args, "--drive-slots", strconv.Itoa(s.DriveSlots))
	}
	if s.NoReboot {
		args = append(args, "--no-reboot")
	}
	return args
}
