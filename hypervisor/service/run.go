package service

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"gureum/api"
	"gureum/hypervisor/billing"
	"gureum/hypervisor/credits"
	"gureum/hypervisor/ids"
	"gureum/hypervisor/instancetype"
	"gureum/hypervisor/lifecycle"
	"gureum/hypervisor/store"
	"gureum/storage/volume"
)

// MaxCount is the most instances one RunInstances call launches.
const MaxCount = 100

// Limits on free-form fields, so a request cannot bloat the store.
const (
	maxTags      = 50
	maxTagKey    = 128
	maxTagValue  = 256
	maxUserData  = 16 << 10
	rootDevice   = "/dev/vda"
	maxRootGiB   = 16384
	firstDataDev = 'b'
)

// launchPlan is a validated RunInstances request.
type launchPlan struct {
	req      api.RunInstancesRequest
	typ      instancetype.Type
	image    ResolvedImage
	rootSnap string // snapshot the root volumes are made from, or ""
	rootGiB  int64
	tags     []api.Tag
}

// validateRun checks everything that can be checked without changing
// anything, so that a bad request changes nothing.
func (s *Service) validateRun(ctx context.Context, caller Caller, req api.RunInstancesRequest) (*launchPlan, error) {
	p := &launchPlan{req: req}
	if req.Count == 0 {
		p.req.Count = 1
	}
	if p.req.Count < 1 || p.req.Count > MaxCount {
		return nil, api.Errorf(api.CodeInvalidParameterValue, "Count must be between 1 and %d, not %d.", MaxCount, req.Count)
	}
	if req.InstanceType == "" {
		return nil, api.Errorf(api.CodeMissingParameter, "The request must contain the parameter InstanceType.")
	}
	t, err := instancetype.Lookup(req.InstanceType)
	if err != nil {
		return nil, err
	}
	if ok, why := s.devices.CanRun(t); !ok {
		return nil, api.Errorf(api.CodeUnsupported, "The instance type '%s' is not supported on this host: %s.", t.Name, why)
	}
	p.typ = t
	switch {
	case req.ImageID != "" && req.Image != nil:
		return nil, api.Errorf(api.CodeInvalidParameterValue, "Give either image_id or image, not both.")
	case req.ImageID != "":
		if !ids.Valid(ids.Image, req.ImageID) {
			return nil, api.Errorf(api.CodeInvalidAMIIDMalformed, "Invalid id: \"%s\" (expecting \"ami-...\")", req.ImageID)
		}
		if s.cfg.Images == nil {
			return nil, api.Errorf(api.CodeInvalidAMIIDNotFound, "The image id '[%s]' does not exist", req.ImageID)
		}
		if p.image, err = s.cfg.Images.Resolve(ctx, caller, req.ImageID); err != nil {
			return nil, err
		}
	case req.Image != nil:
		if req.Image.Kernel == "" {
			return nil, api.Errorf(api.CodeMissingParameter, "The image must name a kernel.")
		}
		for _, f := range []string{req.Image.Kernel, req.Image.Initrd, req.Image.RootDisk} {
			if f != "" && !filepath.IsAbs(f) {
				return nil, api.Errorf(api.CodeInvalidParameterValue, "Image file '%s' must be an absolute path on the host.", f)
			}
		}
		p.image = ResolvedImage{Kernel: req.Image.Kernel, Initrd: req.Image.Initrd, Cmdline: req.Image.Cmdline, RootDisk: req.Image.RootDisk}
	default:
		return nil, api.Errorf(api.CodeMissingParameter, "The request must contain the parameter ImageId (or an image description).")
	}
	switch req.RootDeviceType {
	case "":
		p.req.RootDeviceType = api.RootDeviceEBS
	case api.RootDeviceEBS, api.RootDeviceInstanceStore:
	default:
		return nil, api.Errorf(api.CodeInvalidParameterValue, "Invalid root device type '%s'.", req.RootDeviceType)
	}
	switch req.ShutdownBehavior {
	case "", api.ShutdownStop, api.ShutdownTerminate:
	default:
		return nil, api.Errorf(api.CodeInvalidParameterValue, "Invalid value '%s' for instanceInitiatedShutdownBehavior", req.ShutdownBehavior)
	}
	if t.Burstable != nil {
		if p.req.CreditMode == "" {
			p.req.CreditMode = t.Burstable.DefaultMode
		}
		if p.req.CreditMode != api.CreditsStandard && p.req.CreditMode != api.CreditsUnlimited {
			return nil, api.Errorf(api.CodeInvalidParameterValue, "Invalid value '%s' for CpuCredits.", req.CreditMode)
		}
	} else if req.CreditMode != "" {
		return nil, api.Errorf(api.CodeInvalidParameterValue, "CPU credits apply only to burstable (T) instance types, not %s.", t.Name)
	}
	if len(req.UserData) > maxUserData {
		return nil, api.Errorf(api.CodeInvalidParameterValue, "User data is limited to %d bytes.", maxUserData)
	}
	if p.tags, err = checkTags(req.Tags, req.Name); err != nil {
		return nil, err
	}
	if req.RootVolumeGiB < 0 || req.RootVolumeGiB > maxRootGiB {
		return nil, api.Errorf(api.CodeInvalidParameterValue, "Root volume size %d GiB is outside 1-%d.", req.RootVolumeGiB, maxRootGiB)
	}
	if len(req.Volumes) > 0 && p.req.Count != 1 {
		return nil, api.Errorf(api.CodeInvalidParameterValue, "Existing volumes can be attached only when launching one instance.")
	}
	if len(req.Volumes) > 20 {
		return nil, api.Errorf(api.CodeInvalidParameterValue, "At most 20 volumes can be attached.")
	}
	if err := s.checkVolumesAttachable(caller, req.Volumes); err != nil {
		return nil, err
	}
	if p.req.RootDeviceType == api.RootDeviceEBS {
		if err := s.planRootVolume(p); err != nil {
			return nil, err
		}
	} else if req.RootVolumeGiB != 0 || req.RootVolumeType != "" {
		return nil, api.Errorf(api.CodeInvalidParameterValue, "An instance-store backed instance has no root volume to size.")
	}
	return p, nil
}

func checkTags(tags []api.Tag, name string) ([]api.Tag, error) {
	out := slices.Clone(tags)
	if name != "" {
		out = slices.DeleteFunc(out, func(t api.Tag) bool { return t.Key == "Name" })
		out = append([]api.Tag{{Key: "Name", Value: name}}, out...)
	}
	if len(out) > maxTags {
		return nil, api.Errorf(api.CodeInvalidParameterValue, "At most %d tags are allowed.", maxTags)
	}
	seen := map[string]bool{}
	for _, t := range out {
		if t.Key == "" || len(t.Key) > maxTagKey || len(t.Value) > maxTagValue || strings.HasPrefix(t.Key, "aws:") {
			return nil, api.Errorf(api.CodeInvalidParameterValue, "Invalid tag key '%s' (1-%d characters, not aws:, values up to %d).", t.Key, maxTagKey, maxTagValue)
		}
		if seen[t.Key] {
			return nil, api.Errorf(api.CodeInvalidParameterValue, "Duplicate tag key '%s'.", t.Key)
		}
		seen[t.Key] = true
	}
	return out, nil
}

// planRootVolume picks the snapshot and size of the root volumes. The
// size check against the volume type is left to the volume store's own
// validation, which runs before anything is created for the first
// instance.
func (s *Service) planRootVolume(p *launchPlan) error {
	p.rootGiB = p.req.RootVolumeGiB
	if p.req.RootVolumeType != "" && !slices.Contains(volume.Types, volume.Type(p.req.RootVolumeType)) {
		return api.Errorf(api.CodeInvalidParameterValue, "Invalid volume type '%s' (gp3, io2, st1, sc1).", p.req.RootVolumeType)
	}
	if p.image.RootSnapshotID != "" {
		p.rootSnap = p.image.RootSnapshotID
	}
	if p.rootGiB == 0 && p.image.RootDisk == "" && p.rootSnap == "" {
		p.rootGiB = 1
	}
	return nil
}

// RunInstances launches req.Count instances: it validates, takes host
// capacity, makes each instance's root volume (copy-on-write from the
// image's root disk, so N volumes cost the same as one), records every
// instance in pending with its launch operation in one transaction, and
// returns; the reconciler then starts their VMMs.
func (s *Service) RunInstances(ctx context.Context, caller Caller, req api.RunInstancesRequest) (api.Reservation, error) {
	p, err := s.validateRun(ctx, caller, req)
	if err != nil {
		return api.Reservation{}, err
	}
	np, err := s.planNetwork(caller, p.req, p.req.Count)
	if err != nil {
		return api.Reservation{}, err
	}
	if err := s.checkVolumesZone(p.req.Volumes, np); err != nil {
		return api.Reservation{}, err
	}
	if p.req.RootDeviceType == api.RootDeviceEBS && p.image.RootDisk != "" && p.rootSnap == "" {
		if p.rootSnap, err = s.importRootDisk(p.image.RootDisk); err != nil {
			return api.Reservation{}, err
		}
	}
	n := p.req.Count
	instIDs := make([]string, n)
	for i := range instIDs {
		instIDs[i] = ids.New(ids.Instance)
	}
	// Capacity first: a launch that cannot fit changes nothing.
	var reserved []string
	releaseNet := func() {}
	undo := func() {
		releaseNet()
		for _, id := range reserved {
			s.cap.Release(id)
		}
	}
	for _, id := range instIDs {
		if err := s.cap.Reserve(id, p.typ); err != nil {
			undo()
			return api.Reservation{}, err
		}
		reserved = append(reserved, id)
	}
	// Addresses next (network/ipam): a full subnet or a taken address
	// refuses the launch.
	nets, release, err := s.allocateInterfaces(np, instIDs)
	if err != nil {
		undo()
		return api.Reservation{}, err
	}
	releaseNet = release
	// Root volumes. They are made before the transaction that records
	// their owner; a daemon that dies in between leaves volumes without
	// an owner, which the next start deletes.
	roots := make([]volume.Volume, 0, n)
	dropRoots := func() {
		for _, v := range roots {
			s.volumes.Detach(v.ID)
			s.volumes.Delete(v.ID)
		}
	}
	if p.req.RootDeviceType == api.RootDeviceEBS {
		for _, id := range instIDs {
			v, err := s.volumes.CreateVolume(volume.CreateVolumeRequest{
				Spec:       volume.Spec{Type: volume.Type(p.req.RootVolumeType), SizeGiB: p.rootGiB},
				SnapshotID: p.rootSnap,
			})
			if err == nil {
				roots = append(roots, v)
				_, err = s.volumes.Attach(v.ID, id, rootDevice)
			}
			if err != nil {
				dropRoots()
				undo()
				return api.Reservation{}, volumeError(err)
			}
		}
	}
	if err := s.attachExisting(instIDs[0], p.req.Volumes); err != nil {
		dropRoots()
		undo()
		return api.Reservation{}, err
	}
	now := s.now()
	res := api.Reservation{ReservationID: "r-" + ids.New(ids.Instance)[2:], OwnerID: caller.AccountID}
	err = s.store.Update(func(tx store.Tx) error {
		for i, id := range instIDs {
			r := &instanceRecord{
				ID: id, Owner: caller.AccountID, ReservationID: res.ReservationID, ImageID: p.image.ImageID,
				Type: p.typ.Name, Kernel: p.image.Kernel, Initrd: p.image.Initrd, Cmdline: p.image.Cmdline,
				UserData: p.req.UserData, Tags: p.tags, Boot: p.image.Boot, Network: nets[id],
			}
			if p.req.RootDeviceType == api.RootDeviceEBS {
				v := roots[i]
				r.RootDeviceName = rootDevice
				r.BlockDevices = append(r.BlockDevices, api.BlockDevice{DeviceName: rootDevice, VolumeID: v.ID, DeleteOnTermination: true})
				if err := store.PutJSON(tx, kindVolumeOwner, v.ID, volumeOwner{Owner: caller.AccountID}); err != nil {
					return err
				}
				if err := billing.VolumeSized(tx, v.ID, caller.AccountID, string(v.Type), v.SizeGiB, now); err != nil {
					return err
				}
			} else {
				r.ReadOnlyRootDisk = p.image.RootDisk
			}
			for j, vid := range p.req.Volumes {
				dev := fmt.Sprintf("/dev/vd%c", firstDataDev+j)
				r.BlockDevices = append(r.BlockDevices, api.BlockDevice{DeviceName: dev, VolumeID: vid})
			}
			if p.typ.Burstable != nil {
				params, err := credits.ParamsFor(p.typ)
				if err != nil {
					return err
				}
				if r.Credits, err = credits.NewAccount(params, p.req.CreditMode, now); err != nil {
					return err
				}
			}
			if err := putInstance(tx, r); err != nil {
				return err
			}
			if _, err := lifecycle.Launch(tx, lifecycle.Status{ID: id, RootDeviceType: p.req.RootDeviceType,
				ShutdownBehavior: p.req.ShutdownBehavior}, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for _, vid := range p.req.Volumes {
			s.volumes.Detach(vid)
		}
		dropRoots()
		undo()
		return api.Reservation{}, err
	}
	for _, id := range instIDs {
		s.log.Info("instance launched", "instance", id, "type", p.typ.Name, "owner", caller.AccountID)
		s.kick(id)
	}
	for _, id := range instIDs {
		in, err := s.Instance(caller, id)
		if err != nil {
			return res, err
		}
		res.Instances = append(res.Instances, in)
	}
	return res, nil
}

// checkVolumesAttachable checks that every volume exists, is caller's and
// is available.
func (s *Service) checkVolumesAttachable(caller Caller, vols []string) error {
	seen := map[string]bool{}
	for _, vid := range vols {
		if seen[vid] {
			return api.Errorf(api.CodeInvalidParameterValue, "Volume %s is listed twice.", vid)
		}
		seen[vid] = true
		v, err := s.ownedVolume(caller, vid)
		if err != nil {
			return err
		}
		if v.State != volume.StateAvailable {
			return api.Errorf(api.CodeVolumeInUse, "Volume %s is %s.", vid, v.State)
		}
	}
	return nil
}

// checkVolumesZone refuses existing volumes of another zone than the
// subnet the instance is launched into. Without networking every instance
// is in the first zone.
func (s *Service) checkVolumesZone(vols []string, np *networkPlan) error {
	zone := s.zones()[0]
	if np != nil && np.subnet != nil && np.subnet.Zone != "" {
		zone = np.subnet.Zone
	}
	return s.store.View(func(tx store.Tx) error {
		for _, vid := range vols {
			v, err := s.volumes.Volume(vid)
			if err != nil {
				return volumeError(err)
			}
			if err := s.checkVolumeInZone(tx, v, zone, "the instance being launched"); err != nil {
				return err
			}
		}
		return nil
	})
}

// attachExisting records the attachment of extra volumes in the volume
// store. A daemon that dies before the instance is recorded leaves them
// attached to an instance that does not exist; the next start detaches
// them.
func (s *Service) attachExisting(id string, vols []string) error {
	for j, vid := range vols {
		dev := fmt.Sprintf("/dev/vd%c", firstDataDev+j)
		if _, err := s.volumes.Attach(vid, id, dev); err != nil {
			return volumeError(err)
		}
	}
	return nil
}
