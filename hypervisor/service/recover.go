package service

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gureum/hypervisor/lifecycle"
	"gureum/hypervisor/store"
	"gureum/storage/volume"
)

// recover brings the host in line with the store after the daemon
// started, whether the last one shut down cleanly or was killed at any
// point:
//
//  1. volumes and snapshots that no record owns (their creation was cut
//     short before it was recorded) are deleted, and attachments to
//     instances that do not exist are dropped;
//  2. instance stores of instances that are not up are erased;
//  3. host capacity is taken again for every instance that holds it;
//  4. the supervisor re-adopts the VMMs still running; those that ended
//     meanwhile are reported to onExit (the instance goes to stopped with
//     the VMM's end as state reason);
//  5. a running instance whose VMM is gone without a trace is treated as
//     a VMM that died;
//  6. every unfinished operation is resumed (by the reconciler).
func (s *Service) recover() error {
	statuses := map[string]*lifecycle.Status{}
	err := s.store.View(func(tx store.Tx) error {
		all, err := lifecycle.List(tx)
		for _, st := range all {
			statuses[st.ID] = st
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	if err := s.dropOrphanStorage(statuses); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	for id, st := range statuses {
		switch st.State {
		case lifecycle.Pending, lifecycle.Running, lifecycle.Stopping, lifecycle.ShuttingDown:
			if r, t, err := s.load(id); err == nil {
				if err := s.cap.Reserve(r.ID, t); err != nil {
					s.log.Warn("instance over capacity after restart", "instance", id, "err", err)
				}
			}
		}
	}

	adopted, err := s.sup.Adopt(s.ctx)
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	alive := map[string]bool{}
	for _, in := range adopted {
		alive[in.ID] = true
		s.log.Info("VMM re-adopted", "instance", in.ID, "pid", in.PID)
	}
	// Adopt has reported every VMM it found ended (onExit recorded it), so
	// statuses, read before, may be stale: read each one again.
	for id := range statuses {
		if alive[id] {
			continue
		}
		if _, err := s.sup.Get(id); err == nil {
			continue
		}
		var st *lifecycle.Status
		s.store.View(func(tx store.Tx) error {
			var err error
			st, err = lifecycle.Get(tx, id)
			return err
		})
		if st == nil || st.State != lifecycle.Running || st.Op != nil {
			continue
		}
		s.log.Warn("running instance has no VMM", "instance", id)
		_, err := s.driver.Request(id, lifecycle.VMMExited, lifecycle.Options{Detail: "the VMM was gone when the daemon started"})
		if err != nil {
			s.log.Warn("cannot record the lost VMM", "instance", id, "err", err)
		}
	}
	s.resumeOwed()
	return nil
}

// dropOrphanStorage deletes what a cut-short creation left behind.
func (s *Service) dropOrphanStorage(statuses map[string]*lifecycle.Status) error {
	owned := func(kind, id string) bool {
		found := false
		s.store.View(func(tx store.Tx) error {
			_, err := tx.Get(kind, id)
			found = err == nil
			return nil
		})
		return found
	}
	for _, v := range s.volumes.Volumes() {
		if a := v.Attachment; a != nil {
			if _, ok := statuses[a.InstanceID]; !ok {
				s.log.Warn("detaching volume from an instance that does not exist", "volume", v.ID, "instance", a.InstanceID)
				if _, err := s.volumes.Detach(v.ID); err != nil {
					return err
				}
			}
		}
		if !owned(kindVolumeOwner, v.ID) {
			s.log.Warn("deleting volume no record owns", "volume", v.ID)
			if err := s.volumes.Delete(v.ID); err != nil && volume.Code(err) != volume.VolumeNotFound {
				return err
			}
		}
	}
	for _, sn := range s.volumes.Snapshots() {
		if !owned(kindSnapshotOwner, sn.ID) {
			s.log.Warn("deleting snapshot no record owns", "snapshot", sn.ID)
			if err := s.volumes.DeleteSnapshot(sn.ID); err != nil && volume.Code(err) != volume.SnapshotNotFound {
				return err
			}
		}
	}
	// Owner records of volumes that are gone (deleted, record not yet).
	var stale []string
	s.store.View(func(tx store.Tx) error {
		entries, err := tx.List(kindVolumeOwner)
		for _, e := range entries {
			if _, err := s.volumes.Volume(e.Key); volume.Code(err) == volume.VolumeNotFound {
				stale = append(stale, e.Key)
			}
		}
		return err
	})
	for _, id := range stale {
		if err := s.deleteVolume(id); err != nil {
			return err
		}
	}
	dir := filepath.Join(s.cfg.DataDir, instanceStoreDir)
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".img")
		if !ok {
			continue
		}
		st := statuses[id]
		if st == nil || st.State == lifecycle.Stopped || st.State == lifecycle.Terminated {
			s.log.Warn("erasing instance store of an instance that is not up", "instance", id)
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return nil
}
