package ami

import (
	"fmt"
	"strings"

	"gureum/api"
	"gureum/hypervisor/ids"
	"gureum/hypervisor/store"
	"gureum/storage/volume"
)

// Register makes an image from kernel and initramfs files on the host and
// a completed snapshot the caller owns. The files are copied into the
// registry first, so the image does not change when they do. The image
// is available at once, since its snapshot already is.
func (r *Registry) Register(callerID string, req api.RegisterImageRequest) (Image, error) {
	im, err := r.newImage(callerID, req.Name, req.Description, req.Architecture, req.RootDeviceName, req.KernelCmdline)
	if err != nil {
		return Image{}, err
	}
	if req.KernelPath == "" {
		return Image{}, api.Errorf(api.CodeMissingParameter, "The request must contain the parameter kernel_path.")
	}
	if req.RootSnapshotID == "" {
		return Image{}, api.Errorf(api.CodeMissingParameter, "The request must contain the parameter root_snapshot_id.")
	}
	if !ids.Valid(ids.Snapshot, req.RootSnapshotID) {
		return Image{}, api.Errorf(api.CodeInvalidSnapshotIDMalformed, "Invalid id: \"%s\"", req.RootSnapshotID)
	}
	if owner, err := r.owners.Owner(req.RootSnapshotID); err != nil || owner != callerID {
		return Image{}, api.Errorf(api.CodeInvalidSnapshotNotFound, "The snapshot '%s' does not exist.", req.RootSnapshotID)
	}
	sn, err := r.vols.Snapshot(req.RootSnapshotID)
	if err != nil {
		return Image{}, fromVolume(err, "register image")
	}
	if sn.State != volume.SnapshotCompleted {
		return Image{}, api.Errorf(api.CodeInvalidParameterValue, "The snapshot '%s' is %s, not completed.", sn.ID, sn.State)
	}
	if im.BootMode, err = checkBootMode(req.KernelPath, req.BootMode); err != nil {
		return Image{}, err
	}
	if im.Kernel, err = r.storeBlob(req.KernelPath); err != nil {
		return Image{}, err
	}
	if req.InitramfsPath != "" {
		if im.Initramfs, err = r.storeBlob(req.InitramfsPath); err != nil {
			return Image{}, err
		}
	}
	im.State, im.RootSnapshotID, im.RootSizeGiB = api.ImageStateAvailable, sn.ID, sn.VolumeSizeGiB
	if err := r.insert(im); err != nil {
		return Image{}, err
	}
	return im, nil
}

// CreateImageRequest is what the instance service passes to CreateImage:
// the instance's root volume (which the caller owns: the service checked
// the instance) and the boot recipe it launched with.
type CreateImageRequest struct {
	VolumeID    string
	Boot        Boot
	Name        string
	Description string
}

// CreateImage makes an image from a snapshot of a volume, attached and
// running or not: the image is recorded pending, the volume snapshotted
// (a flush and a switch of the top file, no copy), and the image made
// available. The snapshot belongs to the caller and stays when the image
// is deregistered, as in EC2.
func (r *Registry) CreateImage(callerID string, req CreateImageRequest) (Image, error) {
	b := req.Boot
	im, err := r.newImage(callerID, req.Name, req.Description, b.Architecture, b.RootDeviceName, b.KernelCmdline)
	if err != nil {
		return Image{}, err
	}
	if !ids.Valid(ids.Volume, req.VolumeID) {
		return Image{}, api.Errorf(api.CodeInvalidVolumeIDMalformed, "Invalid id: \"%s\"", req.VolumeID)
	}
	if owner, err := r.owners.Owner(req.VolumeID); err != nil || owner != callerID {
		return Image{}, api.Errorf(api.CodeInvalidVolumeNotFound, "The volume '%s' does not exist.", req.VolumeID)
	}
	for _, digest := range []string{b.Kernel, b.Initramfs} {
		if digest != "" && !r.hasBlob(digest) {
			return Image{}, fmt.Errorf("create image: boot file %s is not in the registry", digest)
		}
	}
	if b.Kernel == "" || (b.BootMode != api.BootModeBzImage && b.BootMode != api.BootModePVH) {
		return Image{}, fmt.Errorf("create image: the instance's boot recipe is incomplete: %+v", b)
	}
	im.Kernel, im.Initramfs, im.BootMode = b.Kernel, b.Initramfs, b.BootMode
	im.State, im.SourceVolumeID = api.ImageStatePending, req.VolumeID
	if err := r.insert(im); err != nil {
		return Image{}, err
	}
	sn, err := r.vols.CreateSnapshot(req.VolumeID, snapshotDescription(im.ID))
	if err != nil {
		if ferr := r.finish(im, "", "snapshot of "+req.VolumeID+" failed"); ferr != nil {
			return Image{}, fmt.Errorf("create image: %w (and marking it failed: %v)", err, ferr)
		}
		return Image{}, fromVolume(err, "create image")
	}
	if err := r.owners.SetOwner(sn.ID, callerID); err != nil {
		return Image{}, fmt.Errorf("create image: %w", err)
	}
	if err := r.finish(im, sn.ID, "snapshot "+sn.ID+" did not complete"); err != nil {
		return Image{}, fmt.Errorf("create image: %w", err)
	}
	return r.Get(callerID, im.ID)
}

// newImage validates the fields every image has and returns the record
// to be, not yet stored, with a fresh id.
func (r *Registry) newImage(ownerID, name, description, arch, rootDevice, cmdline string) (Image, error) {
	if err := checkName(name); err != nil {
		return Image{}, err
	}
	if len(description) > 255 {
		return Image{}, api.Errorf(api.CodeInvalidParameterValue, "The description is longer than 255 characters.")
	}
	if arch == "" {
		arch = api.ArchitectureX86_64
	}
	if arch != api.ArchitectureX86_64 {
		return Image{}, api.Errorf(api.CodeInvalidParameterValue, "Invalid value '%s' for architecture: gureum runs x86_64 only.", arch)
	}
	if rootDevice == "" {
		rootDevice = DefaultRootDevice
	}
	if len(rootDevice) != len("/dev/vda") || !strings.HasPrefix(rootDevice, "/dev/vd") || rootDevice[7] < 'a' || rootDevice[7] > 'z' {
		return Image{}, api.Errorf(api.CodeInvalidParameterValue, "Invalid value '%s' for root device name: use /dev/vda to /dev/vdz.", rootDevice)
	}
	if len(cmdline) > 2048 || strings.ContainsRune(cmdline, 0) {
		return Image{}, api.Errorf(api.CodeInvalidParameterValue, "The kernel command line is longer than 2048 bytes or contains NUL.")
	}
	return Image{
		ID: ids.New(ids.Image), OwnerID: ownerID, Name: name, Description: description,
		Architecture: arch, CreationDate: r.now().UTC(), RootDeviceName: rootDevice, KernelCmdline: cmdline,
	}, nil
}

// insert stores a new image unless its owner has one of the same name;
// check and write are one transaction, so two registrations cannot both
// take a name.
func (r *Registry) insert(im Image) error {
	return r.st.Update(func(tx store.Tx) error {
		dup, err := listTx(tx, func(o Image) bool { return o.OwnerID == im.OwnerID && o.Name == im.Name })
		if err != nil {
			return err
		}
		if len(dup) > 0 {
			return api.Errorf(api.CodeInvalidAMINameDuplicate, "AMI name %s is already in use by AMI %s", im.Name, dup[0].ID)
		}
		return store.PutJSON(tx, kindImage, im.ID, im)
	})
}

// checkName applies EC2's rule for AMI names.
func checkName(name string) error {
	ok := len(name) >= 3 && len(name) <= 128
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.ContainsRune("()[] ./-'@_", c):
		default:
			ok = false
		}
	}
	if !ok {
		return api.Errorf(api.CodeInvalidAMINameMalformed,
			"AMI names must be between 3 and 128 characters long, and may contain letters, numbers, '(', ')', '.', '-', '/', '_', '[', ']', ' ', '@' and '''.")
	}
	return nil
}

func checkImageID(id string) error {
	if !ids.Valid(ids.Image, id) {
		return api.Errorf(api.CodeInvalidAMIIDMalformed, "Invalid id: \"%s\" (expecting \"ami-...\")", id)
	}
	return nil
}
