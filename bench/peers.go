package main

import (
	"fmt"
	"path/filepath"
	"strconv"
)

// guestSetup is what one VMM run gives the guest. Every peer gets the same
// kernel image, command line, vCPU count and memory size; disk and tap are
// set only by the block and network parts.
type guestSetup struct {
	kernel  string
	cmdline string
	cpus    int
	memMiB  int
	disk    string // disk image, or "" for none
	// diskFormat is the image's format for peers that must be told
	// (QEMU); empty means raw. gureum-vmm reads the header.
	diskFormat string
	tap        string // tap device in the run's namespace, or "" for none
}

// peer is one VMM under test: how to start it for a guest setup, and what
// it can do.
type peer struct {
	name  string // short name used in -only and in the JSON rows
	title string // column heading of the table
	// needsPTY: the process only runs properly with a terminal as stdin
	// (gokvm blocks for ever instead of exiting without one).
	needsPTY bool
	// devices: the peer can give our guest a modern virtio-blk and
	// virtio-net device. gokvm offers only legacy virtio, which the test
	// guest does not drive, so it is measured on start-up and memory only.
	devices bool
	// stopsEarly: the guest cannot finish initialising on this peer and
	// prints "gureum-testguest: error ..." instead of its ready line; the
	// boot part then times that line and measures memory of the stopped
	// guest. note explains why, under the table.
	stopsEarly bool
	note       string
	command    func(g guestSetup) []string
}

// gokvmModule is the gokvm version the anchors in
// shared/reference/anchors were measured with.
const gokvmModule = "github.com/bobuhiro11/gokvm@v0.0.8-0.20231003020000-f53faca69d28"

// Peer names, as used by -only and in the result rows.
const (
	peerGureum = "gureum"
	peerQEMU   = "qemu"
	peerGokvm  = "gokvm"
)

func gureumPeer(binDir string) peer {
	bin := filepath.Join(binDir, "gureum-vmm")
	return peer{
		name: peerGureum, title: "gureum-vmm", devices: true,
		command: func(g guestSetup) []string {
			argv := []string{bin, "--kernel", g.kernel, "--cmdline", g.cmdline,
				"--cpus", strconv.Itoa(g.cpus), "--memory", fmt.Sprintf("%dM", g.memMiB)}
			if g.disk != "" {
				argv = append(argv, "--disk", g.disk)
			}
			if g.tap != "" {
				argv = append(argv, "--net", g.tap)
			}
			return argv
		},
	}
}

// qemuPeer runs QEMU's microvm machine as lean as the guest allows:
// no default devices, no firmware (the PVH entry point is jumped to
// directly), the serial port on stdio. ACPI stays on (microvm's default)
// because the guest finds the PCIe ECAM window in the MCFG table and powers
// off through the FADT; pcie=on gives it the PCIe host bridge that
// virtio-*-pci devices sit on. -cpu host fails to start on PVM (KVM refuses
// MSR_IA32_ARCH_CAPABILITIES), hence -arch-capabilities.
//
// Disk: cache=writeback (QEMU's default, stated anyway), because
// gureum-vmm also goes through the host page cache with plain pread/pwrite.
// Net: vhost=off, so both VMMs move packets in their own user-space loop.
func qemuPeer(bin string) peer {
	return peer{
		name: peerQEMU, title: "QEMU microvm", devices: true,
		command: func(g guestSetup) []string {
			argv := []string{bin, "-M", "microvm,pcie=on", "-enable-kvm", "-cpu", "host,-arch-capabilities",
				"-smp", strconv.Itoa(g.cpus), "-m", strconv.Itoa(g.memMiB),
				"-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
				"-kernel", g.kernel, "-append", g.cmdline}
			if g.disk != "" {
				format := g.diskFormat
				if format == "" {
					format = "raw"
				}
				argv = append(argv, "-drive", "file="+g.disk+",format="+format+",if=none,id=d0,cache=writeback",
					"-device", "virtio-blk-pci,drive=d0")
			}
			if g.tap != "" {
				argv = append(argv, "-netdev", "tap,id=n0,ifname="+g.tap+",script=no,downscript=no,vhost=off",
					"-device", "virtio-net-pci,netdev=n0")
			}
			return argv
		},
	}
}

// gokvmPeer runs gokvm. It boots PVH ELF kernels but passes the command
// line only together with an initrd, so the guest sees an empty one (and
// would idle, which is what the start-up part wants anyway). gokvm builds
// no ACPI tables, which the guest needs for its CPU count, interrupt
// controller and power-off, so the guest stops at that point.
func gokvmPeer(bin string) peer {
	return peer{
		name: peerGokvm, title: "gokvm", needsPTY: true, stopsEarly: true,
		note: "gokvm gives the guest no ACPI tables, so the test guest stops early in its start-up with " +
			"`gureum-testguest: error no ACPI RSDP` and never prints its ready line. Its \"first guest line\" " +
			"is that error line (less guest work than the others' ready line), and its memory is that of the " +
			"stopped, halted guest. gokvm offers only legacy virtio, which the guest does not drive, so it " +
			"takes no part in the device measurements.",
		command: func(g guestSetup) []string {
			return []string{bin, "boot", "-k", g.kernel, "-m", fmt.Sprintf("%dM", g.memMiB),
				"-c", strconv.Itoa(g.cpus), "-p", g.cmdline}
		},
	}
}
