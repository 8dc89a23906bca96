package ami

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"gureum/api"
	"gureum/hypervisor/store"
	"gureum/storage"
	"gureum/storage/volume"

	// The scratch volume's top file is qcow2; Open finds the format
	// through this registration.
	_ "gureum/storage/qcow2"
)

// Names of the images the daemon registers itself on first start.
const (
	// DefaultLinuxName is the Debian guest that images.Build makes.
	DefaultLinuxName = "gureum-debian-12"
	// DefaultTestGuestName is the small PVH test guest, registered
	// instead on hosts whose KVM cannot boot Linux (PVM).
	DefaultTestGuestName = "gureum-testguest"
	// DefaultOwnerAlias marks the daemon's own images in describe
	// (EC2 shows "amazon" for Amazon's).
	DefaultOwnerAlias = "gureum"
)

// DefaultImage is a guest image built on the host, to be registered as a
// public AMI of the admin account.
type DefaultImage struct {
	Name        string // DefaultLinuxName or DefaultTestGuestName
	Description string
	OwnerID     string // the admin account
	Kernel      string // host path of the kernel
	Initramfs   string // host path, or "" for none
	// RootDisk is the host path of a raw root disk image, copied into
	// the AMI's snapshot. "" gives an empty root of RootSizeGiB.
	RootDisk      string
	RootSizeGiB   int64 // 0: the root disk's size rounded up to GiB, at least 1
	KernelCmdline string
}

// RegisterDefault registers a default image if its owner has no available
// image of that name yet, and returns the image. It is idempotent: on
// every later start it returns the registered image without reading the
// files again (a rebuilt default image is not picked up; deregister the
// old one to register the new). A registration a crash interrupted is
// cleaned up by Recover and made again here.
//
// The root disk is imported by creating a volume, writing the disk's
// non-zero blocks into its top file, snapshotting it and deleting the
// volume, which leaves the snapshot as the image's frozen root.
func (r *Registry) RegisterDefault(d DefaultImage) (Image, error) {
	existing, err := r.list(func(im Image) bool { return im.OwnerID == d.OwnerID && im.Name == d.Name })
	if err != nil {
		return Image{}, fmt.Errorf("register default image %s: %w", d.Name, err)
	}
	for _, im := range existing {
		if im.State == api.ImageStateAvailable {
			return im, nil
		}
		// A failed earlier attempt: drop its record and start again.
		if err := r.st.Update(func(tx store.Tx) error { return tx.Delete(kindImage, im.ID) }); err != nil {
			return Image{}, fmt.Errorf("register default image %s: %w", d.Name, err)
		}
	}
	im, err := r.registerDefault(d)
	if err != nil {
		return Image{}, fmt.Errorf("register default image %s: %w", d.Name, err)
	}
	return im, nil
}

func (r *Registry) registerDefault(d DefaultImage) (Image, error) {
	im, err := r.newImage(d.OwnerID, d.Name, d.Description, api.ArchitectureX86_64, DefaultRootDevice, d.KernelCmdline)
	if err != nil {
		return Image{}, err
	}
	im.OwnerAlias, im.Public = DefaultOwnerAlias, true
	if im.BootMode, err = checkBootMode(d.Kernel, ""); err != nil {
		return Image{}, err
	}
	if im.Kernel, err = r.storeBlob(d.Kernel); err != nil {
		return Image{}, err
	}
	if d.Initramfs != "" {
		if im.Initramfs, err = r.storeBlob(d.Initramfs); err != nil {
			return Image{}, err
		}
	}
	sizeGiB := d.RootSizeGiB
	var diskBytes int64
	if d.RootDisk != "" {
		st, err := os.Stat(d.RootDisk)
		if err != nil {
			return Image{}, fmt.Errorf("root disk: %w", err)
		}
		diskBytes = st.Size()
	}
	if sizeGiB == 0 {
		sizeGiB = max(1, (diskBytes+(1<<30)-1)>>30)
	}
	if diskBytes > sizeGiB<<30 {
		return Image{}, fmt.Errorf("root disk %s (%d bytes) is larger than %d GiB", d.RootDisk, diskBytes, sizeGiB)
	}

	// Persist the intent before making anything, so that Recover can
	// find and undo a half-made import.
	im.State = api.ImageStatePending
	if err := r.insert(im); err != nil {
		return Image{}, err
	}
	vol, err := r.vols.CreateVolume(volume.CreateVolumeRequest{Spec: volume.Spec{Type: volume.GP3, SizeGiB: sizeGiB}})
	if err != nil {
		return Image{}, r.fail(im, fromVolume(err, "create import volume"))
	}
	im.ImportVolumeID = vol.ID
	if err := r.st.Update(func(tx store.Tx) error { return store.PutJSON(tx, kindImage, im.ID, im) }); err != nil {
		r.vols.Delete(vol.ID)
		return Image{}, r.fail(im, err)
	}
	if err := r.owners.SetOwner(vol.ID, d.OwnerID); err != nil {
		return Image{}, r.fail(im, err)
	}
	if d.RootDisk != "" {
		top, err := r.vols.Path(vol.ID)
		if err != nil {
			return Image{}, r.fail(im, err)
		}
		if err := copyIntoDisk(d.RootDisk, top); err != nil {
			return Image{}, r.fail(im, err)
		}
	}
	sn, err := r.vols.CreateSnapshot(vol.ID, "Root of "+im.ID+" ("+d.Name+")")
	if err != nil {
		return Image{}, r.fail(im, fromVolume(err, "snapshot import volume"))
	}
	if err := r.owners.SetOwner(sn.ID, d.OwnerID); err != nil {
		return Image{}, r.fail(im, err)
	}
	if err := r.dropImportVolume(vol.ID); err != nil {
		return Image{}, r.fail(im, err)
	}
	im.ImportVolumeID = ""
	if err := r.finish(im, sn.ID, "snapshot "+sn.ID+" did not complete"); err != nil {
		return Image{}, err
	}
	return r.Get(d.OwnerID, im.ID)
}

// fail marks a pending default image failed (deleting its import volume)
// and returns cause.
func (r *Registry) fail(im Image, cause error) error {
	if im.ImportVolumeID != "" {
		if err := r.dropImportVolume(im.ImportVolumeID); err != nil {
			return errors.Join(cause, err)
		}
		im.ImportVolumeID = ""
	}
	if err := r.finish(im, "", cause.Error()); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

// importChunk is how much of the raw disk is read at a time: one default
// qcow2 cluster, so a chunk of zeroes is skipped whole and the volume
// allocates only where the disk has data (an ext4 image is mostly holes).
const importChunk = 64 << 10

// copyIntoDisk writes the non-zero chunks of the raw file src into the
// qcow2 file dst, which is new and reads as zeroes, then flushes it.
func copyIntoDisk(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("import %s: %w", src, err)
	}
	defer in.Close()
	out, err := storage.Open(dst, storage.OpenOptions{Format: "qcow2"})
	if err != nil {
		return fmt.Errorf("import %s: %w", src, err)
	}
	buf := make([]byte, importChunk)
	zero := make([]byte, importChunk)
	for off := int64(0); ; off += importChunk {
		n, err := io.ReadFull(in, buf)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, werr := out.WriteAt(buf[:n], off); werr != nil {
				out.Close()
				return fmt.Errorf("import %s at %d: %w", src, off, werr)
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			out.Close()
			return fmt.Errorf("import %s: %w", src, err)
		}
	}
	if err := out.Close(); err != nil { // Close flushes
		return fmt.Errorf("import %s: %w", src, err)
	}
	return nil
}
