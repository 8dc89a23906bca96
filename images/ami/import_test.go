package ami

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"gureum/api"
	"gureum/storage/volume"
)

// TestImportRealExt4 imports an ext4 image made by mkfs.ext4, like the
// default guest's root disk, and checks that a launched root volume reads
// exactly the same bytes, file system included.
func TestImportRealExt4(t *testing.T) {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skip("mkfs.ext4 not found (apt-get install e2fsprogs)")
	}
	c := newCloud(t)
	tree := filepath.Join(c.dir, "tree")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc", "hostname"), []byte("gureum\n"), 0o644)
	os.WriteFile(filepath.Join(tree, "big"), bytes.Repeat([]byte("0123456789abcdef"), 1<<16), 0o644)
	disk := filepath.Join(c.dir, "root.img")
	if out, err := exec.Command(mkfs, "-q", "-F", "-L", "gureum-root", "-d", tree, disk, "48M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}

	im, err := c.reg.RegisterDefault(DefaultImage{Name: DefaultLinuxName, OwnerID: c.admin,
		Kernel: c.kernelFile(api.BootModeBzImage, 9), RootDisk: disk, KernelCmdline: "console=ttyS0"})
	if err != nil {
		t.Fatal(err)
	}
	vols, err := c.reg.CreateRootVolumes(im, c.bob, 1, volume.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	d := c.openVolume(vols[0].ID)
	defer d.Close()
	got := make([]byte, len(want))
	if _, err := d.ReadAt(got, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the launched root volume differs from the imported disk")
	}
	if got[0x438] != 0x53 || got[0x439] != 0xef {
		t.Fatal("no ext4 superblock magic at 0x438")
	}
	tail := make([]byte, 4096)
	if _, err := d.ReadAt(tail, 1<<30-4096); err != nil || !bytes.Equal(tail, make([]byte, 4096)) {
		t.Fatalf("the volume past the disk reads %v, %v", tail[:8], err)
	}
}

// TestRegisterTestGuestKernel registers the real test guest, when built,
// and checks it is recognised as a PVH kernel.
func TestRegisterTestGuestKernel(t *testing.T) {
	dir := os.Getenv("GUREUM_BIN")
	if dir == "" {
		dir = filepath.Join("..", "..", "bin")
	}
	elf := filepath.Join(dir, "testguest.elf")
	if _, err := os.Stat(elf); err != nil {
		t.Skipf("%s not built (make guest)", elf)
	}
	c := newCloud(t)
	im, err := c.reg.RegisterDefault(DefaultImage{Name: DefaultTestGuestName, OwnerID: c.admin, Kernel: elf, KernelCmdline: "selftest"})
	if err != nil {
		t.Fatal(err)
	}
	if im.BootMode != api.BootModePVH || im.Initramfs != "" {
		t.Fatalf("test guest image %+v", im)
	}
	kernel, initrd := c.reg.BootFiles(im.Boot())
	a, _ := os.ReadFile(kernel)
	b, _ := os.ReadFile(elf)
	if !bytes.Equal(a, b) || initrd != "" {
		t.Fatal("the registered kernel is not the test guest")
	}
}
