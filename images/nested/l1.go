package nested

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// L1 is the nested test host: a Linux (the Debian cloud kernel) that QEMU
// runs under TCG with an emulated AMD CPU that has SVM and nested paging.
// To that kernel the emulated CPU looks like real hardware virtualization,
// so kvm_amd loads and /dev/kvm inside L1 is the ordinary hardware-style
// KVM that gureum-vmm is written for. gureum-vmm then runs the L2 guests.
// L1 has no disk: everything it needs is in its initramfs.

// L1Config says what goes into the L1 initramfs.
type L1Config struct {
	// Kernel is L1's kernel; the modules of l1Modules (and their
	// dependencies) are loaded by /init.
	Kernel Kernel
	// Busybox is a static busybox: L1's shell and tools (ip, mount, ...).
	Busybox string
	// Files maps paths inside L1 to host files: gureum binaries, the
	// test binary, guest kernels and disks.
	Files map[string]string
	// Test is the path inside L1 of a `go test -c` binary to run with
	// -test.v; TestArgs are added to its command line, Env to its
	// environment.
	Test     string
	TestArgs []string
	Env      map[string]string
}

// l1Modules: kvm_amd gives /dev/kvm on the emulated SVM CPU; tun gives the
// tap devices the tests attach L2's virtio-net to; bridge and br_netfilter
// are what network/vpc builds a VPC with (its bridge, and bridge netfilter,
// which it turns on in every VPC namespace for the security groups);
// xfrm_user and nfnetlink because the netlink library opens a socket of
// every netlink family it supports (route, xfrm, netfilter) for each
// handle, and fails with "protocol not supported" if one is missing;
// nf_tables because deleting a VPC asks nftables in the root namespace
// for the VPC's uplink rules, and without nf_tables that request is never
// answered; nft_ct (with nf_conntrack) for the security groups' stateful
// rules (ct state) and nft_meta_bridge for their per-port anti-spoofing
// rules (meta iifname in the bridge family), which the daemon installs in
// every VPC: L1 has no modprobe, so the kernel cannot load them on demand
// and the rule set is refused with ENOENT.
var l1Modules = []string{"kvm_amd", "tun", "bridge", "br_netfilter", "xfrm_user", "nfnetlink", "nf_tables", "nft_ct", "nft_meta_bridge"}

// l1ModuleParams are the parameters L1's /init loads a module with, by
// module name. kvm_amd gets npt=0: L1's KVM then runs L2 on shadow page
// tables of its own instead of the CPU's nested paging, which is QEMU's
// emulation here. With nested paging about one round of the Linux-guest
// tests in seven ended in an L2 triple fault or hang that traced to the
// guest's page walks through it (docs/nested.md); with shadow paging none
// did in about 25 rounds, at the same speed. gureum-vmm sees no
// difference: which MMU L1's KVM uses is invisible through /dev/kvm.
var l1ModuleParams = map[string]string{"kvm_amd": "npt=0"}

// Marker lines L1's /init writes to its serial console. The host side
// reads the test output between TestsBegin and TestsEnd.
const (
	MarkerInit       = "gureum-l1: init"
	MarkerKVMReady   = "gureum-l1: kvm ready"
	MarkerTestsBegin = "gureum-l1: tests begin"
	MarkerTestsEnd   = "gureum-l1: tests end"
	MarkerAlive      = "gureum-l1: alive"
	markerPrefix     = "gureum-l1: "
)

// l1Init is L1's /init. It prints a heartbeat every 5 seconds so the host
// can tell "the tests are quiet" (heartbeat continues) from "L1 froze"
// (nothing at all), and powers off at the end; a kernel panic reboots
// (panic=-1), which QEMU's -no-reboot turns into an exit.
const l1InitTemplate = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
# devtmpfs has no /dev/stdout and friends (udev makes them elsewhere);
# without them a program opening /dev/stdout would create a plain file.
ln -s /proc/self/fd /dev/fd
for i in 0:stdin 1:stdout 2:stderr; do ln -s /proc/self/fd/${i%%:*} /dev/${i#*:}; done
up() { cut -d' ' -f1 /proc/uptime; }
echo "gureum-l1: init uptime=$(up)"
while read -r m args; do
	insmod /modules/$m $args || echo "gureum-l1: insmod $m failed"
done < /modules.load
if [ -c /dev/kvm ]; then
	echo "gureum-l1: kvm ready uptime=$(up) nested=$(cat /sys/module/kvm_amd/parameters/nested 2>/dev/null) npt=$(cat /sys/module/kvm_amd/parameters/npt 2>/dev/null)"
else
	echo "gureum-l1: no /dev/kvm after loading kvm_amd:"; dmesg | grep -iE 'kvm|svm' | tail -5
fi
ip link set lo up
( while sleep 5; do echo "gureum-l1: alive uptime=$(up)"; done ) &
HB=$!
cd /tmp
echo "gureum-l1: tests begin uptime=$(up)"
env %s %s -test.v %s 2>&1
rc=$?
kill $HB
echo "gureum-l1: tests end status=$rc uptime=$(up)"
sync
poweroff -f
`

// moduleLoadList is L1's /modules.load: one line per module file, in
// load order, with the parameters to load it with (l1ModuleParams).
func moduleLoadList(files []string) string {
	var b strings.Builder
	for _, f := range files {
		b.WriteString(path.Base(f))
		if p := l1ModuleParams[normalizeModule(f)]; p != "" {
			b.WriteString(" " + p)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// BuildL1 writes L1's initramfs to dst.
func BuildL1(cfg L1Config, dst string) error {
	mods, err := cfg.Kernel.Modules.LoadOrder(l1Modules...)
	if err != nil {
		return fmt.Errorf("l1 initramfs: %w", err)
	}
	a := NewInitramfs()
	a.File("bin/busybox", 0o755, cfg.Busybox)
	a.Symlink("bin/sh", "busybox")
	a.CharDev("dev/console", 0o600, 5, 1)
	a.CharDev("dev/null", 0o666, 1, 3)
	for _, d := range []string{"proc", "sys", "tmp", "root"} {
		a.Dir(d, 0o755)
	}
	a.Bytes("modules.load", 0o644, []byte(moduleLoadList(mods)))
	for _, m := range mods {
		a.File("modules/"+path.Base(m), 0o644, m)
	}
	for inside, host := range cfg.Files {
		a.File(inside, 0o755, host)
	}
	var env []string
	for k, v := range cfg.Env {
		env = append(env, shellQuote(k+"="+v))
	}
	sort.Strings(env)
	var args []string
	for _, s := range cfg.TestArgs {
		args = append(args, shellQuote(s))
	}
	init := fmt.Sprintf(l1InitTemplate, strings.Join(env, " "), shellQuote(cfg.Test), strings.Join(args, " "))
	a.Bytes("init", 0o755, []byte(init))
	if err := a.WriteFile(dst); err != nil {
		return fmt.Errorf("l1 initramfs: %w", err)
	}
	return nil
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
