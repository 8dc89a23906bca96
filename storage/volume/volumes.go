package volume

import (
	"os"
	"time"
)

// VolumeState is where a volume is in its life.
type VolumeState string

// Volume states, as EC2 names them. A volume is creating only while its
// top file is made, which is instant here; deleting only while its file
// is removed.
const (
	StateCreating  VolumeState = "creating"
	StateAvailable VolumeState = "available"
	StateInUse     VolumeState = "in-use"
	StateDeleting  VolumeState = "deleting"
)

// Action is something a caller can ask of a volume.
type Action string

// The volume actions.
const (
	ActAttach   Action = "attach"
	ActDetach   Action = "detach"
	ActModify   Action = "modify"
	ActSnapshot Action = "snapshot"
	ActDelete   Action = "delete"
)

// transitions is the volume lifecycle: for each state, the actions legal
// in it and the state they lead to (the same state for actions that do
// not move it). Anything missing is refused with IncorrectState, except
// that acting on an attached volume in a way that needs it detached is
// VolumeInUse, as EC2 answers.
var transitions = map[VolumeState]map[Action]VolumeState{
	StateAvailable: {
		ActAttach:   StateInUse,
		ActModify:   StateAvailable,
		ActSnapshot: StateAvailable,
		ActDelete:   StateDeleting,
	},
	StateInUse: {
		ActDetach:   StateAvailable,
		ActModify:   StateInUse,
		ActSnapshot: StateInUse,
	},
}

// nextState applies the transition table.
func nextState(v *Volume, a Action) (VolumeState, error) {
	if to, ok := transitions[v.State][a]; ok {
		return to, nil
	}
	if v.State == StateInUse && (a == ActAttach || a == ActDelete) {
		return "", errorf(VolumeInUse, "volume %s is attached to %s", v.ID, v.Attachment.InstanceID)
	}
	return "", errorf(IncorrectState, "cannot %s volume %s while it is %s", a, v.ID, v.State)
}

// Attachment says where an in-use volume is attached.
type Attachment struct {
	InstanceID string    `json:"instanceId"`
	Device     string    `json:"device"`
	AttachTime time.Time `json:"attachTime"`
}

// Volume is a volume's record.
type Volume struct {
	ID    string      `json:"volumeId"`
	State VolumeState `json:"state"`
	Spec
	// SnapshotID is the snapshot the volume was created from, if any.
	SnapshotID string      `json:"snapshotId,omitempty"`
	CreateTime time.Time   `json:"createTime"`
	Attachment *Attachment `json:"attachment,omitempty"`

	// Top is the layer file that takes writes; Parent is its backing file
	// (a snapshot's file), or "" for a volume with no snapshot below it.
	Top    string `json:"top"`
	Parent string `json:"parent,omitempty"`
}

func (v *Volume) clone() Volume {
	c := *v
	if v.Attachment != nil {
		a := *v.Attachment
		c.Attachment = &a
	}
	return c
}

// SizeBytes is the volume's virtual size.
func (v Volume) SizeBytes() int64 { return v.SizeGiB << 30 }

// CreateVolumeRequest is what CreateVolume takes. Zero fields get the
// type's defaults; SnapshotID, if set, makes the volume a copy-on-write
// child of that snapshot, and SizeGiB may then be 0 for "the snapshot's
// size".
type CreateVolumeRequest struct {
	Spec
	SnapshotID string
}

// CreateVolume makes a volume, empty or from a snapshot, and returns it
// available. From a snapshot it is ready at once: its new top file reads
// through to the snapshot's chain until the guest writes.
func (s *Store) CreateVolume(req CreateVolumeRequest) (Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var parent string
	if req.SnapshotID != "" {
		sn, err := s.snapshotLocked(req.SnapshotID)
		if err != nil {
			return Volume{}, err
		}
		if sn.State != SnapshotCompleted {
			return Volume{}, errorf(IncorrectState, "snapshot %s is %s", sn.ID, sn.State)
		}
		if req.SizeGiB == 0 {
			req.SizeGiB = sn.VolumeSizeGiB
		}
		if req.SizeGiB < sn.VolumeSizeGiB {
			return Volume{}, errorf(InvalidParameterValue, "size %d GiB is smaller than snapshot %s (%d GiB)", req.SizeGiB, sn.ID, sn.VolumeSizeGiB)
		}
		parent = sn.File
	}
	spec, err := req.Spec.Normalize()
	if err != nil {
		return Volume{}, err
	}
	v := &Volume{
		ID: newID("vol"), State: StateCreating, Spec: spec, SnapshotID: req.SnapshotID,
		CreateTime: s.now().UTC(), Top: newLayerName(), Parent: parent,
	}
	// The file first, then the record: a crash in between leaves a layer
	// no record names, which Open removes.
	if err := s.images.Create(s.layerPath(v.Top), v.SizeBytes(), s.layerPath(parent)); err != nil {
		return Volume{}, internal(err, "create volume file")
	}
	v.State = StateAvailable
	if err := s.saveVolume(v); err != nil {
		s.removeLayer(v.Top)
		return Volume{}, err
	}
	s.volumes[v.ID] = v
	return v.clone(), nil
}

func (s *Store) volumeLocked(id string) (*Volume, error) {
	if v := s.volumes[id]; v != nil && validID("vol", id) {
		return v, nil
	}
	return nil, errorf(VolumeNotFound, "volume %s does not exist", id)
}

// Volume returns one volume's record.
func (s *Store) Volume(id string) (Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.volumeLocked(id)
	if err != nil {
		return Volume{}, err
	}
	return v.clone(), nil
}

// Volumes lists every volume, oldest first.
func (s *Store) Volumes() []Volume {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sortedVolumes()
}

// Path is the volume's top file: what the VMM opens (read-write, with
// its backing chain read-only) when the volume is attached.
func (s *Store) Path(id string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.volumeLocked(id)
	if err != nil {
		return "", err
	}
	return s.layerPath(v.Top), nil
}

// Attach records that the volume is attached to instanceID as device. The
// caller then has the VMM open Path (or starts the instance with it).
func (s *Store) Attach(id, instanceID, device string) (Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if instanceID == "" || device == "" {
		return Volume{}, errorf(InvalidParameterValue, "attach needs an instance and a device name")
	}
	v, err := s.volumeLocked(id)
	if err != nil {
		return Volume{}, err
	}
	for _, o := range s.volumes {
		if o.Attachment != nil && o.Attachment.InstanceID == instanceID && o.Attachment.Device == device {
			return Volume{}, errorf(InvalidParameterValue, "device %s of %s is taken by %s", device, instanceID, o.ID)
		}
	}
	to, err := nextState(v, ActAttach)
	if err != nil {
		return Volume{}, err
	}
	c := v.clone()
	c.State = to
	c.Attachment = &Attachment{InstanceID: instanceID, Device: device, AttachTime: s.now().UTC()}
	if err := s.saveVolume(&c); err != nil {
		return Volume{}, err
	}
	*v = c
	return v.clone(), nil
}

// Detach records that the volume left its instance. The caller has the
// VMM close the drive first, so no process writes the top any more. Any
// snapshot deletion that waited for this volume is carried out.
func (s *Store) Detach(id string) (Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.volumeLocked(id)
	if err != nil {
		return Volume{}, err
	}
	to, err := nextState(v, ActDetach)
	if err != nil {
		return Volume{}, err
	}
	c := v.clone()
	c.State, c.Attachment = to, nil
	if err := s.saveVolume(&c); err != nil {
		return Volume{}, err
	}
	*v = c
	if err := s.collect(); err != nil {
		return v.clone(), err
	}
	return v.clone(), nil
}

// liveDrive returns the running drive of an attached volume, or nil.
func (s *Store) liveDrive(v *Volume) (LiveDrive, error) {
	if v.Attachment == nil || s.drives == nil {
		return nil, nil
	}
	d, err := s.drives.Drive(v.Attachment.InstanceID, v.Attachment.Device)
	if err != nil {
		return nil, internal(err, "find drive %s of %s", v.Attachment.Device, v.Attachment.InstanceID)
	}
	return d, nil
}

// ModifyRequest changes a volume. Zero fields keep their value, except
// that changing Type re-derives what the new type derives.
type ModifyRequest struct {
	SizeGiB    int64
	Type       Type
	IOPS       int64
	Throughput int64
}

// Modify grows a volume and/or changes its type, IOPS or throughput, also
// while attached: a running VMM grows its drive (the guest sees a
// configuration change) and takes the new I/O limits.
func (s *Store) Modify(id string, req ModifyRequest) (Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.volumeLocked(id)
	if err != nil {
		return Volume{}, err
	}
	if _, err := nextState(v, ActModify); err != nil {
		return Volume{}, err
	}
	spec := v.Spec
	if req.SizeGiB != 0 {
		if req.SizeGiB < spec.SizeGiB {
			return Volume{}, errorf(InvalidParameterValue, "volume %s is %d GiB and cannot shrink to %d GiB", v.ID, spec.SizeGiB, req.SizeGiB)
		}
		spec.SizeGiB = req.SizeGiB
	}
	if req.Type != "" && req.Type != spec.Type {
		spec.Type, spec.IOPS, spec.Throughput = req.Type, 0, 0
	}
	if spec.Type == ST1 || spec.Type == SC1 {
		spec.IOPS, spec.Throughput = 0, 0 // derived again from the size
	} else if spec.Type == IO2 {
		spec.Throughput = 0
	}
	if req.IOPS != 0 {
		spec.IOPS = req.IOPS
	}
	if req.Throughput != 0 {
		spec.Throughput = req.Throughput
	}
	if spec, err = spec.Normalize(); err != nil {
		return Volume{}, err
	}
	drive, err := s.liveDrive(v)
	if err != nil {
		return Volume{}, err
	}
	if spec.SizeGiB != v.SizeGiB {
		size := spec.SizeGiB << 30
		if drive != nil {
			err = drive.Resize(size)
		} else {
			err = s.images.Grow(s.layerPath(v.Top), size)
		}
		if err != nil {
			return Volume{}, internal(err, "grow volume %s", v.ID)
		}
	}
	if drive != nil && spec.Limits() != v.Spec.Limits() {
		if err := drive.SetLimits(spec.Limits()); err != nil {
			return Volume{}, internal(err, "set I/O limits of volume %s", v.ID)
		}
	}
	c := v.clone()
	c.Spec = spec
	if err := s.saveVolume(&c); err != nil {
		return Volume{}, err
	}
	*v = c
	return v.clone(), nil
}

// Delete removes a detached volume and its top file. Its snapshots stay:
// they are files of their own. A volume that is attached is refused with
// VolumeInUse.
func (s *Store) Delete(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.volumeLocked(id)
	if err != nil {
		return err
	}
	to, err := nextState(v, ActDelete)
	if err != nil {
		return err
	}
	v.State = to
	if err := s.saveVolume(v); err != nil {
		v.State = StateAvailable
		return err
	}
	return s.finishDeleteVolume(v)
}

// finishDeleteVolume removes a deleting volume's file, then its record,
// then lets waiting snapshot deletions proceed. Caller holds mu.
func (s *Store) finishDeleteVolume(v *Volume) error {
	// A snapshot may have frozen this file after all: only remove the
	// top if no snapshot names it.
	owned := true
	for _, sn := range s.snapshots {
		if sn.File == v.Top {
			owned = false
		}
	}
	if owned {
		if err := os.Remove(s.layerPath(v.Top)); err != nil && !os.IsNotExist(err) {
			return internal(err, "delete volume %s", v.ID)
		}
	}
	if err := s.removeRecord("volumes", v.ID); err != nil {
		return err
	}
	delete(s.volumes, v.ID)
	return s.collect()
}
