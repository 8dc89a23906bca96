package service

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"gureum/api"
	"gureum/hypervisor/billing"
	"gureum/hypervisor/ids"
	"gureum/hypervisor/store"
	"gureum/storage"
	"gureum/storage/volume"
)

// volumeError turns a volume store error into the API's error (the store
// already speaks EC2's codes).
func volumeError(err error) error {
	if err == nil {
		return nil
	}
	var ve *volume.Error
	if !errors.As(err, &ve) {
		return err
	}
	switch ve.Code {
	case volume.InternalError:
		return fmt.Errorf("volume store: %w", err)
	}
	return &api.Error{Code: api.Code(ve.Code), Message: ve.Message}
}

func volumeNotFound(id string) error {
	return api.Errorf(api.CodeInvalidVolumeNotFound, "The volume '%s' does not exist.", id)
}

func snapshotNotFound(id string) error {
	return api.Errorf(api.CodeInvalidSnapshotNotFound, "The snapshot '%s' does not exist.", id)
}

// ownedVolume returns a volume of caller's.
func (s *Service) ownedVolume(caller Caller, id string) (volume.Volume, error) {
	if !ids.Valid(ids.Volume, id) {
		return volume.Volume{}, api.Errorf(api.CodeInvalidVolumeIDMalformed, "Invalid id: \"%s\" (expecting \"vol-...\")", id)
	}
	var o volumeOwner
	err := s.store.View(func(tx store.Tx) error { return store.GetJSON(tx, kindVolumeOwner, id, &o) })
	if errors.Is(err, store.ErrNotFound) || err == nil && o.Owner != caller.AccountID {
		return volume.Volume{}, volumeNotFound(id)
	}
	if err != nil {
		return volume.Volume{}, err
	}
	v, err := s.volumes.Volume(id)
	return v, volumeError(err)
}

func (s *Service) ownedSnapshot(caller Caller, id string) (volume.Snapshot, error) {
	if !ids.Valid(ids.Snapshot, id) {
		return volume.Snapshot{}, api.Errorf(api.CodeInvalidSnapshotIDMalformed, "Invalid id: \"%s\" (expecting \"snap-...\")", id)
	}
	var o snapshotOwner
	err := s.store.View(func(tx store.Tx) error { return store.GetJSON(tx, kindSnapshotOwner, id, &o) })
	if errors.Is(err, store.ErrNotFound) || err == nil && o.Owner != caller.AccountID {
		return volume.Snapshot{}, snapshotNotFound(id)
	}
	if err != nil {
		return volume.Snapshot{}, err
	}
	sn, err := s.volumes.Snapshot(id)
	return sn, volumeError(err)
}

// describeVolume is a volume as describe shows it, with what the records
// around it add: whether it goes with its instance, and its zone.
func (s *Service) describeVolume(tx store.Tx, v volume.Volume, owner volumeOwner) api.Volume {
	out := api.Volume{
		VolumeID: v.ID, OwnerID: owner.Owner, State: string(v.State), VolumeType: string(v.Type), SizeGiB: v.SizeGiB,
		IOPS: v.IOPS, ThroughputMiBps: v.Throughput, SnapshotID: v.SnapshotID, CreateTime: v.CreateTime,
		Tags: owner.Tags, DeleteOnTermination: deleteOnTermination(tx, v), AvailabilityZone: s.volumeZone(tx, v, owner),
	}
	if a := v.Attachment; a != nil {
		out.Attachment = &api.VolumeAttachment{InstanceID: a.InstanceID, Device: a.Device, AttachTime: a.AttachTime}
	}
	return out
}

func snapshotToAPI(sn volume.Snapshot, owner string) api.Snapshot {
	return api.Snapshot{SnapshotID: sn.ID, OwnerID: owner, VolumeID: sn.VolumeID, State: string(sn.State),
		Progress: sn.Progress, StartTime: sn.StartTime, Description: sn.Description, VolumeSize: sn.VolumeSizeGiB,
		DataBytes: sn.DataBytes}
}

// Volumes lists caller's volumes.
func (s *Service) Volumes(caller Caller) ([]api.Volume, error) {
	out := []api.Volume{}
	err := s.store.View(func(tx store.Tx) error {
		for _, v := range s.volumes.Volumes() {
			var o volumeOwner
			if err := store.GetJSON(tx, kindVolumeOwner, v.ID, &o); err != nil || o.Owner != caller.AccountID {
				continue
			}
			out = append(out, s.describeVolume(tx, v, o))
		}
		return nil
	})
	return out, err
}

// Zones of volumes. As in EC2, a volume lives in one availability zone
// and attaches only to instances of that zone (in a real cloud the zone
// is the building its disks are in, and a disk is reached over the
// building's own network). Snapshots are regional: a volume made from one
// may be placed in any zone, which is how data moves between zones.

// instanceZone is the zone an instance runs in: its subnet's. An instance
// without an interface (a daemon without networking) counts as placed in
// the first zone, where such a launch would have put it.
func (s *Service) instanceZone(r *instanceRecord) string {
	if r.Network != nil && r.Network.Zone != "" {
		return r.Network.Zone
	}
	return s.zones()[0]
}

// volumeZone is a volume's zone: the one CreateVolume recorded. Root
// volumes are made with their instance and have none recorded; they are
// in their instance's zone for their whole life (they cannot be
// detached). Records from before zones were kept are in the first zone.
func (s *Service) volumeZone(tx store.Tx, v volume.Volume, owner volumeOwner) string {
	if owner.Zone != "" {
		return owner.Zone
	}
	if v.Attachment != nil {
		if r, err := getInstance(tx, v.Attachment.InstanceID); err == nil {
			return s.instanceZone(r)
		}
	}
	return s.zones()[0]
}

// checkSameZone refuses to attach a volume to an instance of another zone.
func (s *Service) checkSameZone(tx store.Tx, v volume.Volume, r *instanceRecord) error {
	return s.checkVolumeInZone(tx, v, s.instanceZone(r), "instance '"+r.ID+"'")
}

// checkVolumeInZone refuses a volume outside zone, where its instance
// (named by what, for the message) is (InvalidVolume.ZoneMismatch), as
// EBS does.
func (s *Service) checkVolumeInZone(tx store.Tx, v volume.Volume, zone, what string) error {
	var o volumeOwner
	if err := store.GetJSON(tx, kindVolumeOwner, v.ID, &o); err != nil {
		return fmt.Errorf("load volume %s: %w", v.ID, err)
	}
	if vz := s.volumeZone(tx, v, o); vz != zone {
		return api.Errorf(api.CodeInvalidVolumeZoneMismatch,
			"The volume '%s' is not in the same availability zone as %s (%s, not %s).", v.ID, what, vz, zone)
	}
	return nil
}

// deleteOnTermination reads the flag from the instance the volume is
// attached to.
func deleteOnTermination(tx store.Tx, v volume.Volume) bool {
	if v.Attachment == nil {
		return false
	}
	r, err := getInstance(tx, v.Attachment.InstanceID)
	if err != nil {
		return false
	}
	i := slices.IndexFunc(r.BlockDevices, func(b api.BlockDevice) bool { return b.VolumeID == v.ID })
	return i >= 0 && r.BlockDevices[i].DeleteOnTermination
}

// Volume describes one of caller's volumes.
func (s *Service) Volume(caller Caller, id string) (api.Volume, error) {
	v, err := s.ownedVolume(caller, id)
	if err != nil {
		return api.Volume{}, err
	}
	var out api.Volume
	err = s.store.View(func(tx store.Tx) error {
		var o volumeOwner
		if err := store.GetJSON(tx, kindVolumeOwner, id, &o); err != nil {
			return err
		}
		out = s.describeVolume(tx, v, o)
		return nil
	})
	return out, err
}

// CreateVolume makes an empty volume, or one from a snapshot of caller's,
// in the requested zone (default: the first). A snapshot of any zone's
// volume will do.
func (s *Service) CreateVolume(caller Caller, req api.CreateVolumeRequest) (api.Volume, error) {
	if req.SizeGiB < 0 || req.IOPS < 0 || req.ThroughputMiBps < 0 {
		return api.Volume{}, api.Errorf(api.CodeInvalidParameterValue, "Sizes, IOPS and throughput must not be negative.")
	}
	zone, err := s.checkZone(req.AvailabilityZone)
	if err != nil {
		return api.Volume{}, err
	}
	if req.SnapshotID != "" {
		if _, err := s.ownedSnapshot(caller, req.SnapshotID); err != nil {
			return api.Volume{}, err
		}
	}
	tags, err := checkTags(req.Tags, "")
	if err != nil {
		return api.Volume{}, err
	}
	v, err := s.volumes.CreateVolume(volume.CreateVolumeRequest{
		Spec:       volume.Spec{Type: volume.Type(req.VolumeType), SizeGiB: req.SizeGiB, IOPS: req.IOPS, Throughput: req.ThroughputMiBps},
		SnapshotID: req.SnapshotID,
	})
	if err != nil {
		return api.Volume{}, volumeError(err)
	}
	o := volumeOwner{Owner: caller.AccountID, Tags: tags, Zone: zone}
	var out api.Volume
	err = s.store.Update(func(tx store.Tx) error {
		if err := store.PutJSON(tx, kindVolumeOwner, v.ID, o); err != nil {
			return err
		}
		out = s.describeVolume(tx, v, o)
		return billing.VolumeSized(tx, v.ID, caller.AccountID, string(v.Type), v.SizeGiB, s.now())
	})
	if err != nil {
		s.volumes.Delete(v.ID)
		return api.Volume{}, err
	}
	return out, nil
}

// DeleteVolume deletes an available volume of caller's.
func (s *Service) DeleteVolume(caller Caller, id string) error {
	if _, err := s.ownedVolume(caller, id); err != nil {
		return err
	}
	return s.deleteVolume(id)
}

// deleteVolume deletes the volume, then its records. A daemon that dies
// in between leaves an owner record without a volume, which describe
// skips and the next start removes.
func (s *Service) deleteVolume(id string) error {
	if err := s.volumes.Delete(id); err != nil && volume.Code(err) != volume.VolumeNotFound {
		return volumeError(err)
	}
	return s.store.Update(func(tx store.Tx) error {
		if err := billing.VolumeDeleted(tx, id, s.now()); err != nil {
			return err
		}
		return tx.Delete(kindVolumeOwner, id)
	})
}

// AttachVolume attaches a volume of caller's to an instance of caller's
// in the volume's zone (InvalidVolume.ZoneMismatch otherwise). To a
// stopped instance it is recorded and joins the VMM at the next start; to
// a running one it goes into a free drive of the VMM at once
// (attachRunning) and the guest sees a new disk.
func (s *Service) AttachVolume(caller Caller, id string, req api.AttachVolumeRequest) (api.Volume, error) {
	v, err := s.ownedVolume(caller, id)
	if err != nil {
		return api.Volume{}, err
	}
	live := false
	err = s.store.Update(func(tx store.Tx) error {
		r, st, err := ownedInstance(tx, caller, req.InstanceID)
		if err != nil {
			return err
		}
		if err := s.checkSameZone(tx, v, r); err != nil {
			return err
		}
		if live, err = runningForVolumes(r, st, "attached to"); err != nil || live {
			return err
		}
		dev := req.Device
		if dev == "" {
			dev = freeDevice(r)
		}
		if err := checkDevice(r, dev); err != nil {
			return err
		}
		if _, err := s.volumes.Attach(id, r.ID, dev); err != nil {
			return volumeError(err)
		}
		r.BlockDevices = append(r.BlockDevices, api.BlockDevice{DeviceName: dev, VolumeID: id})
		return putInstance(tx, r)
	})
	if err == nil && live {
		err = s.attachRunning(caller, id, req)
	}
	if err != nil {
		return api.Volume{}, err
	}
	return s.Volume(caller, id)
}

// DetachVolume detaches a volume from its instance: from a running one
// the VMM first flushes and closes the drive (detachRunning). The root
// volume stays: an EBS-backed instance cannot run without it.
func (s *Service) DetachVolume(caller Caller, id string) (api.Volume, error) {
	v, err := s.ownedVolume(caller, id)
	if err != nil {
		return api.Volume{}, err
	}
	if v.Attachment == nil {
		return api.Volume{}, api.Errorf(api.CodeIncorrectState, "Volume '%s' is not attached.", id)
	}
	inst, dev := v.Attachment.InstanceID, v.Attachment.Device
	err = s.store.Update(func(tx store.Tx) error {
		r, st, err := ownedInstance(tx, caller, inst)
		if err != nil {
			return err
		}
		live, err := runningForVolumes(r, st, "detached from")
		if err != nil {
			return err
		}
		if r.RootDeviceName != "" && len(r.BlockDevices) > 0 && r.BlockDevices[0].VolumeID == id {
			return api.Errorf(api.CodeInvalidParameterValue, "Volume '%s' is the root device of '%s' and cannot be detached.", id, r.ID)
		}
		if live {
			return errLiveDetach
		}
		r.BlockDevices = slices.DeleteFunc(r.BlockDevices, func(b api.BlockDevice) bool { return b.VolumeID == id })
		if _, err := s.volumes.Detach(id); err != nil {
			return volumeError(err)
		}
		return putInstance(tx, r)
	})
	if errors.Is(err, errLiveDetach) {
		err = s.detachRunning(inst, id, dev)
	}
	if err != nil {
		return api.Volume{}, err
	}
	return s.Volume(caller, id)
}

// errLiveDetach ends DetachVolume's checking transaction without a change
// when the detach must go through the running VMM first.
var errLiveDetach = errors.New("detach through the running VMM")

// Snapshots lists caller's snapshots.
func (s *Service) Snapshots(caller Caller) ([]api.Snapshot, error) {
	out := []api.Snapshot{}
	err := s.store.View(func(tx store.Tx) error {
		for _, sn := range s.volumes.Snapshots() {
			var o snapshotOwner
			if err := store.GetJSON(tx, kindSnapshotOwner, sn.ID, &o); err != nil || o.Owner != caller.AccountID {
				continue
			}
			out = append(out, snapshotToAPI(sn, o.Owner))
		}
		return nil
	})
	return out, err
}

// Snapshot describes one of caller's snapshots.
func (s *Service) Snapshot(caller Caller, id string) (api.Snapshot, error) {
	sn, err := s.ownedSnapshot(caller, id)
	if err != nil {
		return api.Snapshot{}, err
	}
	return snapshotToAPI(sn, caller.AccountID), nil
}

// CreateSnapshot freezes a volume of caller's, attached or not.
func (s *Service) CreateSnapshot(caller Caller, req api.CreateSnapshotRequest) (api.Snapshot, error) {
	if req.VolumeID == "" {
		return api.Snapshot{}, api.Errorf(api.CodeMissingParameter, "The request must contain the parameter VolumeId.")
	}
	v, err := s.ownedVolume(caller, req.VolumeID)
	if err != nil {
		return api.Snapshot{}, err
	}
	unlock := s.lockAttached(v) // a VMM starting on this volume must not miss the switch
	sn, err := s.volumes.CreateSnapshot(req.VolumeID, req.Description)
	unlock()
	if err != nil {
		return api.Snapshot{}, volumeError(err)
	}
	err = s.store.Update(func(tx store.Tx) error {
		if err := store.PutJSON(tx, kindSnapshotOwner, sn.ID, snapshotOwner{Owner: caller.AccountID}); err != nil {
			return err
		}
		return billing.SnapshotSized(tx, sn.ID, caller.AccountID, sn.DataBytes, s.now())
	})
	if err != nil {
		return api.Snapshot{}, err
	}
	return snapshotToAPI(sn, caller.AccountID), nil
}

// DeleteSnapshot deletes a snapshot of caller's.
func (s *Service) DeleteSnapshot(caller Caller, id string) error {
	if _, err := s.ownedSnapshot(caller, id); err != nil {
		return err
	}
	if err := s.snapshotInUse(id); err != nil {
		return err
	}
	if err := s.volumes.DeleteSnapshot(id); err != nil && volume.Code(err) != volume.SnapshotNotFound {
		return volumeError(err)
	}
	return s.store.Update(func(tx store.Tx) error {
		if err := billing.SnapshotDeleted(tx, id, s.now()); err != nil {
			return err
		}
		return tx.Delete(kindSnapshotOwner, id)
	})
}

// importRootDisk makes (once per file version) a snapshot holding the
// contents of an image's root disk, so that every root volume is a
// copy-on-write child of it: launching N instances costs N empty qcow2
// files, whatever the image's size. The file is copied into a fresh
// volume (all-zero pieces are skipped, so a sparse image stays sparse),
// the volume is snapshotted and then deleted; the snapshot stays.
func (s *Service) importRootDisk(path string) (string, error) {
	s.importMu.Lock()
	defer s.importMu.Unlock()
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", api.Errorf(api.CodeInvalidParameterValue, "Root disk '%s' cannot be read: %v", path, err)
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d", abs, fi.Size(), fi.ModTime().UnixNano()))
	key := hex.EncodeToString(sum[:16])
	var snap string
	err = s.store.View(func(tx store.Tx) error {
		b, err := tx.Get(kindImageImport, key)
		snap = string(b)
		return err
	})
	if err == nil {
		if _, serr := s.volumes.Snapshot(snap); serr == nil {
			return snap, nil
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return "", err
	}

	src, err := storage.Open(abs, storage.OpenOptions{ReadOnly: true})
	if err != nil {
		return "", api.Errorf(api.CodeInvalidParameterValue, "Root disk '%s' cannot be opened: %v", path, err)
	}
	defer src.Close()
	gib := max((src.Size()+(1<<30)-1)>>30, 1)
	v, err := s.volumes.CreateVolume(volume.CreateVolumeRequest{Spec: volume.Spec{SizeGiB: gib}})
	if err != nil {
		return "", volumeError(err)
	}
	defer s.volumes.Delete(v.ID)
	top, err := s.volumes.Path(v.ID)
	if err != nil {
		return "", volumeError(err)
	}
	if err := copyNonZero(top, src); err != nil {
		return "", fmt.Errorf("import root disk %s: %w", path, err)
	}
	sn, err := s.volumes.CreateSnapshot(v.ID, "root disk "+abs)
	if err != nil {
		return "", volumeError(err)
	}
	err = s.store.Update(func(tx store.Tx) error {
		if err := store.PutJSON(tx, kindSnapshotOwner, sn.ID, snapshotOwner{Owner: systemOwner}); err != nil {
			return err
		}
		return tx.Put(kindImageImport, key, []byte(sn.ID))
	})
	if err != nil {
		return "", err
	}
	s.log.Info("root disk imported", "file", abs, "snapshot", sn.ID)
	return sn.ID, nil
}

// copyNonZero writes every piece of src that is not all zeroes into the
// qcow2 file at dst.
func copyNonZero(dst string, src storage.Disk) error {
	d, err := storage.Open(dst, storage.OpenOptions{Format: "qcow2"})
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	size := src.Size()
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := min(int64(len(buf)), size-off)
		if _, err := src.ReadAt(buf[:n], off); err != nil {
			d.Close()
			return err
		}
		if bytes.Equal(buf[:n], zero[:n]) {
			continue
		}
		if _, err := d.WriteAt(buf[:n], off); err != nil {
			d.Close()
			return err
		}
	}
	return d.Close()
}
