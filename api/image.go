package api

import (
	"net/http"
	"time"
)

// Error codes of the image (AMI) API, EC2's.
const (
	// CodeInvalidAMINameDuplicate: the owner already has an image of that name.
	CodeInvalidAMINameDuplicate Code = "InvalidAMIName.Duplicate"
	// CodeInvalidAMINameMalformed: the name breaks EC2's rule (3–128
	// characters from letters, digits and ( ) [ ] space . / - ' @ _).
	CodeInvalidAMINameMalformed Code = "InvalidAMIName.Malformed"
	// CodeInvalidAMIIDUnavailable: the image exists but is not available
	// (still pending, or failed), so nothing can be launched from it.
	CodeInvalidAMIIDUnavailable Code = "InvalidAMIID.Unavailable"
	// CodeInvalidUserIDMalformed: a launch permission names something
	// that is not a 12-digit account id.
	CodeInvalidUserIDMalformed Code = "InvalidUserID.Malformed"
	// CodeInvalidAMIAttributeItemValue: a launch permission names an
	// account that does not exist, or a group other than "all".
	CodeInvalidAMIAttributeItemValue Code = "InvalidAMIAttributeItemValue"
)

func init() {
	codeStatus[CodeInvalidAMINameDuplicate] = http.StatusBadRequest
	codeStatus[CodeInvalidAMINameMalformed] = http.StatusBadRequest
	codeStatus[CodeInvalidAMIIDUnavailable] = http.StatusBadRequest
	codeStatus[CodeInvalidUserIDMalformed] = http.StatusBadRequest
	codeStatus[CodeInvalidAMIAttributeItemValue] = http.StatusBadRequest
}

// Image states, EC2's names for the ones gureum uses.
const (
	ImageStatePending   = "pending"
	ImageStateAvailable = "available"
	ImageStateFailed    = "failed"
)

// Image boot modes: how gureum-vmm loads the kernel (docs/boot.md).
const (
	// BootModeBzImage is the Linux 64-bit boot protocol (a bzImage).
	BootModeBzImage = "bzimage"
	// BootModePVH is the PVH entry of an ELF kernel (the test guest).
	BootModePVH = "pvh"
)

// ArchitectureX86_64 is the only architecture gureum runs.
const ArchitectureX86_64 = "x86_64"

// LaunchPermissionGroupAll is the one launch permission group: everyone,
// which makes an image public.
const LaunchPermissionGroupAll = "all"

// Image is an AMI as describe shows it. The kernel and initramfs are
// named by the SHA-256 of their contents: the daemon keeps its own copy of
// each, so rebuilding the files an image was registered from does not
// change the image.
type Image struct {
	ImageID string `json:"image_id"`
	OwnerID string `json:"owner_id"`
	// ImageOwnerAlias is "gureum" for the default images the daemon
	// registers itself, empty otherwise (EC2 says "amazon").
	ImageOwnerAlias string       `json:"image_owner_alias,omitempty"`
	Name            string       `json:"name"`
	Description     string       `json:"description,omitempty"`
	Architecture    string       `json:"architecture"`
	State           string       `json:"state"`
	StateReason     *StateReason `json:"state_reason,omitempty"`
	CreationDate    time.Time    `json:"creation_date"`
	Public          bool         `json:"public"`
	// RootDeviceType is always ebs: the root is a snapshot.
	RootDeviceType string `json:"root_device_type"`
	RootDeviceName string `json:"root_device_name"`
	RootSnapshotID string `json:"root_snapshot_id"`
	// RootSizeGiB is the size of the root snapshot's volume: the smallest
	// root volume an instance of this image can have.
	RootSizeGiB     int64  `json:"root_size_gib"`
	KernelSHA256    string `json:"kernel_sha256"`
	InitramfsSHA256 string `json:"initramfs_sha256,omitempty"`
	KernelCmdline   string `json:"kernel_cmdline,omitempty"`
	BootMode        string `json:"boot_mode"`
}

// RegisterImageRequest is the body of POST /images: an image from files
// on the daemon's host and an existing snapshot of the caller's.
type RegisterImageRequest struct {
	Name         string `json:"name"`
	Description  string `json:"description,omitempty"`
	Architecture string `json:"architecture,omitempty"` // default x86_64
	// KernelPath and InitramfsPath are files on the daemon's host; the
	// daemon copies them. InitramfsPath may be empty.
	KernelPath     string `json:"kernel_path"`
	InitramfsPath  string `json:"initramfs_path,omitempty"`
	RootSnapshotID string `json:"root_snapshot_id"`
	RootDeviceName string `json:"root_device_name,omitempty"` // default /dev/vda
	KernelCmdline  string `json:"kernel_cmdline,omitempty"`
	// BootMode is bzimage or pvh; empty means "what the kernel file is".
	BootMode string `json:"boot_mode,omitempty"`
}

// CreateImageRequest is the body of POST /instances/{id}/image: an image
// from a snapshot of the instance's root volume.
type CreateImageRequest struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// ImagesResponse answers GET /v1/images: the AMIs the caller may launch
// that match the query's filters.
type ImagesResponse struct {
	Images []Image `json:"images"`
}

// ImageIDResponse answers register and create-image.
type ImageIDResponse struct {
	ImageID string `json:"image_id"`
}

// LaunchPermission grants launching an image to one account (UserID) or
// to everyone (Group "all"). Exactly one of the two is set.
type LaunchPermission struct {
	UserID string `json:"user_id,omitempty"`
	Group  string `json:"group,omitempty"`
}

// ModifyLaunchPermissionRequest is the body of
// POST /images/{id}/launch-permission: grants to add and to remove.
type ModifyLaunchPermissionRequest struct {
	Add    []LaunchPermission `json:"add,omitempty"`
	Remove []LaunchPermission `json:"remove,omitempty"`
}

// LaunchPermissions answers GET /images/{id}/launch-permission (owner only).
type LaunchPermissions struct {
	ImageID           string             `json:"image_id"`
	LaunchPermissions []LaunchPermission `json:"launch_permissions"`
}
