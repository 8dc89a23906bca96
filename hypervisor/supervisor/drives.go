package supervisor

import (
	"context"
	"fmt"

	"gureum/vmm/api"
)

// Drives of a running VMM: the control plane attaches, detaches, grows and
// snapshots volumes of a running instance through these (the VMM's
// /drives endpoints, docs/vmm-api.md). Each call goes to the VMM's socket;
// any goroutine may call them.

// Drives lists the VMM's virtio-blk drives in PCI order.
func (s *Supervisor) Drives(ctx context.Context, id string) ([]api.DriveInfo, error) {
	in, err := s.lookup(id)
	if err != nil {
		return nil, err
	}
	out, err := in.client.Drives(ctx)
	if err != nil {
		return nil, fmt.Errorf("drives of %s: %w", id, err)
	}
	return out, nil
}

// AttachDrive puts a disk into the empty drive of the VMM.
func (s *Supervisor) AttachDrive(ctx context.Context, id, drive string, req api.DriveAttach) (api.DriveInfo, error) {
	in, err := s.lookup(id)
	if err != nil {
		return api.DriveInfo{}, err
	}
	out, err := in.client.AttachDrive(ctx, drive, req)
	if err != nil {
		return out, fmt.Errorf("attach %s to drive %s of %s: %w", req.Path, drive, id, err)
	}
	return out, nil
}

// DetachDrive flushes and closes the disk of the drive; the guest sees an
// empty drive (capacity 0).
func (s *Supervisor) DetachDrive(ctx context.Context, id, drive string) error {
	in, err := s.lookup(id)
	if err != nil {
		return err
	}
	if err := in.client.DetachDrive(ctx, drive); err != nil {
		return fmt.Errorf("detach drive %s of %s: %w", drive, id, err)
	}
	return nil
}

// LiveDrive returns one drive of the VMM as a volume.LiveDrive (switch
// top, grow, limits); ErrNotFound when no VMM runs for id.
func (s *Supervisor) LiveDrive(id, drive string) (*api.LiveDrive, error) {
	in, err := s.lookup(id)
	if err != nil {
		return nil, err
	}
	return in.client.LiveDrive(drive), nil
}
