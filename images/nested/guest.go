package nested

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Guest is a bootable Linux guest for gureum-vmm: a stock Debian kernel,
// an initramfs that loads the virtio drivers and switches to the root disk,
// and an ext4 root disk image.
type Guest struct {
	Name     string // the kernel flavour: cloud or generic
	Kernel   string
	Initrd   string
	RootDisk string
}

// The files of a guest inside a guest folder, as the Linux-guest tests
// expect them (GUREUM_LINUX_GUESTS/NAME/...).
const (
	GuestKernelFile = "vmlinuz"
	GuestInitrdFile = "initrd.img"
	GuestDiskFile   = "root.img"
)

// guestModules are what the initramfs must load before it can see its root
// disk and network card; their dependencies come from the modules
// themselves. ext4 is built into the cloud kernel and a module in the
// generic one.
var guestModules = []string{"virtio_pci", "virtio_blk", "virtio_net", "ext4"}

// guestOptionalModules are loaded when the kernel has them as modules:
// ext4 asks the crypto API for "crc32c" at mount time (a soft dependency
// that "depends=" does not list), and the generic kernel builds the
// implementation as a module. (crc32c_intel needs SSE4.2, which the
// emulated L1 CPU lacks.)
var guestOptionalModules = []string{"crc32c_generic"}

// guestInit is the initramfs /init: load the drivers, mount /dev/vda and
// hand over to the root disk's init. Markers go to /dev/kmsg at level 2
// (crit) so that they reach the serial console even with "quiet
// loglevel=3", through the kernel's polled console path.
const guestInit = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /newroot
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
say() { echo "<2>gureum-initramfs: $*" > /dev/kmsg; }
for m in $(/bin/busybox cat /modules.load); do
	/bin/busybox insmod /modules/$m || say "insmod $m failed"
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do /bin/busybox usleep 50000; i=$((i+1)); done
if ! /bin/busybox mount -t ext4 /dev/vda /newroot; then
	say "cannot mount /dev/vda; PCI devices: $(/bin/busybox ls /sys/bus/pci/devices | /bin/busybox tr '\n' ' ')"
	/bin/busybox dmesg | /bin/busybox tail -n 30 > /dev/console
	/bin/busybox poweroff -f
fi
/bin/busybox umount /proc /sys
/bin/busybox mount --move /dev /newroot/dev
exec /bin/busybox switch_root /newroot /sbin/init
`

// rootInittab makes busybox init run /etc/rc at boot, power off on
// Ctrl-Alt-Del (which the VMM's shutdown action presses), and remount
// everything read-only before it powers off or reboots, so no write is
// still in flight when the disk goes away.
const rootInittab = `::sysinit:/etc/rc
::ctrlaltdel:/bin/poweroff
::shutdown:/bin/umount -a -r
`

// rootRC is the root disk's boot script. It reads its orders from the
// kernel command line:
//
//	gureum.ip=CIDR      static address for eth0 (with gureum.gw=IP)
//	gureum.write=WORD   write WORD to /root/written and sync
//	gureum.then=ACTION  poweroff or reboot once ready; otherwise keep
//	                    running until Ctrl-Alt-Del
//	gureum.printk=N     console log level from here on (e.g. 8 to see
//	                    what the kernel does at reboot)
//
// and reports one "gureum-guest: ready ..." line with what the tests check.
const rootRC = `#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -o remount,rw /
say() { echo "<2>gureum-guest: $*" > /dev/kmsg; }
for a in $(cat /proc/cmdline); do
	case $a in
	gureum.ip=*) IP=${a#*=};;
	gureum.gw=*) GW=${a#*=};;
	gureum.write=*) WRITE=${a#*=};;
	gureum.then=*) THEN=${a#*=};;
	gureum.printk=*) echo "${a#*=}" > /proc/sys/kernel/printk;;
	esac
done
ip link set lo up
if [ -n "$IP" ]; then
	ip link set eth0 up && ip addr add "$IP" dev eth0 || say "eth0 setup failed"
	[ -n "$GW" ] && ip route add default via "$GW"
fi
echo "gureum linux guest $(uname -r)" > /www/index.html
httpd -h /www -p 80 || say "httpd failed"
if [ -n "$WRITE" ]; then echo "$WRITE" > /root/written && sync || say "write failed"; fi
say "ready kernel=$(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo) root=$(awk '$2=="/"{print $1}' /proc/mounts) eth0=$(ip -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}') written=$(cat /root/written 2>/dev/null)"
case "$THEN" in
poweroff) poweroff;;
reboot) reboot;;
esac
`

// powerOffCGI lets a test power the guest off over HTTP, independently of
// the keyboard controller: it answers first, then powers off.
const powerOffCGI = `#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\npowering off\n'
(sleep 1; poweroff) </dev/null >/dev/null 2>&1 &
`

// BuildGuest writes a Guest for kernel k into dir: the kernel, an
// initramfs and a root disk of diskMiB MiB. It needs mkfs.ext4 (e2fsprogs)
// on the host.
func BuildGuest(k Kernel, busybox, dir string, diskMiB int) (Guest, error) {
	g := Guest{Name: k.Flavour,
		Kernel:   filepath.Join(dir, GuestKernelFile),
		Initrd:   filepath.Join(dir, GuestInitrdFile),
		RootDisk: filepath.Join(dir, GuestDiskFile)}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return g, fmt.Errorf("guest %s: %w", k.Flavour, err)
	}
	if err := copyFile(k.Vmlinuz, g.Kernel); err != nil {
		return g, fmt.Errorf("guest %s: %w", k.Flavour, err)
	}

	want := append([]string(nil), guestModules...)
	for _, m := range guestOptionalModules {
		if k.Modules.Has(m) {
			want = append(want, m)
		}
	}
	mods, err := k.Modules.LoadOrder(want...)
	if err != nil {
		return g, fmt.Errorf("guest %s: %w", k.Flavour, err)
	}
	ird := NewInitramfs()
	ird.File("bin/busybox", 0o755, busybox)
	ird.Symlink("bin/sh", "busybox")
	ird.CharDev("dev/console", 0o600, 5, 1)
	ird.Bytes("init", 0o755, []byte(guestInit))
	var names []string
	for _, m := range mods {
		ird.File("modules/"+filepath.Base(m), 0o644, m)
		names = append(names, filepath.Base(m))
	}
	ird.Bytes("modules.load", 0o644, []byte(strings.Join(names, "\n")+"\n"))
	if err := ird.WriteFile(g.Initrd); err != nil {
		return g, fmt.Errorf("guest %s: %w", k.Flavour, err)
	}

	if err := buildRootDisk(busybox, g.RootDisk, diskMiB); err != nil {
		return g, fmt.Errorf("guest %s: %w", k.Flavour, err)
	}
	return g, nil
}

// buildRootDisk lays out a tiny busybox system in a folder and turns it
// into an ext4 image with mkfs.ext4 -d.
func buildRootDisk(busybox, img string, mib int) error {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		return fmt.Errorf("mkfs.ext4 not found: install e2fsprogs")
	}
	tree, err := os.MkdirTemp(filepath.Dir(img), "rootfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tree)
	for _, d := range []string{"bin", "sbin", "etc", "proc", "sys", "dev", "root", "tmp", "www"} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
			return err
		}
	}
	if err := copyFile(busybox, filepath.Join(tree, "bin", "busybox")); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(tree, "bin", "busybox"), 0o755); err != nil {
		return err
	}
	// busybox --install would need to run busybox; the applets we use
	// are linked by hand.
	for _, a := range []string{"sh", "mount", "umount", "ip", "httpd", "cat", "grep", "awk", "echo",
		"sync", "usleep", "poweroff", "reboot", "halt", "uname", "sleep", "ls", "ps", "dmesg", "init"} {
		if err := os.Symlink("busybox", filepath.Join(tree, "bin", a)); err != nil {
			return err
		}
	}
	if err := os.Symlink("../bin/busybox", filepath.Join(tree, "sbin", "init")); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(tree, "www", "cgi-bin"), 0o755); err != nil {
		return err
	}
	files := map[string]string{"etc/inittab": rootInittab, "etc/rc": rootRC, "www/cgi-bin/poweroff": powerOffCGI}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(tree, name), []byte(body), 0o755); err != nil {
			return err
		}
	}
	os.Remove(img)
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "gureum-root",
		"-U", "5eed0000-0000-4000-8000-000000000001", "-E", "root_owner=0:0",
		"-d", tree, img, fmt.Sprintf("%dM", mib)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mkfs.ext4 %s: %v: %s", img, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}
