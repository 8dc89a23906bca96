package ami

import (
	"errors"
	"fmt"

	"gureum/api"
	"gureum/storage/volume"
)

// MaxLaunchCount bounds one launch, like EC2's default per-request limit.
const MaxLaunchCount = 100

// CreateRootVolumes makes count root volumes for instances of img, owned
// by ownerID: each a new copy-on-write top on the image's root snapshot,
// so the cost per volume is one small file whatever the image's size, and
// each diverges from the others as its guest writes. spec gives the type
// and performance; its SizeGiB 0 means the image's size, and a larger one
// grows the volume (the guest sees a bigger disk and may grow its file
// system).
//
// All or nothing: if one volume cannot be made, those already made are
// deleted and the error returned. The caller has checked Launchable.
func (r *Registry) CreateRootVolumes(img Image, ownerID string, count int, spec volume.Spec) ([]volume.Volume, error) {
	if count < 1 || count > MaxLaunchCount {
		return nil, api.Errorf(api.CodeInvalidParameterValue, "The instance count %d is outside 1 to %d.", count, MaxLaunchCount)
	}
	if img.RootSnapshotID == "" || img.State != api.ImageStateAvailable {
		return nil, api.Errorf(api.CodeInvalidAMIIDUnavailable, "The image '%s' is %s, not available.", img.ID, img.State)
	}
	if spec.SizeGiB == 0 {
		spec.SizeGiB = img.RootSizeGiB
	}
	made := make([]volume.Volume, 0, count)
	undo := func(cause error) error {
		errs := []error{cause}
		for _, v := range made {
			if err := r.vols.Delete(v.ID); err != nil {
				errs = append(errs, fmt.Errorf("undo root volume %s: %w", v.ID, err))
			}
			if err := r.owners.Forget(v.ID); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	for range count {
		v, err := r.vols.CreateVolume(volume.CreateVolumeRequest{Spec: spec, SnapshotID: img.RootSnapshotID})
		if err != nil {
			return nil, undo(fromVolume(err, "create root volume of "+img.ID))
		}
		made = append(made, v)
		if err := r.owners.SetOwner(v.ID, ownerID); err != nil {
			return nil, undo(fmt.Errorf("create root volume of %s: %w", img.ID, err))
		}
	}
	return made, nil
}
