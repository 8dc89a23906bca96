// Package images builds gureum's default Linux guest from Debian packages:
// for each kernel flavour a kernel and an initramfs, and one ext4 root disk
// that boots to a small busybox system with DHCP, a web server and a ready
// line on the console. docs/images.md describes the recipe and what the
// guest does at boot.
//
// The build fetches packages with `apt-get download` and unpacks them with
// `dpkg-deb -x`: nothing is installed on the host. It needs apt, dpkg-deb
// and, unless the host has them, downloads e2fsprogs' mke2fs and debugfs.
package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// A Flavour is one Debian kernel the image can boot.
type Flavour struct {
	Name        string // "cloud", "generic": used in file names
	Metapackage string // the Debian package that follows the newest kernel
}

// Flavours are the kernels built by default: Debian's cloud kernel (fewer
// drivers, meant for VMs) and its generic amd64 kernel.
var Flavours = []Flavour{
	{Name: "cloud", Metapackage: "linux-image-cloud-amd64"},
	{Name: "generic", Metapackage: "linux-image-amd64"},
}

// bootModules are the drivers the initramfs loads (with what they need):
// virtio over PCI, the disk and the NIC, and ext4 for the root file system.
// Whatever the kernel has built in is skipped.
var bootModules = []string{"virtio_pci", "virtio_blk", "virtio_net", "ext4"}

// Options configure a build. The zero value builds every flavour into the
// default cache.
type Options struct {
	CacheDir    string    // default: DefaultCacheDir()
	Flavours    []string  // flavour names; empty means all of Flavours
	Progress    io.Writer // progress output (a bar on a terminal); nil: none
	Force       bool      // rebuild even if the cache has this build
	RootSizeMiB int       // root disk size; 0 means 256
	// DownloadE2fsprogs uses e2fsprogs from Debian even when the host has
	// mke2fs and debugfs (as a host without them would).
	DownloadE2fsprogs bool
}

// Kernel is one flavour's output.
type Kernel struct {
	Flavour   string   `json:"flavour"`
	Package   Package  `json:"package"`
	Release   string   `json:"release"`   // uname -r, e.g. 6.1.0-56-cloud-amd64
	Vmlinuz   string   `json:"vmlinuz"`   // path of the bzImage
	Initramfs string   `json:"initramfs"` // path of the uncompressed newc cpio
	Modules   []string `json:"modules"`   // the initramfs's modules, in load order
}

// Image is a finished build in the cache.
type Image struct {
	Dir         string    `json:"-"`   // CACHE/KEY
	Key         string    `json:"key"` // hash of every input
	Cached      bool      `json:"-"`   // true when no build was needed
	Kernels     []Kernel  `json:"kernels"`
	RootDisk    string    `json:"root_disk"` // path of the ext4 image
	Packages    []Package `json:"packages"`  // every package used, exact versions
	MkfsVersion string    `json:"mkfs_version"`
}

// Kernel returns the output of the named flavour.
func (im *Image) Kernel(flavour string) (Kernel, bool) {
	for _, k := range im.Kernels {
		if k.Flavour == flavour {
			return k, true
		}
	}
	return Kernel{}, false
}

// plan is what a build will use, known before anything is downloaded.
type plan struct {
	flavours []Flavour
	kernels  []Package // one per flavour
	busybox  Package
	e2fs     []Package // empty when the host's tools are used
	host     e2fsTools // valid when e2fs is empty
	sizeMiB  int
	epoch    int64
}

// key hashes everything that decides the output bytes.
func (p *plan) key() (string, error) {
	recipe, err := recipeHash()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "recipe %s\nsize %d\nepoch %d\nmodules %s\n", recipe, p.sizeMiB, p.epoch, strings.Join(bootModules, ","))
	for i, f := range p.flavours {
		fmt.Fprintf(h, "flavour %s %s %s\n", f.Name, p.kernels[i].Name, p.kernels[i].Version)
	}
	fmt.Fprintf(h, "busybox %s\n", p.busybox.Version)
	for _, e := range p.e2fs {
		fmt.Fprintf(h, "e2fs %s %s\n", e.Name, e.Version)
	}
	if len(p.e2fs) == 0 {
		fmt.Fprintf(h, "host mke2fs %s\n", p.host.version)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// Build makes the image, or returns the cached one built from the same
// inputs. It runs external programs (apt-cache, apt-get, dpkg-deb, mke2fs,
// debugfs and the downloaded busybox) and may take a minute. Errors name
// the package or file concerned: *MissingPackageError, *FetchError,
// *CacheFullError, ErrNoPackageLists.
func Build(ctx context.Context, opts Options) (*Image, error) {
	cache := opts.CacheDir
	if cache == "" {
		var err error
		if cache, err = DefaultCacheDir(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, cacheErr(cache, err)
	}
	p, err := makePlan(ctx, opts)
	if err != nil {
		return nil, err
	}
	key, err := p.key()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cache, key)
	prog := newProgress(opts.Progress, 3+3*len(p.flavours)+1)
	if !opts.Force {
		if im, err := readManifest(dir); err == nil {
			im.Cached = true
			prog.finish("up to date: %s", dir)
			return im, pointLatest(cache, key)
		}
	}

	work, err := os.MkdirTemp(cache, ".build-")
	if err != nil {
		return nil, cacheErr(cache, err)
	}
	defer os.RemoveAll(work)
	out := filepath.Join(work, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		return nil, cacheErr(out, err)
	}

	all := append(append([]Package{p.busybox}, p.kernels...), p.e2fs...)
	prog.step("downloading %d packages", len(all))
	debDir := filepath.Join(work, "debs")
	if err := os.Mkdir(debDir, 0o755); err != nil {
		return nil, cacheErr(debDir, err)
	}
	debs, err := downloadPackages(ctx, debDir, all)
	if err != nil {
		return nil, err
	}

	prog.step("unpacking %s", p.busybox.Name)
	tools := p.host
	bbDir := filepath.Join(work, "busybox")
	if err := extractPackage(ctx, debs[p.busybox.Name], bbDir); err != nil {
		return nil, err
	}
	bb, err := loadBusybox(ctx, filepath.Join(bbDir, "bin", "busybox"))
	if err != nil {
		return nil, err
	}
	if len(p.e2fs) > 0 {
		e2Dir := filepath.Join(work, "e2fsprogs")
		for _, e := range p.e2fs {
			if err := extractPackage(ctx, debs[e.Name], e2Dir); err != nil {
				return nil, err
			}
		}
		if tools, err = extractedE2fsTools(ctx, e2Dir); err != nil {
			return nil, err
		}
	}

	im := &Image{Key: key, Packages: all, MkfsVersion: tools.version}
	for i, f := range p.flavours {
		k, err := buildKernel(ctx, prog, f, p.kernels[i], debs[p.kernels[i].Name], bb, work, out, p.epoch)
		if err != nil {
			return nil, err
		}
		im.Kernels = append(im.Kernels, k)
	}

	prog.step("making the root disk (ext4, %d MiB)", p.sizeMiB)
	root, err := rootTree(bb)
	if err != nil {
		return nil, err
	}
	rootWork := filepath.Join(work, "rootdisk")
	if err := os.Mkdir(rootWork, 0o755); err != nil {
		return nil, cacheErr(rootWork, err)
	}
	if err := makeRootDisk(ctx, tools, root, filepath.Join(out, "root.img"), rootWork, p.sizeMiB, p.epoch); err != nil {
		return nil, err
	}
	im.RootDisk = "root.img"

	prog.step("saving %s", dir)
	if err := installBuild(cache, out, dir, im); err != nil {
		return nil, err
	}
	if err := pointLatest(cache, key); err != nil {
		return nil, err
	}
	final, err := readManifest(dir)
	if err != nil {
		return nil, err
	}
	prog.finish("built %s", dir)
	return final, nil
}

// makePlan resolves the exact package versions and the tools to use.
func makePlan(ctx context.Context, opts Options) (*plan, error) {
	p := &plan{sizeMiB: opts.RootSizeMiB, epoch: defaultEpoch}
	if p.sizeMiB == 0 {
		p.sizeMiB = 256
	}
	if p.sizeMiB < 16 {
		return nil, fmt.Errorf("root disk size %d MiB is too small (at least 16)", p.sizeMiB)
	}
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		e, err := strconv.ParseInt(s, 10, 64)
		if err != nil || e < 0 || e > 1<<32-1 {
			return nil, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a time in seconds since 1970", s)
		}
		p.epoch = e
	}
	if len(opts.Flavours) == 0 {
		p.flavours = Flavours
	}
	for _, name := range opts.Flavours {
		found := false
		for _, f := range Flavours {
			if f.Name == name {
				p.flavours, found = append(p.flavours, f), true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown kernel flavour %q (known: cloud, generic)", name)
		}
	}
	if err := checkPackageLists(); err != nil {
		return nil, err
	}
	host, useHost := hostE2fsTools(ctx)
	useHost = useHost && !opts.DownloadE2fsprogs
	names := []string{"busybox-static"}
	for _, f := range p.flavours {
		names = append(names, f.Metapackage)
	}
	if !useHost {
		names = append(names, e2fsPackages...)
	}
	found, fields, err := candidates(ctx, names...)
	if err != nil {
		return nil, err
	}
	p.busybox = found["busybox-static"]
	var kernelNames []string
	for _, f := range p.flavours {
		k, err := kernelDependency(f.Metapackage, fields[f.Metapackage])
		if err != nil {
			return nil, err
		}
		kernelNames = append(kernelNames, k)
	}
	kernels, _, err := candidates(ctx, kernelNames...)
	if err != nil {
		return nil, err
	}
	for _, k := range kernelNames {
		p.kernels = append(p.kernels, kernels[k])
	}
	if useHost {
		p.host = host
		return p, nil
	}
	for _, name := range e2fsPackages {
		p.e2fs = append(p.e2fs, found[name])
	}
	return p, nil
}

// installBuild writes the manifest into out and renames out to dir. A
// previous directory of the same key (a forced rebuild) is replaced.
func installBuild(cache, out, dir string, im *Image) error {
	b, err := json.MarshalIndent(im, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	if err := writeFile(filepath.Join(out, "manifest.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if _, err := os.Stat(dir); err == nil {
		old := dir + ".old"
		os.RemoveAll(old)
		if err := os.Rename(dir, old); err != nil {
			return fmt.Errorf("move the previous build aside: %w", err)
		}
		defer os.RemoveAll(old)
	}
	if err := os.Rename(out, dir); err != nil {
		return fmt.Errorf("install build into %s: %w", dir, err)
	}
	return nil
}

// readManifest loads a finished build; paths in it are relative to dir.
func readManifest(dir string) (*Image, error) {
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, fmt.Errorf("read build manifest: %w", err)
	}
	var im Image
	if err := json.Unmarshal(b, &im); err != nil {
		return nil, fmt.Errorf("parse %s: %w", filepath.Join(dir, "manifest.json"), err)
	}
	im.Dir = dir
	abs := func(p string) (string, error) {
		if p == "" || filepath.IsAbs(p) || strings.Contains(p, "..") {
			return "", fmt.Errorf("manifest in %s: bad file name %q", dir, p)
		}
		full := filepath.Join(dir, p)
		if _, err := os.Stat(full); err != nil {
			return "", fmt.Errorf("build in %s is incomplete: %w", dir, err)
		}
		return full, nil
	}
	if im.RootDisk, err = abs(im.RootDisk); err != nil {
		return nil, err
	}
	for i := range im.Kernels {
		if im.Kernels[i].Vmlinuz, err = abs(im.Kernels[i].Vmlinuz); err != nil {
			return nil, err
		}
		if im.Kernels[i].Initramfs, err = abs(im.Kernels[i].Initramfs); err != nil {
			return nil, err
		}
	}
	if len(im.Kernels) == 0 {
		return nil, errors.New("build manifest lists no kernel")
	}
	return &im, nil
}
