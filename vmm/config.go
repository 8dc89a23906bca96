// Package vmm runs one virtual machine: it turns a validated Config into a
// machine (KVM VM, guest RAM, devices, vCPUs), runs it, and reports how it
// ended. cmd/gureum-vmm wires it to flags and to the socket API.
//
// Threads (docs/design.md): one event-loop goroutine owns every device; one
// OS-thread-locked goroutine per vCPU runs KVM_RUN and forwards port and
// MMIO exits to the loop; the API goroutine talks to the machine through
// its methods, which post to the loop or flip vCPU run state.
package vmm

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// Limits of a VM's shape.
const (
	MaxVCPUs     = 64
	MinMemoryMiB = 16
	MaxMemoryMiB = 1 << 20 // 1 TiB
)

// DiskConfig is one virtio-blk drive.
type DiskConfig struct {
	Path     string
	ReadOnly bool
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
	Nets      []NetConfig
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

// ParseDisk parses "PATH[,ro]".
func ParseDisk(s string) (DiskConfig, error) {
	parts := strings.Split(s, ",")
	d := DiskConfig{Path: parts[0]}
	for _, p := range parts[1:] {
		switch p {
		case "ro":
			d.ReadOnly = true
		case "rw", "":
		default:
			return d, invalid("disk %q: unknown option %q (want PATH[,ro])", s, p)
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
