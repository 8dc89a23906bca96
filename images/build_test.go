package images

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCacheFullErrorNamesFileAndFix(t *testing.T) {
	// /dev/full answers every write with ENOSPC, like a full disk.
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full on this system")
	}
	err := writeFile("/dev/full", []byte("x"), 0o644)
	var full *CacheFullError
	if !errors.As(err, &full) {
		t.Fatalf("err = %v, want a CacheFullError", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "/dev/full") || !strings.Contains(msg, "--cache") {
		t.Errorf("message names neither the file nor the fix: %s", msg)
	}
	if !isDiskFull("dpkg-deb: error: cannot copy extracted data for './x': failed to write (No space left on device)") {
		t.Error("dpkg-deb's ENOSPC message not recognised")
	}
}

func TestNoPackageLists(t *testing.T) {
	old := aptListsDir
	aptListsDir = t.TempDir()
	defer func() { aptListsDir = old }()
	_, err := Build(context.Background(), Options{CacheDir: t.TempDir()})
	if !errors.Is(err, ErrNoPackageLists) {
		t.Fatalf("err = %v, want ErrNoPackageLists", err)
	}
	if !strings.Contains(err.Error(), "apt-get update") {
		t.Errorf("message does not say to run apt-get update: %v", err)
	}
}

func TestMissingPackage(t *testing.T) {
	if _, err := exec.LookPath("apt-cache"); err != nil {
		t.Skip("apt-cache not installed")
	}
	if checkPackageLists() != nil {
		t.Skip("apt has no package lists (run apt-get update)")
	}
	_, _, err := candidates(context.Background(), "busybox-static", "gureum-no-such-package")
	var missing *MissingPackageError
	if !errors.As(err, &missing) || missing.Package != "gureum-no-such-package" {
		t.Fatalf("err = %v, want MissingPackageError for gureum-no-such-package", err)
	}
	if !strings.Contains(err.Error(), "apt-get update") {
		t.Errorf("message does not suggest apt-get update: %v", err)
	}
}

func TestControlFieldsAndKernelDependency(t *testing.T) {
	f := controlFields([]byte("Package: linux-image-cloud-amd64\nVersion: 6.1.192-2\nDepends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)\nDescription: x\n more\n\nPackage: other\n"))
	if f["Version"] != "6.1.192-2" || f["Description"] != "x\nmore" || f["Package"] != "linux-image-cloud-amd64" {
		t.Errorf("fields %q", f)
	}
	k, err := kernelDependency("linux-image-cloud-amd64", f)
	if err != nil || k != "linux-image-6.1.0-56-cloud-amd64" {
		t.Errorf("kernel dependency %q, %v", k, err)
	}
	if _, err := kernelDependency("x", map[string]string{"Depends": "libc6"}); err == nil {
		t.Error("metapackage without a kernel accepted")
	}
}

func TestCheckBzImage(t *testing.T) {
	img := make([]byte, 0x400)
	copy(img[0x202:], "HdrS")
	img[0x1fe], img[0x1ff] = 0x55, 0xaa
	if err := checkBzImage(img); err != nil {
		t.Errorf("valid header rejected: %v", err)
	}
	img[0x202] = 'X'
	if err := checkBzImage(img); err == nil {
		t.Error("header without HdrS accepted")
	}
	if err := checkBzImage(img[:100]); err == nil {
		t.Error("short file accepted")
	}
}

// TestGuestScripts checks the guest's shell scripts with the host's sh
// (busybox sh in the guest takes the same POSIX syntax) and runs the
// kernel command line parser on sample lines.
func TestGuestScripts(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on this host")
	}
	for _, p := range []string{"initramfs/init", "rootfs/etc/init.d/rcS", "rootfs/etc/init.d/rcK",
		"rootfs/etc/udhcpc/default.script", "rootfs/srv/www/cgi-bin/burn", "rootfs/lib/gureum/cmdline.sh"} {
		if out, err := exec.Command(sh, "-n", p).CombinedOutput(); err != nil {
			t.Errorf("%s: %v: %s", p, err, out)
		}
	}
	lib, err := os.ReadFile("rootfs/lib/gureum/cmdline.sh")
	if err != nil {
		t.Fatal(err)
	}
	cmdline := filepath.Join(t.TempDir(), "cmdline")
	parser := strings.ReplaceAll(string(lib), "/proc/cmdline", cmdline)
	for _, c := range []struct{ line, key, want string }{
		{`console=ttyS0 gureum.name=web-1 quiet`, "gureum.name", "web-1"},
		{`gureum.name=first gureum.ip=10.0.0.5/24`, "gureum.ip", "10.0.0.5/24"},
		{`quiet gureum.run="echo a b; sync" panic=-1`, "gureum.run", "echo a b; sync"},
		{`quiet xgureum.name=no`, "gureum.name", ""},
		{`quiet`, "gureum.gw", ""},
	} {
		if err := os.WriteFile(cmdline, []byte(c.line+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		key := strings.ReplaceAll(c.key, ".", `\.`)
		out, err := exec.Command(sh, "-c", parser+"\ncmdline_value '"+key+"'").Output()
		if err != nil {
			t.Fatalf("%q: %v", c.line, err)
		}
		if got := strings.TrimSuffix(string(out), "\n"); got != c.want {
			t.Errorf("cmdline_value %s in %q = %q, want %q", c.key, c.line, got, c.want)
		}
	}
}

// buildOrSkip builds into cache, skipping the test when this host cannot
// fetch Debian packages.
func buildOrSkip(t *testing.T, opts Options) *Image {
	t.Helper()
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: not a Debian host", tool)
		}
	}
	im, err := Build(context.Background(), opts)
	var missing *MissingPackageError
	var fetch *FetchError
	if errors.Is(err, ErrNoPackageLists) || errors.As(err, &missing) || errors.As(err, &fetch) {
		t.Skipf("apt cannot fetch the packages here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return im
}

// TestBuildReproducible builds twice into two caches and compares every
// output byte for byte, then checks that a third build is a cache hit.
// About 45 s on 2 cores (two downloads of ~100 MB from the mirror).
func TestBuildReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("downloads kernels: skipped with -short")
	}
	cacheA, cacheB := t.TempDir(), t.TempDir()
	a := buildOrSkip(t, Options{CacheDir: cacheA, RootSizeMiB: 64})
	b := buildOrSkip(t, Options{CacheDir: cacheB, RootSizeMiB: 64})
	if a.Key != b.Key || a.Cached || b.Cached {
		t.Fatalf("keys %s %s, cached %v %v", a.Key, b.Key, a.Cached, b.Cached)
	}
	files := []string{"manifest.json", "root.img"}
	for _, k := range a.Kernels {
		files = append(files, filepath.Base(k.Vmlinuz), filepath.Base(k.Initramfs))
	}
	for _, f := range files {
		x, err := os.ReadFile(filepath.Join(a.Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(filepath.Join(b.Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between two builds", f)
		}
	}
	cloud, ok := a.Kernel("cloud")
	generic, ok2 := a.Kernel("generic")
	if !ok || !ok2 {
		t.Fatalf("kernels %+v", a.Kernels)
	}
	// The cloud kernel has ext4 built in; the generic one loads it.
	if strings.Contains(strings.Join(cloud.Modules, " "), "ext4") || !strings.HasSuffix(strings.Join(generic.Modules, " "), "ext4") {
		t.Errorf("modules: cloud %v, generic %v", cloud.Modules, generic.Modules)
	}
	for _, k := range a.Kernels {
		for _, m := range []string{"virtio_pci", "virtio_blk", "virtio_net"} {
			if !strings.Contains(" "+strings.Join(k.Modules, " ")+" ", " "+m+" ") {
				t.Errorf("%s initramfs lacks %s: %v", k.Flavour, m, k.Modules)
			}
		}
	}
	start := time.Now()
	c, err := Build(context.Background(), Options{CacheDir: cacheA, RootSizeMiB: 64})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Cached || c.Dir != a.Dir {
		t.Errorf("third build not served from the cache: %+v", c)
	}
	if link, err := os.Readlink(filepath.Join(cacheA, "latest")); err != nil || link != a.Key {
		t.Errorf("latest -> %q, %v", link, err)
	}
	t.Logf("cached build took %v", time.Since(start))
}
