// Package ami is gureum's image registry: AMIs, their launch permissions,
// and the root volumes instances are launched with.
//
// An AMI is a recipe for booting an instance: a kernel and an initramfs
// (files the registry keeps its own copies of, named by the SHA-256 of
// their contents), a kernel command line, and a root snapshot in
// storage/volume. Launching an instance from it creates a volume from that
// snapshot: a new, empty copy-on-write top on the snapshot's frozen file,
// so N instances get N independent root disks at once whatever the
// image's size (docs/storage.md, "Volumes and snapshots").
//
// Who may use an image follows EC2: its owner always; other accounts only
// through launch permissions (shared with named accounts, or public).
// Accounts it is not shared with are told it does not exist; accounts it
// is shared with may launch it but not change or deregister it
// (hypervisor/accounts, access.go).
//
// Image records live in the control plane's store (kind "image"); every
// method is safe for use from any goroutine. Each method that creates a
// snapshot or volume persists its intent first (an image in state
// pending) so that Recover, run at daemon start, can finish or undo what
// a crash interrupted.
package ami

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"gureum/api"
	"gureum/hypervisor/accounts"
	"gureum/hypervisor/store"
	"gureum/storage/volume"
)

// kindImage is the store kind of image records, keyed by ami- id.
const kindImage = "image"

// DefaultRootDevice is where the root volume is attached: the first
// virtio disk.
const DefaultRootDevice = "/dev/vda"

// Image is an image's record.
type Image struct {
	ID         string `json:"id"`
	OwnerID    string `json:"owner_id"`
	OwnerAlias string `json:"owner_alias,omitempty"`
	Name       string `json:"name"`
	// Description is free text, at most 255 characters.
	Description  string    `json:"description,omitempty"`
	Architecture string    `json:"architecture"`
	State        string    `json:"state"` // api.ImageState…
	StateReason  string    `json:"state_reason,omitempty"`
	CreationDate time.Time `json:"creation_date"`

	RootDeviceName string `json:"root_device_name"`
	RootSnapshotID string `json:"root_snapshot_id,omitempty"`
	RootSizeGiB    int64  `json:"root_size_gib,omitempty"`
	// Kernel and Initramfs are SHA-256 digests (hex) of blob files;
	// Initramfs is "" for an image without one.
	Kernel        string `json:"kernel"`
	Initramfs     string `json:"initramfs,omitempty"`
	KernelCmdline string `json:"kernel_cmdline,omitempty"`
	BootMode      string `json:"boot_mode"`

	// Public and SharedWith are the launch permissions: group "all", and
	// account ids (sorted, no duplicates).
	Public     bool     `json:"public,omitempty"`
	SharedWith []string `json:"shared_with,omitempty"`

	// SourceVolumeID is the volume CreateImage snapshots; ImportVolumeID
	// the scratch volume RegisterDefault fills and deletes. Recover reads
	// them after a crash.
	SourceVolumeID string `json:"source_volume_id,omitempty"`
	ImportVolumeID string `json:"import_volume_id,omitempty"`
}

// SharedWithAccount reports whether the launch permissions let accountID
// launch the image (public, or named). The owner is not "shared with".
func (im Image) SharedWithAccount(accountID string) bool {
	return im.Public || slices.Contains(im.SharedWith, accountID)
}

// API is the image as describe shows it.
func (im Image) API() api.Image {
	out := api.Image{
		ImageID: im.ID, OwnerID: im.OwnerID, ImageOwnerAlias: im.OwnerAlias, Name: im.Name,
		Description: im.Description, Architecture: im.Architecture, State: im.State,
		CreationDate: im.CreationDate, Public: im.Public, RootDeviceType: api.RootDeviceEBS,
		RootDeviceName: im.RootDeviceName, RootSnapshotID: im.RootSnapshotID, RootSizeGiB: im.RootSizeGiB,
		KernelSHA256: im.Kernel, InitramfsSHA256: im.Initramfs, KernelCmdline: im.KernelCmdline, BootMode: im.BootMode,
	}
	if im.StateReason != "" {
		out.StateReason = &api.StateReason{Code: "Server.InternalError", Message: im.StateReason}
	}
	return out
}

// Boot is what an instance needs of its image to boot, now and after the
// image is deregistered: the instance service copies it into the
// instance's record at launch, and hands it back to CreateImage.
type Boot struct {
	Architecture   string `json:"architecture"`
	Kernel         string `json:"kernel"`              // blob digest
	Initramfs      string `json:"initramfs,omitempty"` // blob digest or ""
	KernelCmdline  string `json:"kernel_cmdline,omitempty"`
	BootMode       string `json:"boot_mode"`
	RootDeviceName string `json:"root_device_name"`
}

// Boot returns the image's boot recipe.
func (im Image) Boot() Boot {
	return Boot{Architecture: im.Architecture, Kernel: im.Kernel, Initramfs: im.Initramfs,
		KernelCmdline: im.KernelCmdline, BootMode: im.BootMode, RootDeviceName: im.RootDeviceName}
}

// Volumes is what the registry needs of the EBS store. *volume.Store
// implements it.
type Volumes interface {
	Snapshot(id string) (volume.Snapshot, error)
	Snapshots() []volume.Snapshot
	CreateSnapshot(volumeID, description string) (volume.Snapshot, error)
	CreateVolume(req volume.CreateVolumeRequest) (volume.Volume, error)
	Path(volumeID string) (string, error)
	Delete(volumeID string) error
}

// Accounts says whether an account exists, to refuse launch permissions
// for accounts that do not. *accounts.Service implements it.
type Accounts interface {
	Exists(accountID string) (bool, error)
}

// Owners records who owns the volumes and snapshots the registry makes,
// and tells whose a snapshot or volume is. *accounts.Owners implements
// it.
type Owners interface {
	Owner(resourceID string) (string, error)
	SetOwner(resourceID, accountID string) error
	Forget(resourceID string) error
}

// Options are what a Registry works with. Store, Volumes, Owners and
// DataDir are required.
type Options struct {
	Store    store.Store
	Volumes  Volumes
	Owners   Owners
	Accounts Accounts // nil: any well-formed account id may be granted
	// DataDir is the daemon's data directory; kernel and initramfs copies
	// go to DataDir/images/blobs.
	DataDir string
	Now     func() time.Time // nil: time.Now
}

// Registry is the image registry.
type Registry struct {
	st       store.Store
	vols     Volumes
	owners   Owners
	accounts Accounts
	blobs    string
	now      func() time.Time
}

// New returns a Registry. It does not touch the store or the disk; call
// Recover once at daemon start.
func New(opts Options) (*Registry, error) {
	if opts.Store == nil || opts.Volumes == nil || opts.Owners == nil || opts.DataDir == "" {
		return nil, errors.New("new image registry: Store, Volumes, Owners and DataDir are required")
	}
	r := &Registry{st: opts.Store, vols: opts.Volumes, owners: opts.Owners, accounts: opts.Accounts,
		blobs: filepath.Join(opts.DataDir, "images", "blobs"), now: opts.Now}
	if r.now == nil {
		r.now = time.Now
	}
	return r, nil
}

// Recover finishes what a crash left pending. An image whose root
// snapshot was made (its record names it, or, for CreateImage, a
// snapshot of its source volume carries its id) becomes available; any
// other pending image becomes failed, and a scratch import volume is
// deleted. Run it once at daemon start, before serving requests.
func (r *Registry) Recover() error {
	pending, err := r.list(func(im Image) bool { return im.State == api.ImageStatePending })
	if err != nil {
		return fmt.Errorf("recover images: %w", err)
	}
	for _, im := range pending {
		if im.RootSnapshotID == "" && im.SourceVolumeID != "" {
			for _, sn := range r.vols.Snapshots() {
				if sn.VolumeID == im.SourceVolumeID && sn.Description == snapshotDescription(im.ID) {
					im.RootSnapshotID = sn.ID
					if err := r.owners.SetOwner(sn.ID, im.OwnerID); err != nil {
						return fmt.Errorf("recover image %s: %w", im.ID, err)
					}
				}
			}
		}
		if im.ImportVolumeID != "" {
			if err := r.dropImportVolume(im.ImportVolumeID); err != nil {
				return fmt.Errorf("recover image %s: %w", im.ID, err)
			}
			im.ImportVolumeID = ""
		}
		if err := r.finish(im, im.RootSnapshotID, "image creation was interrupted"); err != nil {
			return fmt.Errorf("recover image %s: %w", im.ID, err)
		}
	}
	return nil
}

// finish moves a pending image to available when snapshotID names a
// completed snapshot, or to failed with reason otherwise.
func (r *Registry) finish(im Image, snapshotID, reason string) error {
	im.State, im.StateReason = api.ImageStateFailed, reason
	if snapshotID != "" {
		sn, err := r.vols.Snapshot(snapshotID)
		if err == nil && sn.State == volume.SnapshotCompleted {
			im.State, im.StateReason = api.ImageStateAvailable, ""
			im.RootSnapshotID, im.RootSizeGiB = sn.ID, sn.VolumeSizeGiB
		}
	}
	return r.st.Update(func(tx store.Tx) error { return store.PutJSON(tx, kindImage, im.ID, im) })
}

// dropImportVolume deletes a scratch volume and its owner record; a
// volume already gone is not an error.
func (r *Registry) dropImportVolume(id string) error {
	if err := r.vols.Delete(id); err != nil && volume.Code(err) != volume.VolumeNotFound {
		return fmt.Errorf("delete import volume %s: %w", id, err)
	}
	return r.owners.Forget(id)
}

// snapshotDescription names the image a root snapshot was made for, as
// EC2 does ("Created by CreateImage(i-…) for ami-…"); Recover matches it.
func snapshotDescription(imageID string) string {
	return "Created by CreateImage for " + imageID
}

// list returns every image record keep accepts, by id.
func (r *Registry) list(keep func(Image) bool) ([]Image, error) {
	var out []Image
	err := r.st.View(func(tx store.Tx) error {
		var err error
		out, err = listTx(tx, keep)
		return err
	})
	return out, err
}

func listTx(tx store.Tx, keep func(Image) bool) ([]Image, error) {
	entries, err := tx.List(kindImage)
	if err != nil {
		return nil, err
	}
	var out []Image
	for _, e := range entries {
		var im Image
		if err := store.GetJSON(tx, kindImage, e.Key, &im); err != nil {
			return nil, err
		}
		if keep == nil || keep(im) {
			out = append(out, im)
		}
	}
	return out, nil
}

// visibleImage returns the image if callerID may see it (own, shared or
// public), InvalidAMIID.Malformed for an id of the wrong shape, and
// InvalidAMIID.NotFound otherwise.
func visibleImage(tx store.Tx, callerID, id string) (Image, error) {
	if err := checkImageID(id); err != nil {
		return Image{}, err
	}
	var im Image
	err := store.GetJSON(tx, kindImage, id, &im)
	if errors.Is(err, store.ErrNotFound) {
		return Image{}, imageNotFound(id)
	} else if err != nil {
		return Image{}, err
	}
	if err := accounts.RequireVisible(callerID, im.OwnerID, im.SharedWithAccount(callerID), imageNotFound(id)); err != nil {
		return Image{}, err
	}
	return im, nil
}

// ownedImage is visibleImage for actions only the owner may take: a
// shared image is UnauthorizedOperation.
func ownedImage(tx store.Tx, callerID, id string) (Image, error) {
	im, err := visibleImage(tx, callerID, id)
	if err != nil {
		return Image{}, err
	}
	if err := accounts.RequireOwner(callerID, im.OwnerID, true, imageNotFound(id)); err != nil {
		return Image{}, err
	}
	return im, nil
}

func imageNotFound(id string) error {
	return api.Errorf(api.CodeInvalidAMIIDNotFound, "The image id '[%s]' does not exist", id)
}

// fromVolume turns a storage/volume error into an API error with the
// same EC2 code; a code the REST API does not define (the volume store's
// IncorrectState) becomes InvalidParameterValue, since the caller named
// a resource in the wrong state. Host failures stay internal errors with
// their context.
func fromVolume(err error, context string) error {
	var ve *volume.Error
	if !errors.As(err, &ve) || ve.Code == volume.InternalError {
		return fmt.Errorf("%s: %w", context, err)
	}
	code := api.Code(ve.Code)
	if !slices.Contains(api.Codes(), code) {
		code = api.CodeInvalidParameterValue
	}
	return api.Errorf(code, "%s", ve.Message)
}
