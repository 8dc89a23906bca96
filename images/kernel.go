package images

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// busybox is the extracted static busybox: one binary that is sh, init,
// mount, insmod, udhcpc, httpd and some 300 other programs ("applets"),
// chosen by the name it is run as. Both the initramfs and the root disk use
// it, with a symbolic link per applet.
type busybox struct {
	path    string   // the extracted binary, runnable on this (amd64) host
	binary  []byte   // its contents
	applets []string // where its applets go, e.g. "bin/sh", "sbin/init"
}

// loadBusybox reads the extracted busybox and asks it for its applet list.
// Running it on the build host works because the host is amd64 too and the
// binary is static.
func loadBusybox(ctx context.Context, file string) (*busybox, error) {
	bin, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read extracted busybox: %w", err)
	}
	out, err := runTool(ctx, "", nil, file, "--list-full")
	if err != nil {
		return nil, fmt.Errorf("list busybox applets: %w", err)
	}
	var applets []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		a := path.Clean(strings.TrimSpace(sc.Text()))
		if a == "." || strings.HasPrefix(a, "/") || strings.HasPrefix(a, "..") {
			continue
		}
		applets = append(applets, a)
	}
	sort.Strings(applets)
	if len(applets) < 50 {
		return nil, fmt.Errorf("busybox %s lists only %d applets: not the full static build", file, len(applets))
	}
	return &busybox{path: file, binary: bin, applets: applets}, nil
}

// buildKernel unpacks one kernel package, copies its vmlinuz to
// out/vmlinuz-FLAVOUR and writes out/initramfs-FLAVOUR.cpio.
func buildKernel(ctx context.Context, prog *progress, f Flavour, pkg Package, deb string, bb *busybox, work, out string, epoch int64) (Kernel, error) {
	k := Kernel{Flavour: f.Name, Package: pkg}
	prog.step("unpacking %s %s", pkg.Name, pkg.Version)
	dir := filepath.Join(work, "kernel-"+f.Name)
	if err := extractPackage(ctx, deb, dir); err != nil {
		return k, err
	}
	entries, err := os.ReadDir(filepath.Join(dir, "lib", "modules"))
	if err != nil || len(entries) != 1 {
		return k, fmt.Errorf("package %s: expected one directory in /lib/modules (%d found, %v)", pkg.Name, len(entries), err)
	}
	k.Release = entries[0].Name()
	vmlinuz := filepath.Join(dir, "boot", "vmlinuz-"+k.Release)
	image, err := os.ReadFile(vmlinuz)
	if err != nil {
		return k, fmt.Errorf("read the kernel of %s: %w", pkg.Name, err)
	}
	if err := checkBzImage(image); err != nil {
		return k, fmt.Errorf("kernel %s (from %s) is unusable: %w; the download may be damaged: run `apt-get clean` and build again with --force", vmlinuz, pkg.Name, err)
	}
	k.Vmlinuz = "vmlinuz-" + f.Name
	if err := writeFile(filepath.Join(out, k.Vmlinuz), image, 0o644); err != nil {
		return k, err
	}

	prog.step("resolving %s modules from modules.dep", k.Release)
	modRoot := filepath.Join(dir, "lib", "modules", k.Release)
	if _, err := os.Stat(filepath.Join(modRoot, "modules.dep")); os.IsNotExist(err) {
		// Debian's postinst would run depmod on install; we run busybox's.
		if err := runDepmod(bb.path, dir, k.Release); err != nil {
			return k, err
		}
	}
	idx, err := loadModuleIndex(modRoot)
	if err != nil {
		return k, err
	}
	order, err := idx.resolve(bootModules, func(rel string) ([]string, error) {
		return moduleSoftdepsPre(filepath.Join(modRoot, rel), bb.path)
	})
	if err != nil {
		return k, fmt.Errorf("kernel %s: %w", k.Release, err)
	}
	for _, m := range order {
		k.Modules = append(k.Modules, m.Name)
	}

	prog.step("writing the %s initramfs (%d modules)", f.Name, len(order))
	tree, err := initramfsTree(bb, k.Release, modRoot, order)
	if err != nil {
		return k, err
	}
	k.Initramfs = "initramfs-" + f.Name + ".cpio"
	var buf bytes.Buffer
	if err := tree.writeCPIO(&buf, epoch); err != nil {
		return k, err
	}
	if err := writeFile(filepath.Join(out, k.Initramfs), buf.Bytes(), 0o644); err != nil {
		return k, err
	}
	return k, nil
}

// checkBzImage checks the Linux boot protocol header: the "HdrS" signature
// at 0x202 and the 0xaa55 boot flag at 0x1fe.
func checkBzImage(b []byte) error {
	if len(b) < 0x210 {
		return fmt.Errorf("only %d bytes, too short for a bzImage", len(b))
	}
	if string(b[0x202:0x206]) != "HdrS" || b[0x1fe] != 0x55 || b[0x1ff] != 0xaa {
		return fmt.Errorf("no Linux boot header (HdrS at 0x202)")
	}
	return nil
}

// initramfsTree lays out the initramfs: busybox, /init, the modules in
// /lib/modules/RELEASE and their load order in /etc/gureum-modules.
func initramfsTree(bb *busybox, release, modRoot string, order []moduleLoad) (*fileTree, error) {
	t := newFileTree()
	if err := t.addBusybox(bb.binary, bb.applets); err != nil {
		return nil, err
	}
	for _, d := range []string{"dev", "proc", "sys", "tmp", "newroot", "etc"} {
		if err := t.dir(d, 0o755); err != nil {
			return nil, err
		}
	}
	// The kernel opens /dev/console as init's stdin, stdout and stderr
	// before /dev is mounted, so the node must be in the archive.
	if err := t.charDevice("dev/console", 0o600, 5, 1); err != nil {
		return nil, err
	}
	if err := addRecipeFiles(t, "initramfs"); err != nil {
		return nil, err
	}
	for _, m := range order {
		data, err := readModule(filepath.Join(modRoot, m.Path), bb.path)
		if err != nil {
			return nil, err
		}
		if err := t.file(path.Join("lib/modules", release, storedModulePath(m.Path)), 0o644, data); err != nil {
			return nil, err
		}
	}
	if err := t.file("etc/gureum-modules", 0o644, moduleListFile(order)); err != nil {
		return nil, err
	}
	return t, nil
}

// rootTree lays out the root disk: busybox with its applets, the recipe
// files (init scripts, DHCP script, web root) and the empty mount points.
func rootTree(bb *busybox) (*fileTree, error) {
	t := newFileTree()
	if err := t.addBusybox(bb.binary, bb.applets); err != nil {
		return nil, err
	}
	for _, d := range []struct {
		p    string
		perm uint32
	}{
		{"dev", 0o755}, {"proc", 0o555}, {"sys", 0o555}, {"run", 0o755},
		{"tmp", 0o1777}, {"root", 0o700}, {"mnt", 0o755}, {"var", 0o755},
	} {
		if err := t.dir(d.p, d.perm); err != nil {
			return nil, err
		}
	}
	if err := addRecipeFiles(t, "rootfs"); err != nil {
		return nil, err
	}
	// The resolver configuration is written at boot into tmpfs, so DHCP
	// never writes to the disk.
	if err := t.symlink("etc/resolv.conf", "/run/resolv.conf"); err != nil {
		return nil, err
	}
	return t, nil
}
