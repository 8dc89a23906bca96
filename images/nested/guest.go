package nested

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"gureum/images"
)

// Guest is one bootable Linux guest for gureum-vmm: a stock Debian kernel,
// its initramfs (which loads the virtio drivers and switches to the root
// disk) and the ext4 root disk. The guests are gureum's default image, as
// `gureum image build` makes it (docs/images.md): the Linux-guest tests
// boot exactly what users boot.
type Guest struct {
	Name     string // the kernel flavour: cloud or generic
	Kernel   string
	Initrd   string
	RootDisk string // a raw image, or one packed by PackDisk; read it with CopyDisk
}

// The guests inside L1 (GUREUM_LINUX_GUESTS=DIR), as the Linux-guest tests
// read them: DIR/FLAVOUR/GuestKernelFile and DIR/FLAVOUR/GuestInitrdFile
// per kernel, and one root disk for all of them, DIR/GuestDiskFile, packed
// (PackDisk): the image is 256 MiB of which about 2.5 MiB are not zeros,
// and an initramfs cannot hold a sparse file.
const (
	GuestKernelFile = "vmlinuz"
	GuestInitrdFile = "initramfs.cpio"
	GuestDiskFile   = "root.img.packed"
)

// ImageCacheDir is where the nested host and the Linux-guest tests keep
// the default image: $GUREUM_CACHE/images when GUREUM_CACHE is set, else
// the cache `gureum image build` uses by default, so a build made by
// either is reused by the other.
func ImageCacheDir() (string, error) {
	if d := os.Getenv("GUREUM_CACHE"); d != "" {
		return filepath.Join(d, "images"), nil
	}
	return images.DefaultCacheDir()
}

// DefaultImageGuests returns one Guest per flavour ("cloud", "generic")
// of the default image in cacheDir, building it first when the cache does
// not hold a build of the current packages and recipe. It runs the same
// code as `gureum image build` (images.Build), with its progress going to
// progress (nil: none). The files belong to the cache: copy the root disk
// before booting it (CopyDisk).
func DefaultImageGuests(ctx context.Context, cacheDir string, flavours []string, progress io.Writer) ([]Guest, error) {
	im, err := images.Build(ctx, images.Options{CacheDir: cacheDir, Flavours: flavours, Progress: progress})
	if err != nil {
		return nil, fmt.Errorf("build the default image: %w", err)
	}
	var gs []Guest
	for _, fl := range flavours {
		k, ok := im.Kernel(fl)
		if !ok {
			return nil, fmt.Errorf("default image in %s has no %s kernel", im.Dir, fl)
		}
		gs = append(gs, Guest{Name: fl, Kernel: k.Vmlinuz, Initrd: k.Initramfs, RootDisk: im.RootDisk})
	}
	return gs, nil
}

// ReadGuests lists the guests in a folder laid out as L1 holds them (see
// GuestKernelFile).
func ReadGuests(dir string) ([]Guest, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read the guests: %w", err)
	}
	disk := filepath.Join(dir, GuestDiskFile)
	if _, err := os.Stat(disk); err != nil {
		return nil, fmt.Errorf("guests in %s: %w", dir, err)
	}
	var gs []Guest
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		d := filepath.Join(dir, e.Name())
		gs = append(gs, Guest{Name: e.Name(),
			Kernel:   filepath.Join(d, GuestKernelFile),
			Initrd:   filepath.Join(d, GuestInitrdFile),
			RootDisk: disk})
	}
	if len(gs) == 0 {
		return nil, fmt.Errorf("%s holds no guests", dir)
	}
	return gs, nil
}

// addGuests puts the guests into L1's file list under l1GuestsDir, packing
// their shared root disk into scratch first. It returns the packed size.
func addGuests(gs []Guest, files map[string]string, scratch string) (int64, error) {
	packed := filepath.Join(scratch, GuestDiskFile)
	for i, g := range gs {
		files[filepath.Join(l1GuestsDir, g.Name, GuestKernelFile)] = g.Kernel
		files[filepath.Join(l1GuestsDir, g.Name, GuestInitrdFile)] = g.Initrd
		if i > 0 && g.RootDisk != gs[0].RootDisk {
			return 0, fmt.Errorf("guests %s and %s have different root disks; L1 holds one", gs[0].Name, g.Name)
		}
	}
	if len(gs) == 0 {
		return 0, fmt.Errorf("no guests to put into L1")
	}
	if err := PackDisk(gs[0].RootDisk, packed); err != nil {
		return 0, err
	}
	files[filepath.Join(l1GuestsDir, GuestDiskFile)] = packed
	st, err := os.Stat(packed)
	if err != nil {
		return 0, fmt.Errorf("packed root disk: %w", err)
	}
	return st.Size(), nil
}
