package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"gureum/api"
	"gureum/hypervisor/billing"
	"gureum/hypervisor/credits"
	"gureum/hypervisor/instancetype"
	"gureum/hypervisor/lifecycle"
	"gureum/hypervisor/store"
	"gureum/hypervisor/supervisor"
	"gureum/storage/instancestore"
	"gureum/storage/volume"
)

// actuator is the Service seen as lifecycle.Actuator: the steps of every
// operation. The driver runs them on a reconciler goroutine, one at a
// time per instance, and may run a step again after a crash, so each one
// first looks whether its work is already done.
type actuator Service

var _ lifecycle.Actuator = (*actuator)(nil)

func (a *actuator) svc() *Service { return (*Service)(a) }

// load reads the instance's record and type.
func (s *Service) load(id string) (*instanceRecord, instancetype.Type, error) {
	var r *instanceRecord
	err := s.store.View(func(tx store.Tx) error {
		var err error
		r, err = getInstance(tx, id)
		return err
	})
	if err != nil {
		return nil, instancetype.Type{}, err
	}
	t, err := instancetype.Lookup(r.Type)
	return r, t, err
}

// CreateInstanceStore makes the instance's ephemeral disk: a sparse file
// of its type's size. A file already there was made by this same step
// before a restart (stop and terminate erase it), so it is kept.
func (a *actuator) CreateInstanceStore(ctx context.Context, id string) error {
	s := a.svc()
	_, t, err := s.load(id)
	if err != nil {
		return err
	}
	gb := t.InstanceStoreGB()
	if gb == 0 {
		return nil
	}
	_, err = instancestore.Create(filepath.Join(s.cfg.DataDir, instanceStoreDir), id, int64(gb)*1e9)
	if errors.Is(err, instancestore.ErrExists) {
		return nil
	}
	return err
}

// spec builds the VMM's configuration: the root volume first (the guest's
// first disk), then the instance store, then the other volumes, then
// empty drives for volumes attached while it runs (volumes_live.go, which
// also records which drive holds which volume).
func (s *Service) spec(r *instanceRecord, t instancetype.Type) (supervisor.Spec, error) {
	sp := supervisor.Spec{ID: r.ID, Kernel: r.Kernel, Initrd: r.Initrd, Cmdline: r.Cmdline,
		VCPUs: t.VCPUs, MemoryMiB: t.MemoryMiB()}
	if s.cfg.MaxGuestVCPUs > 0 {
		sp.VCPUs = min(sp.VCPUs, s.cfg.MaxGuestVCPUs)
	}
	if s.cfg.MaxGuestMemoryMiB > 0 {
		sp.MemoryMiB = min(sp.MemoryMiB, s.cfg.MaxGuestMemoryMiB)
	}
	if r.ReadOnlyRootDisk != "" {
		sp.Disks = append(sp.Disks, supervisor.Disk{Path: r.ReadOnlyRootDisk, ReadOnly: true})
	}
	volumeDevices := map[string]string{}
	for i, b := range r.BlockDevices {
		d, err := s.volumeDisk(b.VolumeID)
		if err != nil {
			return sp, fmt.Errorf("volume %s of %s: %w", b.VolumeID, r.ID, err)
		}
		volumeDevices[d.Path] = b.DeviceName
		sp.Disks = append(sp.Disks, d)
		if i == 0 && r.RootDeviceName != "" && t.InstanceStoreGB() > 0 {
			sp.Disks = append(sp.Disks, s.instanceStoreDisk(r.ID))
		}
	}
	if (r.RootDeviceName == "" || len(r.BlockDevices) == 0) && t.InstanceStoreGB() > 0 {
		sp.Disks = append(sp.Disks, s.instanceStoreDisk(r.ID))
	}
	s.networkSpec(r, &sp)
	return sp, s.addDriveSlots(&sp, volumeDevices)
}

func (s *Service) instanceStoreDisk(id string) supervisor.Disk {
	p, _ := instancestore.Path(filepath.Join(s.cfg.DataDir, instanceStoreDir), id)
	return supervisor.Disk{Path: p}
}

// StartVMM starts the instance's VMM, unless one runs (started by this
// step before a restart and re-adopted). The host capacity is taken
// again (a no-op if it is held). A VMM that refuses to start is a
// permanent failure: the start is aborted rather than retried forever.
// When the VMM runs, the billing run and the credit account start, in one
// transaction.
func (a *actuator) StartVMM(ctx context.Context, id string) error {
	s := a.svc()
	defer s.liveLocks.lock(id)()
	if _, err := s.sup.Get(id); err == nil {
		return nil
	}
	r, t, err := s.load(id)
	if err != nil {
		return err
	}
	if err := s.cap.Reserve(id, t); err != nil {
		return lifecycle.Permanent(err)
	}
	sp, err := s.spec(r, t)
	if err != nil {
		return lifecycle.Permanent(err)
	}
	t0 := time.Now()
	if err := s.plugInstance(r); err != nil {
		return fmt.Errorf("network of %s: %w", id, err)
	}
	t1 := time.Now()
	info, err := s.sup.Start(ctx, sp)
	t2 := time.Now()
	if err != nil {
		if errors.Is(err, supervisor.ErrClosed) || errors.Is(err, supervisor.ErrExists) || ctx.Err() != nil {
			return err // the daemon is going away, or an old VMM is still being cleaned up
		}
		s.log.Warn("VMM did not start", "instance", id, "err", err)
		return lifecycle.Permanent(err)
	}
	// The API answers while the VM is still being created; the instance is
	// running once its vCPUs are (until then the VMM refuses a shutdown
	// or reboot).
	for i := 0; i < 1000; i++ { // 5 s
		v, err := s.sup.State(ctx, id)
		if err != nil || v.State != "created" {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.log.Info("VMM started", "instance", id, "pid", info.PID,
		"network", t1.Sub(t0), "start", t2.Sub(t1), "vcpus", time.Since(t2))
	now := s.now()
	return s.store.Update(func(tx store.Tx) error {
		r, err := getInstance(tx, id)
		if err != nil {
			return err
		}
		if err := billing.InstanceStarted(tx, id, r.Owner, r.Type, now); err != nil {
			return err
		}
		if r.Credits != nil {
			if p, err := credits.ParamsFor(t); err == nil {
				r.Credits.Start(p, now)
			}
		}
		return putInstance(tx, r)
	})
}

// StopVMM ends the instance's VMM: a graceful shutdown (Ctrl-Alt-Del,
// then the VMM stops it at the deadline) or, with force, SIGKILL. It waits
// for the end, and turns a graceful stop into a kill if a forced stop is
// requested meanwhile. The VMM's exit itself is recorded by onExit.
func (a *actuator) StopVMM(ctx context.Context, id string, force bool) error {
	s := a.svc()
	if _, err := s.sup.Get(id); err != nil {
		return s.recordStopped(id) // already gone (exited, or a replayed step)
	}
	// The VMM stops the guest itself at the deadline; killAt is the
	// daemon's own backstop should the VMM not manage to.
	var killAt time.Time
	if force {
		if err := s.sup.Kill(id); err != nil && !errors.Is(err, supervisor.ErrNotFound) {
			return err
		}
	} else {
		r, _, err := s.load(id)
		if err != nil {
			return err
		}
		deadline := s.cfg.StopTimeout
		if r.StopDeadlineSeconds > 0 {
			deadline = time.Duration(r.StopDeadlineSeconds) * time.Second
		}
		killAt = time.Now().Add(deadline + 5*time.Second)
		if err := s.sup.Shutdown(ctx, id, deadline); err != nil && !errors.Is(err, supervisor.ErrNotFound) {
			// The VMM does not answer: it cannot shut its guest down.
			s.log.Warn("graceful shutdown refused; killing the VMM", "instance", id, "err", err)
			s.sup.Kill(id)
		}
	}
	for {
		wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err := s.sup.Wait(wctx, id)
		cancel()
		if err == nil || errors.Is(err, supervisor.ErrNotFound) {
			return s.recordStopped(id)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !force && (s.forceRequested(id) || time.Now().After(killAt)) {
			force = true
			s.log.Warn("killing a VMM that did not stop", "instance", id)
			s.sup.Kill(id)
		}
	}
}

// forceRequested reports whether the operation under way was upgraded to
// a forced stop.
func (s *Service) forceRequested(id string) bool {
	forced := false
	s.store.View(func(tx store.Tx) error {
		st, err := lifecycle.Get(tx, id)
		forced = err == nil && st.Op != nil && st.Op.Force
		return nil
	})
	return forced
}

// recordStopped closes the billing run and the credit account (both
// idempotent: onExit usually did it already, at the moment of the exit).
func (s *Service) recordStopped(id string) error {
	s.cap.Release(id)
	now := s.now()
	return s.store.Update(func(tx store.Tx) error { return stoppedInTx(tx, id, now) })
}

func stoppedInTx(tx store.Tx, id string, now time.Time) error {
	r, err := getInstance(tx, id)
	if err != nil {
		return err
	}
	if err := billing.InstanceStopped(tx, id, now); err != nil {
		return err
	}
	if r.Credits != nil && r.Credits.StoppedAt.IsZero() {
		before := r.Credits.SurplusCharged
		r.Credits.Stop(now)
		if t, err := instancetype.Lookup(r.Type); err == nil {
			if err := billing.CreditsCharged(tx, id, r.Owner, r.Type, t.VCPUs, r.Credits.SurplusCharged-before, now); err != nil {
				return err
			}
		}
		return putInstance(tx, r)
	}
	return nil
}

// RebootVMM resets the guest in place; the VMM, its disks and the
// instance store stay.
func (a *actuator) RebootVMM(ctx context.Context, id string) error {
	s := a.svc()
	if err := s.sup.Reboot(ctx, id); err != nil && !errors.Is(err, supervisor.ErrNotFound) {
		return err
	}
	return nil
}

// EraseInstanceStore deletes the ephemeral disk: its data is gone, as on
// EC2 after a stop. The host capacity is given back too.
func (a *actuator) EraseInstanceStore(ctx context.Context, id string) error {
	s := a.svc()
	s.cap.Release(id)
	return instancestore.Erase(filepath.Join(s.cfg.DataDir, instanceStoreDir), id)
}

// ReleaseResources gives back what a terminated instance holds: its
// volumes are detached, and deleted if marked delete-on-termination.
func (a *actuator) ReleaseResources(ctx context.Context, id string) error {
	s := a.svc()
	s.cap.Release(id)
	r, _, err := s.load(id)
	if err != nil {
		return err
	}
	for _, b := range r.BlockDevices {
		v, err := s.volumes.Volume(b.VolumeID)
		if volume.Code(err) == volume.VolumeNotFound {
			continue
		}
		if err != nil {
			return err
		}
		if v.Attachment != nil && v.Attachment.InstanceID == id {
			if _, err := s.volumes.Detach(v.ID); err != nil {
				return err
			}
		}
		if b.DeleteOnTermination {
			if err := s.deleteVolume(v.ID); err != nil {
				return err
			}
		}
	}
	return s.unplugInstance(r)
}

// onExit is the supervisor's report of a VMM's end. It runs on the VMM's
// watcher goroutine. The end is fed to the state machine as an event: a
// guest poweroff, or the VMM exiting on its own. The state machine knows
// which ends were expected (a VMM that exits while the instance is
// stopping is the stop working) and which begin a stop or termination.
func (s *Service) onExit(e supervisor.Exit) {
	if e.ConsoleTail != "" {
		if err := os.WriteFile(s.consolePath(e.ID), []byte(e.ConsoleTail), 0o600); err != nil {
			s.log.Warn("console log not saved", "instance", e.ID, "err", err)
		}
	}
	action := lifecycle.VMMExited
	if e.Kind == supervisor.EndPoweroff {
		action = lifecycle.GuestPoweroff
	}
	s.log.Info("VMM ended", "instance", e.ID, "kind", e.Kind, "reason", e.Reason, "while_away", e.WhileAway)
	now := s.now()
	var ch lifecycle.Change
	err := s.store.Update(func(tx store.Tx) error {
		st, err := lifecycle.Get(tx, e.ID)
		if err != nil {
			return err
		}
		// A launch or start interrupted by the daemon's death is resumed
		// by starting a fresh VMM, not aborted.
		if e.WhileAway && st.State == lifecycle.Pending {
			return nil
		}
		if err := stoppedInTx(tx, e.ID, now); err != nil {
			return err
		}
		ch, err = lifecycle.Request(tx, e.ID, action, lifecycle.Options{Detail: e.Reason}, now)
		if api.CodeOf(err) == api.CodeIncorrectInstanceState {
			return nil // e.g. a poweroff reported for an instance already stopped
		}
		return err
	})
	if api.CodeOf(err) == api.CodeInvalidInstanceIDNotFound {
		return
	}
	if err != nil {
		s.log.Error("VMM end not recorded", "instance", e.ID, "err", err)
		return
	}
	s.cap.Release(e.ID)
	if ch.Op != nil {
		s.kick(e.ID)
	}
}
