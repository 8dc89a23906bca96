// Package vmm runs one virtual machine: it turns a validated Config into a
// machine (KVM VM, guest RAM, devices, vCPUs), runs it, and reports how it
// ended. cmd/gureum-vmm wires it to flags and to the socket API.
//
// Threads (docs/design.md): an event loop on a thread of its own waits in
// epoll_wait for the devices' fds (queue kicks, taps) and runs their
// device code; one OS-thread-locked goroutine per vCPU runs KVM_RUN and
// handles its own port and MMIO exits; device code runs only under the
// loop's device lock, from either. The API goroutine talks to the machine
// through its methods, which post to the loop or flip vCPU run state.
package vmm

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"strconv"
	"strings"

	"gureum/storage/ratelimit"
)

// Limits of a VM's shape.
const (
	MaxVCPUs     = 64
	MinMemoryMiB = 16
	MaxMemoryMiB = 1 << 20 // 1 TiB
)

// MaxDrives bounds disks plus drive slots: drive IDs run vda..vdp.
const MaxDrives = 16

// DiskConfig is one virtio-blk drive.
type DiskConfig struct {
	Path     string
	ReadOnly bool
	// Limits cap the drive's I/O from boot on (zero: unlimited); the API
	// can change them at run time (docs/storage.md, "The VMM side").
	Limits ratelimit.Limits
}

// NetConfig is one virtio-net interface backed by a tap device in the
// VMM's network namespace.
type NetConfig struct {
	Tap string
	MAC net.HardwareAddr // nil: derived from the tap name
}

// Config describes a VM. Validate checks it; nothing in it is trusted
// before that.
type Config struct {
	Kernel    string
	Initrd    string
	Cmdline   string
	VCPUs     int
	MemoryMiB uint64
	Disks     []DiskConfig
	// DriveSlots adds that many empty virtio-blk drives after Disks, for
	// attaching disks at run time through the API.
	DriveSlots int
	Nets       []NetConfig
	// NoReboot makes a guest reboot end the VMM (end state "reboot")
	// instead of restarting the guest in place.
	NoReboot bool
}

// ErrInvalidConfig classifies configuration errors (the API answers them
// with 400 and the CLI with exit status 2).
var ErrInvalidConfig = errors.New("invalid configuration")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, a...))
}

// Validate checks the config's shape and that its files can be opened.
func (c *Config) Validate() error {
	if c.Kernel == "" {
		return invalid("a kernel is required")
	}
	if err := readable(c.Kernel); err != nil {
		return invalid("kernel: %v", err)
	}
	if c.Initrd != "" {
		if err := readable(c.Initrd); err != nil {
			return invalid("initrd: %v", err)
		}
	}
	if c.VCPUs < 1 || c.VCPUs > MaxVCPUs {
		return invalid("vcpus must be 1..%d, got %d", MaxVCPUs, c.VCPUs)
	}
	if c.MemoryMiB < MinMemoryMiB || c.MemoryMiB > MaxMemoryMiB {
		return invalid("memory must be %d MiB..%d MiB, got %d MiB", MinMemoryMiB, MaxMemoryMiB, c.MemoryMiB)
	}
	if strings.IndexByte(c.Cmdline, 0) >= 0 {
		return invalid("command line contains a NUL byte")
	}
	for i, d := range c.Disks {
		if d.Path == "" {
			return invalid("disk %d: empty path", i)
		}
		if err := readable(d.Path); err != nil {
			return invalid("disk %d: %v", i, err)
		}
		if err := checkLimits(d.Limits); err != nil {
			return invalid("disk %d: %v", i, err)
		}
	}
	if c.DriveSlots < 0 || len(c.Disks)+c.DriveSlots > MaxDrives {
		return invalid("disks plus drive slots must be at most %d, got %d + %d", MaxDrives, len(c.Disks), c.DriveSlots)
	}
	for i, n := range c.Nets {
		if n.Tap == "" || len(n.Tap) > 15 {
			return invalid("net %d: tap name must be 1..15 characters", i)
		}
		if n.MAC != nil && len(n.MAC) != 6 {
			return invalid("net %d: MAC must be 6 bytes", i)
		}
	}
	return nil
}

func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	return nil
}

// ParseSize parses a memory size such as "512", "512M", "512MiB", "2G" or
// "2GiB" into MiB. A bare number is MiB.
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "IB"), "B")
	mult := uint64(1)
	switch {
	case strings.HasSuffix(t, "G"):
		mult, t = 1024, strings.TrimSuffix(t, "G")
	case strings.HasSuffix(t, "M"):
		t = strings.TrimSuffix(t, "M")
	case strings.HasSuffix(t, "T"):
		mult, t = 1024*1024, strings.TrimSuffix(t, "T")
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil || n == 0 {
		return 0, invalid("bad size %q (want e.g. 512M or 2G)", s)
	}
	if n > MaxMemoryMiB/mult {
		return 0, invalid("size %q too large", s)
	}
	return n * mult, nil
}

// diskUsage is the --disk syntax, for error messages.
const diskUsage = "PATH[,ro][,iops=N][,iops_burst=N][,bps=N][,bps_burst=N]"

// ParseDisk parses "PATH[,ro][,iops=N][,iops_burst=N][,bps=N][,bps_burst=N]":
// iops and bps are sustained operations and bytes per second, the bursts
// how much an idle drive may save up; byte amounts take K, M, G suffixes
// (powers of 1024).
func ParseDisk(s string) (DiskConfig, error) {
	parts := strings.Split(s, ",")
	d := DiskConfig{Path: parts[0]}
	for _, p := range parts[1:] {
		k, val, hasValue := strings.Cut(p, "=")
		var dst *float64
		switch k {
		case "iops":
			dst = &d.Limits.OpsPerSecond
		case "iops_burst":
			dst = &d.Limits.OpsBurst
		case "bps":
			dst = &d.Limits.BytesPerSecond
		case "bps_burst":
			dst = &d.Limits.BytesBurst
		}
		switch {
		case dst != nil && hasValue:
			n, err := parseAmount(val)
			if err != nil {
				return d, invalid("disk %q: %s: %v", s, k, err)
			}
			*dst = float64(n)
		case p == "ro":
			d.ReadOnly = true
		case p == "rw" || p == "":
		default:
			return d, invalid("disk %q: unknown option %q (want %s)", s, p, diskUsage)
		}
	}
	if d.Path == "" {
		return d, invalid("disk %q: empty path", s)
	}
	return d, nil
}

// ParseNet parses "TAP[,mac=XX:XX:XX:XX:XX:XX]".
func ParseNet(s string) (NetConfig, error) {
	parts := strings.Split(s, ",")
	n := NetConfig{Tap: parts[0]}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		switch k {
		case "mac":
			mac, err := net.ParseMAC(v)
			if err != nil || len(mac) != 6 {
				return n, invalid("net %q: bad MAC %q", s, v)
			}
			n.MAC = mac
		default:
			return n, invalid("net %q: unknown option %q (want TAP[,mac=MAC])", s, p)
		}
	}
	return n, nil
}

// parseAmount reads a non-negative count with an optional K, M or G
// suffix (powers of 1024).
func parseAmount(s string) (uint64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := uint64(1)
	switch {
	case strings.HasSuffix(t, "K"):
		mult, t = 1<<10, strings.TrimSuffix(t, "K")
	case strings.HasSuffix(t, "M"):
		mult, t = 1<<20, strings.TrimSuffix(t, "M")
	case strings.HasSuffix(t, "G"):
		mult, t = 1<<30, strings.TrimSuffix(t, "G")
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil || n > 1<<50/mult {
		return 0, fmt.Errorf("bad amount %q (want e.g. 200, 64K or 100M)", s)
	}
	return n * mult, nil
}

// checkLimits refuses negative, NaN or infinite limits.
func checkLimits(l ratelimit.Limits) error {
	for _, v := range []float64{l.OpsPerSecond, l.OpsBurst, l.BytesPerSecond, l.BytesBurst} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("I/O limits must be finite and not negative, got %+v", l)
		}
	}
	return nil
}
