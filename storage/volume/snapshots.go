package volume

import (
	"time"
)

// SnapshotState is where a snapshot is in its life.
type SnapshotState string

// Snapshot states, as EC2 names them.
const (
	SnapshotPending   SnapshotState = "pending"
	SnapshotCompleted SnapshotState = "completed"
	// SnapshotError marks a snapshot whose creation a crash interrupted
	// after the volume had moved on: it is kept (the volume's chain runs
	// through it) but cannot be trusted as a point in time.
	SnapshotError SnapshotState = "error"
)

// Snapshot is a snapshot's record.
type Snapshot struct {
	ID       string        `json:"snapshotId"`
	VolumeID string        `json:"volumeId"`
	State    SnapshotState `json:"state"`
	// Progress is a percentage, "100%" once completed. Freezing a file
	// is instant, so gureum's snapshots go from 0% to 100% in one step.
	Progress      string    `json:"progress"`
	StartTime     time.Time `json:"startTime"`
	Description   string    `json:"description,omitempty"`
	VolumeSizeGiB int64     `json:"volumeSizeGiB"`
	// DataBytes is what the snapshot's own file takes on the host: the
	// clusters written since the previous snapshot (plus a little qcow2
	// metadata), which is what an incremental snapshot costs.
	DataBytes int64 `json:"dataBytes"`
	// SourceSnapshotID is set on a copy.
	SourceSnapshotID string `json:"sourceSnapshotId,omitempty"`

	// File is the frozen layer; Parent is its backing layer or "".
	File   string `json:"file"`
	Parent string `json:"parent,omitempty"`
	// Deleted marks a snapshot the user deleted whose file is still
	// needed: one of the files built on it is a running volume's top,
	// which only its VMM may write, so the merge waits for the volume to
	// be detached or snapshotted. Deleted snapshots are invisible.
	Deleted bool `json:"deleted,omitempty"`
}

func (s *Store) snapshotLocked(id string) (*Snapshot, error) {
	if sn := s.snapshots[id]; sn != nil && !sn.Deleted && validID("snap", id) {
		return sn, nil
	}
	return nil, errorf(SnapshotNotFound, "snapshot %s does not exist", id)
}

// Snapshot returns one snapshot's record.
func (s *Store) Snapshot(id string) (Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn, err := s.snapshotLocked(id)
	if err != nil {
		return Snapshot{}, err
	}
	return *sn, nil
}

// Snapshots lists every snapshot, oldest first.
func (s *Store) Snapshots() []Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sortedSnapshots()
}

// CreateSnapshot freezes the volume's current contents, attached or not,
// without stopping its guest:
//
//  1. record the snapshot as pending, naming the current top as its file;
//  2. create a new, empty top whose backing is the current top;
//  3. record the volume on the new top;
//  4. if a VMM runs the volume, have it flush and switch to the new top
//     (LiveDrive.SwitchTop): from then on the old top is never written;
//  5. record the snapshot completed, with its size.
//
// Nothing is copied, so the time does not depend on the volume's size or
// on how much was written.
func (s *Store) CreateSnapshot(volumeID, description string) (Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.volumeLocked(volumeID)
	if err != nil {
		return Snapshot{}, err
	}
	if _, err := nextState(v, ActSnapshot); err != nil {
		return Snapshot{}, err
	}
	drive, err := s.liveDrive(v)
	if err != nil {
		return Snapshot{}, err
	}
	sn := &Snapshot{
		ID: newID("snap"), VolumeID: v.ID, State: SnapshotPending, Progress: "0%",
		StartTime: s.now().UTC(), Description: description, VolumeSizeGiB: v.SizeGiB,
		File: v.Top, Parent: v.Parent,
	}
	if err := s.saveSnapshot(sn); err != nil {
		return Snapshot{}, err
	}
	s.snapshots[sn.ID] = sn
	undo := func() {
		s.removeRecord("snapshots", sn.ID)
		delete(s.snapshots, sn.ID)
	}

	newTop := newLayerName()
	if err := s.images.Create(s.layerPath(newTop), v.SizeBytes(), s.layerPath(v.Top)); err != nil {
		undo()
		return Snapshot{}, internal(err, "create new top of volume %s", v.ID)
	}
	c := v.clone()
	c.Top, c.Parent = newTop, sn.File
	if err := s.saveVolume(&c); err != nil {
		s.removeLayer(newTop)
		undo()
		return Snapshot{}, err
	}
	if drive != nil {
		if err := drive.SwitchTop(s.layerPath(newTop)); err != nil {
			// The VMM still writes the old top: put the record back.
			if rerr := s.saveVolume(v); rerr == nil {
				s.removeLayer(newTop)
				undo()
			}
			return Snapshot{}, internal(err, "switch volume %s to its new top", v.ID)
		}
	}
	*v = c

	sn.State, sn.Progress = SnapshotCompleted, "100%"
	if n, err := allocatedBytes(s.layerPath(sn.File)); err == nil {
		sn.DataBytes = n
	}
	if err := s.saveSnapshot(sn); err != nil {
		return Snapshot{}, err
	}
	// The old top may be the child of a deleted snapshot that waited
	// because this volume was running; now it is frozen and can take the
	// merge.
	if err := s.collect(); err != nil {
		return *sn, err
	}
	return *sn, nil
}

// DeleteSnapshot deletes a snapshot without changing what any volume or
// other snapshot reads: its clusters are merged into each file built on
// it, where that file has none of its own, and those files are pointed at
// the snapshot's backing. If one of those files is a running volume's
// top, the merge waits (the snapshot disappears from listings at once).
func (s *Store) DeleteSnapshot(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn, err := s.snapshotLocked(id)
	if err != nil {
		return err
	}
	if sn.State == SnapshotPending {
		return errorf(IncorrectState, "snapshot %s is pending", sn.ID)
	}
	c := *sn
	c.Deleted = true
	if err := s.saveSnapshot(&c); err != nil {
		return err
	}
	*sn = c
	return s.collect()
}

// collect carries out every snapshot deletion that can proceed: a
// deleted snapshot whose children are all frozen files or detached
// volumes is merged into them and removed. Caller holds mu.
func (s *Store) collect() error {
	for progress := true; progress; {
		progress = false
		for _, sn := range s.snapshots {
			if !sn.Deleted {
				continue
			}
			done, err := s.mergeAway(sn)
			if err != nil {
				return err
			}
			progress = progress || done
		}
	}
	return nil
}

// mergeAway removes deleted snapshot sn from every chain if none of its
// children is a running top, and reports whether it did. Each child is
// rebased and its record updated before the next, and the file goes last,
// so a crash at any point leaves every chain readable and the deletion is
// finished by the next Open.
func (s *Store) mergeAway(sn *Snapshot) (bool, error) {
	var childSnaps []*Snapshot
	var childVols []*Volume
	for _, o := range s.snapshots {
		if o.Parent == sn.File {
			childSnaps = append(childSnaps, o)
		}
	}
	for _, v := range s.volumes {
		if v.Parent == sn.File {
			if v.State == StateInUse {
				return false, nil
			}
			childVols = append(childVols, v)
		}
	}
	for _, c := range childSnaps {
		if err := s.images.Rebase(s.layerPath(c.File), s.layerPath(sn.Parent)); err != nil {
			return false, internal(err, "merge snapshot %s into %s", sn.ID, c.ID)
		}
		u := *c
		u.Parent = sn.Parent
		if n, err := allocatedBytes(s.layerPath(u.File)); err == nil {
			u.DataBytes = n
		}
		if err := s.saveSnapshot(&u); err != nil {
			return false, err
		}
		*c = u
	}
	for _, v := range childVols {
		if err := s.images.Rebase(s.layerPath(v.Top), s.layerPath(sn.Parent)); err != nil {
			return false, internal(err, "merge snapshot %s into volume %s", sn.ID, v.ID)
		}
		u := v.clone()
		u.Parent = sn.Parent
		if err := s.saveVolume(&u); err != nil {
			return false, err
		}
		*v = u
	}
	if err := s.removeLayer(sn.File); err != nil {
		return false, err
	}
	if err := s.removeRecord("snapshots", sn.ID); err != nil {
		return false, err
	}
	delete(s.snapshots, sn.ID)
	return true, nil
}

// CopySnapshot makes a new, independent snapshot with the same contents:
// its file is a standalone copy of the whole chain, so deleting the
// source (or anything below it) never touches the copy.
func (s *Store) CopySnapshot(id, description string) (Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	src, err := s.snapshotLocked(id)
	if err != nil {
		return Snapshot{}, err
	}
	if src.State != SnapshotCompleted {
		return Snapshot{}, errorf(IncorrectState, "snapshot %s is %s", src.ID, src.State)
	}
	sn := &Snapshot{
		ID: newID("snap"), VolumeID: src.VolumeID, State: SnapshotCompleted, Progress: "100%",
		StartTime: s.now().UTC(), Description: description, VolumeSizeGiB: src.VolumeSizeGiB,
		SourceSnapshotID: src.ID, File: newLayerName(),
	}
	if err := s.images.Flatten(s.layerPath(src.File), s.layerPath(sn.File)); err != nil {
		s.removeLayer(sn.File)
		return Snapshot{}, internal(err, "copy snapshot %s", src.ID)
	}
	if n, err := allocatedBytes(s.layerPath(sn.File)); err == nil {
		sn.DataBytes = n
	}
	if err := s.saveSnapshot(sn); err != nil {
		s.removeLayer(sn.File)
		return Snapshot{}, err
	}
	s.snapshots[sn.ID] = sn
	return *sn, nil
}
