package supervisor

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"gureum/vmm/api"
)

// The control plane reaches a VMM only through its socket API
// (gureum/vmm/api). These methods are that API by instance ID; the end of
// the VMM that an action causes is reported later through OnExit.

// State returns the VMM's GET /vm answer and remembers it: if the VMM
// later ends without a known exit status, the last answer says how.
func (s *Supervisor) State(ctx context.Context, id string) (api.VMInfo, error) {
	in, err := s.lookup(id)
	if err != nil {
		return api.VMInfo{}, err
	}
	v, err := in.client.VM(ctx)
	if err != nil {
		return v, fmt.Errorf("state of %s: %w", id, err)
	}
	in.mu.Lock()
	in.last = &v
	in.mu.Unlock()
	return v, nil
}

// Metrics returns the VMM's counters (per-vCPU busy time, exits, devices).
func (s *Supervisor) Metrics(ctx context.Context, id string) (api.Metrics, error) {
	in, err := s.lookup(id)
	if err != nil {
		return api.Metrics{}, err
	}
	m, err := in.client.Metrics(ctx)
	if err != nil {
		return m, fmt.Errorf("metrics of %s: %w", id, err)
	}
	return m, nil
}

func (s *Supervisor) action(ctx context.Context, id string, r api.ActionRequest) error {
	in, err := s.lookup(id)
	if err != nil {
		return err
	}
	if err := in.client.Action(ctx, r); err != nil {
		return fmt.Errorf("%s %s: %w", r.Action, id, err)
	}
	return nil
}

// Shutdown asks the guest to power off (Ctrl-Alt-Del) and has the VMM stop
// it anyway after deadline (the VMM's default, 10 s, when deadline is not
// positive). It returns once the VMM accepted the request; the end
// (EndPoweroff, or EndStopped after the deadline) comes through OnExit.
func (s *Supervisor) Shutdown(ctx context.Context, id string, deadline time.Duration) error {
	ms := 0
	if deadline > 0 {
		ms = max(int(deadline.Milliseconds()), 1)
	}
	return s.action(ctx, id, api.ActionRequest{Action: "shutdown", TimeoutMS: ms})
}

// Reboot resets the machine in place (same VMM process, same disks).
func (s *Supervisor) Reboot(ctx context.Context, id string) error {
	return s.action(ctx, id, api.ActionRequest{Action: "reboot"})
}

// Stop ends the VM at once through the API (EndStopped). If the API does
// not answer, the VMM is killed instead (EndCrash, killed by SIGKILL).
func (s *Supervisor) Stop(ctx context.Context, id string) error {
	err := s.action(ctx, id, api.ActionRequest{Action: "stop"})
	if err == nil {
		return nil
	}
	if kerr := s.Kill(id); kerr != nil {
		return fmt.Errorf("%w; then %w", err, kerr)
	}
	return nil
}

// Kill sends SIGKILL to the VMM process (the forced stop).
func (s *Supervisor) Kill(id string) error {
	in, err := s.lookup(id)
	if err != nil {
		return err
	}
	s.killInstance(in)
	return nil
}

// killInstance kills the VMM, or the wrapper while the VMM is not yet
// known, each only after checking the PID is still that process.
func (s *Supervisor) killInstance(in *instance) {
	in.mu.Lock()
	r := in.rec
	in.mu.Unlock()
	if processAlive(r.VMMPID, r.VMMTime) {
		unix.Kill(r.VMMPID, unix.SIGKILL)
		return
	}
	if processAlive(r.WrapperPID, r.WrapperTime) {
		unix.Kill(r.WrapperPID, unix.SIGKILL)
	}
}

// SetLimits changes the instance's cgroup limits while it runs (the
// CPU-credit controller sets the CPU quota to the baseline when credits
// run out, and back). The new limits are recorded for re-adoption.
func (s *Supervisor) SetLimits(id string, l Limits) error {
	if l.CPUMilli < 0 || l.MemoryBytes < 0 {
		return fmt.Errorf("set limits of %s: %w: negative limits", id, ErrInvalidSpec)
	}
	in, err := s.lookup(id)
	if err != nil {
		return err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if err := in.rec.Cgroup.setLimits(l); err != nil {
		return fmt.Errorf("set limits of %s: %w", id, err)
	}
	in.rec.Limits = l
	if err := writeRecord(in.dir, in.rec); err != nil {
		return fmt.Errorf("set limits of %s: %w", id, err)
	}
	return nil
}

// Limits reads the instance's limits back from the kernel.
func (s *Supervisor) Limits(id string) (Limits, error) {
	in, err := s.lookup(id)
	if err != nil {
		return Limits{}, err
	}
	in.mu.Lock()
	g := in.rec.Cgroup
	in.mu.Unlock()
	l, err := g.limits()
	if err != nil {
		return l, fmt.Errorf("limits of %s: %w", id, err)
	}
	return l, nil
}
