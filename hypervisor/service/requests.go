package service

import (
	"io"
	"net"
	"os"
	"time"

	"gureum/api"
	"gureum/hypervisor/instancetype"
	"gureum/hypervisor/lifecycle"
	"gureum/hypervisor/store"
)

// request applies a user action to one of caller's instances: the
// transition is decided by the lifecycle table and recorded, then the
// reconciler is kicked to carry it out. It returns EC2's state change at
// once (a long operation shows its transitional state).
func (s *Service) request(caller Caller, id string, a lifecycle.Action, opts lifecycle.Options, deadline int) (api.StateChange, error) {
	var ch lifecycle.Change
	reserved := false
	err := s.store.Update(func(tx store.Tx) error {
		r, st, err := ownedInstance(tx, caller, id)
		if err != nil {
			return err
		}
		// A start takes host capacity now, so that a full host answers
		// InsufficientInstanceCapacity to the request itself.
		if a == lifecycle.Start && st.State == lifecycle.Stopped {
			t, err := instancetype.Lookup(r.Type)
			if err != nil {
				return err
			}
			if err := s.cap.Reserve(id, t); err != nil {
				return err
			}
			reserved = true
		}
		ch, err = lifecycle.Request(tx, id, a, opts, s.now())
		if err != nil {
			return err
		}
		if (a == lifecycle.Stop || a == lifecycle.Terminate) && ch.Op != nil && r.StopDeadlineSeconds != deadline {
			r.StopDeadlineSeconds = deadline
			return putInstance(tx, r)
		}
		return nil
	})
	if err != nil {
		if reserved {
			s.cap.Release(id)
		}
		return api.StateChange{InstanceID: id}, err
	}
	if ch.Op != nil {
		s.log.Info("instance "+string(a), "instance", id, "from", ch.Previous, "to", ch.Current)
		s.kick(id)
	}
	return ch.API(), nil
}

// Start starts a stopped instance (EBS-backed ones only ever stop).
func (s *Service) Start(caller Caller, id string) (api.StateChange, error) {
	return s.request(caller, id, lifecycle.Start, lifecycle.Options{}, 0)
}

// Stop stops a running EBS-backed instance: gracefully within the
// request's deadline, or at once with Force.
func (s *Service) Stop(caller Caller, id string, req api.StopRequest) (api.StateChange, error) {
	if req.DeadlineSeconds < 0 {
		return api.StateChange{}, api.Errorf(api.CodeInvalidParameterValue, "The deadline must not be negative.")
	}
	return s.request(caller, id, lifecycle.Stop, lifecycle.Options{Force: req.Force}, req.DeadlineSeconds)
}

// Reboot resets a running instance's guest; it stays running.
func (s *Service) Reboot(caller Caller, id string) (api.StateChange, error) {
	return s.request(caller, id, lifecycle.Reboot, lifecycle.Options{}, 0)
}

// Terminate ends an instance for good; it stays visible for an hour.
func (s *Service) Terminate(caller Caller, id string, req api.StopRequest) (api.StateChange, error) {
	if req.DeadlineSeconds < 0 {
		return api.StateChange{}, api.Errorf(api.CodeInvalidParameterValue, "The deadline must not be negative.")
	}
	return s.request(caller, id, lifecycle.Terminate, lifecycle.Options{Force: req.Force}, req.DeadlineSeconds)
}

// consoleTailBytes is how much of the console ConsoleOutput returns.
const consoleTailBytes = 64 << 10

// ConsoleOutput returns the end of the instance's serial console: the
// running VMM's log, or the tail saved when its last VMM ended.
func (s *Service) ConsoleOutput(caller Caller, id string) (api.ConsoleOutput, error) {
	if err := s.store.View(func(tx store.Tx) error {
		_, _, err := ownedInstance(tx, caller, id)
		return err
	}); err != nil {
		return api.ConsoleOutput{}, err
	}
	path := s.consolePath(id)
	if info, err := s.sup.Get(id); err == nil {
		path = info.ConsoleLog
	}
	out := api.ConsoleOutput{InstanceID: id, Timestamp: s.now()}
	f, err := os.Open(path)
	if err != nil {
		return out, nil // nothing printed yet
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > consoleTailBytes {
		f.Seek(fi.Size()-consoleTailBytes, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, consoleTailBytes))
	out.Output = string(b)
	return out, nil
}

// AttachConsole connects to the running instance's serial console: what
// is written to the connection is typed into the guest's serial port and
// what the guest prints is read from it.
func (s *Service) AttachConsole(caller Caller, id string) (net.Conn, error) {
	var state lifecycle.State
	if err := s.store.View(func(tx store.Tx) error {
		_, st, err := ownedInstance(tx, caller, id)
		if st != nil {
			state = st.State
		}
		return err
	}); err != nil {
		return nil, err
	}
	info, err := s.sup.Get(id)
	if err != nil {
		return nil, api.Errorf(api.CodeIncorrectInstanceState, "The instance '%s' is %s; its console can be attached only while it runs.", id, state)
	}
	c, err := net.DialTimeout("unix", info.ConsoleSock, 5*time.Second)
	if err != nil {
		return nil, api.Errorf(api.CodeIncorrectInstanceState, "The console of '%s' does not answer: %v", id, err)
	}
	return c, nil
}
