package images

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBootUnderQEMU boots both kernels with the root disk under QEMU's
// software emulator (TCG), which any host can run: a check of the image
// itself, apart from gureum-vmm. It takes about 30 s on top of a build, so
// it runs only with GUREUM_IMAGE_QEMU=1 (package qemu-system-x86).
func TestBootUnderQEMU(t *testing.T) {
	if os.Getenv("GUREUM_IMAGE_QEMU") != "1" {
		t.Skip("set GUREUM_IMAGE_QEMU=1 to boot the image under QEMU TCG")
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatal("GUREUM_IMAGE_QEMU=1 but qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
	}
	debugfs, ok := hostE2fsTools(context.Background())
	if !ok {
		t.Skip("no debugfs on the host to read the disk back")
	}
	im := buildOrSkip(t, Options{CacheDir: t.TempDir(), RootSizeMiB: 64})
	for _, k := range im.Kernels {
		t.Run(k.Flavour, func(t *testing.T) {
			disk := filepath.Join(t.TempDir(), "root.img")
			copyFile(t, im.RootDisk, disk)
			console := filepath.Join(t.TempDir(), "console.log")
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, qemu, "-accel", "tcg", "-m", "512", "-smp", "2",
				"-kernel", k.Vmlinuz, "-initrd", k.Initramfs,
				"-drive", "file="+disk+",format=raw,if=virtio",
				"-nic", "user,model=virtio-net-pci", // QEMU's in-process network and DHCP server
				"-display", "none", "-monitor", "none", "-serial", "file:"+console, "-no-reboot",
				"-append", `console=ttyS0 quiet gureum.name=`+k.Flavour+` gureum.run="echo written >/root/probe; sync; poweroff"`)
			out, err := cmd.CombinedOutput()
			log, _ := os.ReadFile(console)
			if err != nil {
				t.Fatalf("qemu: %v: %s\nconsole:\n%s", err, out, log)
			}
			want := "gureum-guest: ready name=" + k.Flavour + " ip=10.0.2.15/24 cpus=2"
			for _, w := range []string{want, "gureum-guest: run exit=0", "gureum-guest: shutting down", "reboot: Power down"} {
				if !strings.Contains(string(log), w) {
					t.Errorf("console lacks %q:\n%s", w, log)
				}
			}
			got, err := exec.Command(debugfs.debugfs, "-R", "cat /root/probe", disk).Output()
			if err != nil || strings.TrimSpace(string(got)) != "written" {
				t.Errorf("file written in the guest: %q, %v", got, err)
			}
		})
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
