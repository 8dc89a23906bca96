package service

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"gureum/api"
	"gureum/hypervisor/accounts"
	"gureum/hypervisor/billing"
	"gureum/hypervisor/store"
	"gureum/images/ami"
)

// The AMI registry (images/ami) plugged into the control plane.
//
// The registry keeps image records in the same store as the instances and
// makes volumes and snapshots in the same volume store. It asks "who owns
// this volume or snapshot?" through its Owners interface; here that
// interface is answered from this package's own owner records
// (kindVolumeOwner, kindSnapshotOwner), so that one record per resource
// decides ownership for describe, for the registry, for account deletion
// and for the start-up sweep that deletes storage no record owns.

// openImages makes the image registry and finishes what a crash left
// pending in it. It runs in Open before the start-up sweep of orphan
// storage, so that a root snapshot whose image was being created when the
// daemon died is claimed by its image first.
func (s *Service) openImages() error {
	reg, err := ami.New(ami.Options{
		Store: s.store, Volumes: s.volumes, Owners: (*storageOwners)(s), Accounts: s.accounts,
		DataDir: s.cfg.DataDir, Now: s.now,
	})
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if err := reg.Recover(); err != nil {
		return fmt.Errorf("service: %w", err)
	}
	s.images = reg
	if s.cfg.Images == nil {
		s.cfg.Images = registryResolver{s}
	}
	return nil
}

// storageOwners answers the registry's ownership questions from the
// service's owner records. Its methods may be called from any goroutine.
type storageOwners Service

// ownerKind maps a resource id to the store kind of its owner record.
func ownerKind(resourceID string) (string, error) {
	switch {
	case strings.HasPrefix(resourceID, "vol-"):
		return kindVolumeOwner, nil
	case strings.HasPrefix(resourceID, "snap-"):
		return kindSnapshotOwner, nil
	}
	return "", fmt.Errorf("owner of %s: not a volume or snapshot id", resourceID)
}

// Owner returns the account that owns a volume or snapshot.
func (o *storageOwners) Owner(resourceID string) (string, error) {
	kind, err := ownerKind(resourceID)
	if err != nil {
		return "", err
	}
	var rec struct {
		Owner string `json:"owner"`
	}
	err = o.store.View(func(tx store.Tx) error { return store.GetJSON(tx, kind, resourceID, &rec) })
	if errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("%s: %w", resourceID, accounts.ErrNoOwner)
	}
	return rec.Owner, err
}

// SetOwner records the owner of a volume or snapshot the registry made.
// A snapshot starts being metered for billing at once; a volume is
// metered by RunInstances, which records the root volumes it launches.
func (o *storageOwners) SetOwner(resourceID, accountID string) error {
	kind, err := ownerKind(resourceID)
	if err != nil {
		return err
	}
	s := (*Service)(o)
	return s.store.Update(func(tx store.Tx) error {
		if kind == kindVolumeOwner {
			return store.PutJSON(tx, kind, resourceID, volumeOwner{Owner: accountID})
		}
		if err := store.PutJSON(tx, kind, resourceID, snapshotOwner{Owner: accountID}); err != nil {
			return err
		}
		sn, err := s.volumes.Snapshot(resourceID)
		if err != nil {
			return volumeError(err)
		}
		return billing.SnapshotSized(tx, sn.ID, accountID, sn.DataBytes, s.now())
	})
}

// Forget drops the owner record of a volume the registry deleted (a
// scratch import volume, or a root volume of a launch that failed).
func (o *storageOwners) Forget(resourceID string) error {
	kind, err := ownerKind(resourceID)
	if err != nil {
		return err
	}
	return o.store.Update(func(tx store.Tx) error { return tx.Delete(kind, resourceID) })
}

// registryResolver is the ImageResolver of the service's own registry.
type registryResolver struct{ s *Service }

// Resolve checks that caller may launch the AMI now (own, shared or
// public, and available) and returns its boot files: the registry's
// content-addressed copies, which stay after the AMI is deregistered, so
// an instance keeps booting the kernel it was launched with.
func (r registryResolver) Resolve(_ context.Context, caller Caller, imageID string) (ResolvedImage, error) {
	im, err := r.s.images.Launchable(caller.AccountID, imageID)
	if err != nil {
		return ResolvedImage{}, err
	}
	boot := im.Boot()
	kernel, initrd := r.s.images.BootFiles(boot)
	return ResolvedImage{
		ImageID: im.ID, Kernel: kernel, Initrd: initrd, Cmdline: boot.KernelCmdline,
		RootSnapshotID: im.RootSnapshotID, Boot: &boot,
	}, nil
}

// DescribeImages lists the AMIs caller may see (own, shared with it,
// public) that match f.
func (s *Service) DescribeImages(caller Caller, f ami.Filter) ([]api.Image, error) {
	ims, err := s.images.Describe(caller.AccountID, f)
	if err != nil {
		return nil, err
	}
	out := make([]api.Image, 0, len(ims))
	for _, im := range ims {
		out = append(out, im.API())
	}
	return out, nil
}

// Image describes one AMI caller may see.
func (s *Service) Image(caller Caller, id string) (api.Image, error) {
	im, err := s.images.Get(caller.AccountID, id)
	if err != nil {
		return api.Image{}, err
	}
	return im.API(), nil
}

// RegisterImage registers an AMI from boot files on the daemon's host and
// a completed snapshot of caller's.
func (s *Service) RegisterImage(caller Caller, req api.RegisterImageRequest) (api.ImageIDResponse, error) {
	im, err := s.images.Register(caller.AccountID, req)
	if err != nil {
		return api.ImageIDResponse{}, err
	}
	s.log.Info("image registered", "image", im.ID, "name", im.Name, "owner", caller.AccountID)
	return api.ImageIDResponse{ImageID: im.ID}, nil
}

// DeregisterImage removes an AMI of caller's. Its root snapshot stays,
// and instances launched from it keep running and booting.
func (s *Service) DeregisterImage(caller Caller, id string) error {
	if err := s.images.Deregister(caller.AccountID, id); err != nil {
		return err
	}
	s.log.Info("image deregistered", "image", id, "owner", caller.AccountID)
	return nil
}

// ImageLaunchPermissions returns the launch permissions of an AMI of
// caller's.
func (s *Service) ImageLaunchPermissions(caller Caller, id string) (api.LaunchPermissions, error) {
	return s.images.LaunchPermissions(caller.AccountID, id)
}

// ModifyImageLaunchPermission shares an AMI of caller's with accounts or
// everyone, or stops sharing it.
func (s *Service) ModifyImageLaunchPermission(caller Caller, id string, req api.ModifyLaunchPermissionRequest) error {
	return s.images.ModifyLaunchPermission(caller.AccountID, id, req)
}

// CreateImage makes an AMI from a snapshot of one of caller's instances'
// root volume, with the boot recipe the instance was launched with. The
// snapshot is taken while the guest runs (a flush and a switch of the
// top file), so the image holds what the guest's disk held at that
// moment, as after a power cut; stop the instance first for a clean file
// system.
func (s *Service) CreateImage(caller Caller, instanceID string, req api.CreateImageRequest) (api.ImageIDResponse, error) {
	var r *instanceRecord
	if err := s.store.View(func(tx store.Tx) error {
		var err error
		r, _, err = ownedInstance(tx, caller, instanceID)
		return err
	}); err != nil {
		return api.ImageIDResponse{}, err
	}
	if r.RootDeviceName == "" || len(r.BlockDevices) == 0 {
		return api.ImageIDResponse{}, api.Errorf(api.CodeUnsupported,
			"The instance '%s' is instance-store backed; images are made from EBS root volumes.", instanceID)
	}
	if r.Boot == nil {
		return api.ImageIDResponse{}, api.Errorf(api.CodeInvalidParameterValue,
			"The instance '%s' was launched from boot files, not an AMI; register an image from a snapshot of its root volume instead.", instanceID)
	}
	im, err := s.images.CreateImage(caller.AccountID, ami.CreateImageRequest{
		VolumeID: r.BlockDevices[0].VolumeID, Boot: *r.Boot, Name: req.Name, Description: req.Description,
	})
	if err != nil {
		return api.ImageIDResponse{}, err
	}
	s.log.Info("image created", "image", im.ID, "instance", instanceID, "snapshot", im.RootSnapshotID)
	return api.ImageIDResponse{ImageID: im.ID}, nil
}

// RegisterDefaultImage registers d as a public AMI of the admin account
// unless the admin already has an available image of that name: the
// daemon calls it at every start, and only the first one reads the
// files. Deregistering the default image makes the next start register
// it again from the current files, which is how a rebuilt image is picked
// up.
func (s *Service) RegisterDefaultImage(d ami.DefaultImage) (api.Image, error) {
	d.OwnerID = AdminAccount
	im, err := s.images.RegisterDefault(d)
	if err != nil {
		return api.Image{}, err
	}
	return im.API(), nil
}

// snapshotInUse refuses to delete a snapshot that is the root of a
// registered AMI: instances are launched from it.
func (s *Service) snapshotInUse(snapshotID string) error {
	imageID, used, err := s.images.SnapshotInUse(snapshotID)
	if err != nil {
		return err
	}
	if used {
		return api.Errorf(api.CodeInvalidSnapshotInUse,
			"The snapshot '%s' is currently in use by %s; deregister the image first.", snapshotID, imageID)
	}
	return nil
}
