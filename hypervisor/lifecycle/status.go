package lifecycle

import (
	"errors"
	"fmt"
	"time"

	"gureum/api"
	"gureum/hypervisor/store"
)

// Kind is the store kind under which each instance's Status is kept, keyed
// by instance id. The rest of an instance's record (type, image, volumes,
// tags) lives under its own kind, written in the same transactions.
const Kind = "instance-lifecycle"

// Retention is how long a terminated instance stays visible.
const Retention = time.Hour

// Status is the lifecycle half of an instance's record.
type Status struct {
	ID    string `json:"id"`
	State State  `json:"state"`
	// Reason explains the last transition (nil after a clean start).
	Reason *api.StateReason `json:"reason,omitempty"`
	// TransitionReason is EC2's free-text "User initiated (... GMT)".
	TransitionReason string `json:"transition_reason,omitempty"`
	// RootDeviceType is api.RootDeviceEBS or api.RootDeviceInstanceStore.
	RootDeviceType string `json:"root_device_type"`
	// ShutdownBehavior is api.ShutdownStop or api.ShutdownTerminate.
	ShutdownBehavior string    `json:"shutdown_behavior"`
	LaunchTime       time.Time `json:"launch_time"`
	ChangedAt        time.Time `json:"changed_at"`
	TerminatedAt     time.Time `json:"terminated_at,omitzero"`
	// Op is the unfinished operation, or nil when the instance is at rest.
	Op *Operation `json:"op,omitempty"`
	// LastSeq is the Seq of the newest operation ever begun.
	LastSeq uint64 `json:"last_seq"`
}

// Options refine a request.
type Options struct {
	// Force makes a stop (or a stop already under way) kill the VMM
	// instead of waiting for the guest.
	Force bool
	// Detail is free text for the state reason (a VMM's exit reason).
	Detail string
}

// Change is the outcome of a request: the states before and after (as EC2's
// InstanceStateChange), and whether work was scheduled or the record
// removed.
type Change struct {
	ID       string
	Previous State
	Current  State
	// Op is the operation the caller must now drive, or nil.
	Op *Operation
	// Removed is true when the record was deleted (Expire).
	Removed bool
}

// API returns the change as the wire type.
func (c Change) API() api.StateChange {
	return api.StateChange{InstanceID: c.ID, PreviousState: c.Previous.API(), CurrentState: c.Current.API()}
}

// Decide applies action a to st in memory, by the transition table, and
// returns the change. It does no I/O; Request wraps it in a transaction.
func Decide(st *Status, a Action, opts Options, now time.Time) (Change, error) {
	ch := Change{ID: st.ID, Previous: st.State, Current: st.State}
	eff, ok := transitions[a][st.State]
	if !ok {
		return ch, incorrectState(st, a)
	}
	if a == Stop && st.RootDeviceType != api.RootDeviceEBS && eff != keep {
		return ch, notStoppable(st)
	}
	switch eff {
	case keep:
		// A forced stop of an instance already stopping upgrades the
		// stop under way: the driver sees Force on its next step.
		if a == Stop && opts.Force && st.Op != nil && st.Op.Kind == OpStop && !st.Op.Force {
			st.Op.Force = true
			ch.Op = st.Op
		}
		return ch, nil
	case remove:
		if now.Sub(st.TerminatedAt) < Retention {
			return ch, api.Errorf(api.CodeIncorrectInstanceState,
				"The instance '%s' was terminated less than %s ago.", st.ID, Retention)
		}
		ch.Removed = true
		return ch, nil
	}

	kind, reason := opFor(st, a, eff, opts, now)
	st.LastSeq++
	st.Op = newOperation(kind, st.LastSeq, opts.Force)
	st.State = opPlan[kind].during
	st.ChangedAt = now
	if reason != nil || kind == OpStart {
		st.Reason = reason // a start clears the last stop's reason
	}
	if a == Stop || a == Terminate {
		st.TransitionReason = "User initiated (" + now.UTC().Format("2006-01-02 15:04:05") + " GMT)"
	} else if opts.Detail != "" {
		st.TransitionReason = opts.Detail
	}
	ch.Current, ch.Op = st.State, st.Op
	return ch, nil
}

// opFor resolves an effect into the operation it begins and the state
// reason it records.
func opFor(st *Status, a Action, eff effect, opts Options, now time.Time) (OpKind, *api.StateReason) {
	user := &api.StateReason{Code: "Client.UserInitiatedShutdown", Message: "Client.UserInitiatedShutdown: User initiated shutdown"}
	switch eff {
	case beginStart:
		return OpStart, nil
	case beginStop:
		return OpStop, user
	case beginReboot:
		return OpReboot, nil
	case beginTerminate:
		return OpTerminate, user
	case halt:
		r := &api.StateReason{Code: "Client.InstanceInitiatedShutdown", Message: "Client.InstanceInitiatedShutdown: Instance initiated shutdown"}
		if a == VMMExited {
			r = &api.StateReason{Code: "Server.InternalError", Message: "Server.InternalError: Internal error"}
		}
		if st.RootDeviceType == api.RootDeviceEBS && st.ShutdownBehavior != api.ShutdownTerminate {
			return OpStop, r
		}
		return OpTerminate, r
	case abortStart:
		r := &api.StateReason{Code: "Server.InternalError", Message: "Server.InternalError: Internal error on launch"}
		if opts.Detail == string(api.CodeInsufficientInstanceCapacity) {
			r = &api.StateReason{Code: "Server.InsufficientInstanceCapacity", Message: "Server.InsufficientInstanceCapacity: Insufficient capacity"}
		}
		if st.Op != nil && st.Op.Kind == OpStart {
			return OpStop, r
		}
		return OpTerminate, r
	}
	panic(fmt.Sprintf("lifecycle: effect %d has no operation", eff)) // the table is static
}

// finish records that op's last step is done: the instance reaches the
// operation's final state.
func finish(st *Status, now time.Time) {
	st.State = st.Op.Final
	st.ChangedAt = now
	if st.State == Terminated {
		st.TerminatedAt = now
	}
	st.Op = nil
}

// Get loads an instance's status; a missing instance is
// InvalidInstanceID.NotFound.
func Get(tx store.Tx, id string) (*Status, error) {
	var st Status
	err := store.GetJSON(tx, Kind, id, &st)
	if errors.Is(err, store.ErrNotFound) {
		return nil, api.Errorf(api.CodeInvalidInstanceIDNotFound, "The instance ID '%s' does not exist", id)
	}
	if err != nil {
		return nil, fmt.Errorf("load status of %s: %w", id, err)
	}
	return &st, nil
}

func put(tx store.Tx, st *Status) error {
	return store.PutJSON(tx, Kind, st.ID, st)
}

// List loads every instance's status, sorted by id.
func List(tx store.Tx) ([]*Status, error) {
	entries, err := tx.List(Kind)
	if err != nil {
		return nil, fmt.Errorf("list statuses: %w", err)
	}
	out := make([]*Status, 0, len(entries))
	for _, e := range entries {
		var st Status
		if err := store.GetJSON(tx, Kind, e.Key, &st); err != nil {
			return nil, err
		}
		out = append(out, &st)
	}
	return out, nil
}

// Launch records a new instance in pending with a launch operation, inside
// the caller's transaction (which also writes the rest of the instance's
// record). st gives ID, RootDeviceType and ShutdownBehavior; the rest is
// filled in. After the commit the caller drives the operation.
func Launch(tx store.Tx, st Status, now time.Time) (Change, error) {
	if _, err := Get(tx, st.ID); err == nil {
		return Change{}, fmt.Errorf("launch %s: instance exists", st.ID)
	} else if api.CodeOf(err) != api.CodeInvalidInstanceIDNotFound {
		return Change{}, fmt.Errorf("launch %s: %w", st.ID, err)
	}
	if st.RootDeviceType != api.RootDeviceEBS && st.RootDeviceType != api.RootDeviceInstanceStore {
		return Change{}, api.Errorf(api.CodeInvalidParameterValue, "Invalid root device type '%s'", st.RootDeviceType)
	}
	if st.ShutdownBehavior == "" {
		st.ShutdownBehavior = api.ShutdownStop
	}
	if st.ShutdownBehavior != api.ShutdownStop && st.ShutdownBehavior != api.ShutdownTerminate {
		return Change{}, api.Errorf(api.CodeInvalidParameterValue, "Invalid value '%s' for instanceInitiatedShutdownBehavior", st.ShutdownBehavior)
	}
	st.State, st.LaunchTime, st.ChangedAt = Pending, now, now
	st.Reason, st.TransitionReason, st.TerminatedAt = nil, "", time.Time{}
	st.LastSeq = 1
	st.Op = newOperation(OpLaunch, st.LastSeq, false)
	if err := put(tx, &st); err != nil {
		return Change{}, err
	}
	return Change{ID: st.ID, Previous: Pending, Current: Pending, Op: st.Op}, nil
}

// Request applies action a to instance id inside the caller's transaction
// and persists the result before returning. Only after the transaction
// commits may the caller act (Driver.Drive): that ordering is what lets a
// restarted daemon finish what a dead one began.
func Request(tx store.Tx, id string, a Action, opts Options, now time.Time) (Change, error) {
	st, err := Get(tx, id)
	if err != nil {
		return Change{ID: id}, err
	}
	before := *st
	ch, err := Decide(st, a, opts, now)
	if err != nil {
		return ch, err
	}
	if ch.Removed {
		return ch, tx.Delete(Kind, id)
	}
	if ch.Op == nil && before.State == st.State {
		return ch, nil // nothing changed, nothing to write
	}
	return ch, put(tx, st)
}

// Sweep removes, inside the caller's transaction, every instance
// terminated at least Retention ago, and returns their ids so the caller
// deletes the rest of their records in the same transaction.
func Sweep(tx store.Tx, now time.Time) ([]string, error) {
	all, err := List(tx)
	if err != nil {
		return nil, err
	}
	var gone []string
	for _, st := range all {
		if st.State != Terminated || now.Sub(st.TerminatedAt) < Retention {
			continue
		}
		if _, err := Request(tx, st.ID, Expire, Options{}, now); err != nil {
			return nil, fmt.Errorf("expire %s: %w", st.ID, err)
		}
		gone = append(gone, st.ID)
	}
	return gone, nil
}
