package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"gureum/api"
	"gureum/hypervisor/store"
)

// Actuator does the real work of each step: in the daemon, VMM supervision
// and storage; in tests, a fake.
//
// Every method must be idempotent, because a daemon that dies after a step
// ran but before it was recorded runs the step again on restart: starting
// a VMM that runs, stopping one that is gone, erasing a store that is
// erased, all succeed without doing anything twice.
type Actuator interface {
	// CreateInstanceStore makes the instance's ephemeral disk, if its
	// type has one.
	CreateInstanceStore(ctx context.Context, id string) error
	// StartVMM starts the instance's VMM and returns once it runs.
	StartVMM(ctx context.Context, id string) error
	// StopVMM ends the instance's VMM: by asking the guest to power off
	// (with a deadline) or, when force is set, by killing it.
	StopVMM(ctx context.Context, id string, force bool) error
	// RebootVMM resets the guest; the instance store survives.
	RebootVMM(ctx context.Context, id string) error
	// EraseInstanceStore deletes the ephemeral disk and its data.
	EraseInstanceStore(ctx context.Context, id string) error
	// ReleaseResources frees what only a terminated instance gives back:
	// its network interface, its delete-on-termination volumes, its host
	// capacity.
	ReleaseResources(ctx context.Context, id string) error
}

// PermanentError marks an Actuator error that retrying will not cure (an
// image that does not boot, no host capacity). A start that fails this
// way is aborted (StartFailed); other errors leave the step to be retried.
type PermanentError struct {
	Err error
}

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as a PermanentError.
func Permanent(err error) error { return &PermanentError{Err: err} }

// Driver carries out operations: it runs each step through the Actuator
// and records it as done in the store before the next one. Its methods may
// be called from any goroutine; Drive calls for one instance are
// serialized, so at most one goroutine works on an instance at a time.
type Driver struct {
	Store    store.Store
	Actuator Actuator
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu    sync.Mutex             // guards locks
	locks map[string]*sync.Mutex // one per instance being driven
}

func (d *Driver) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func (d *Driver) lock(id string) func() {
	d.mu.Lock()
	if d.locks == nil {
		d.locks = map[string]*sync.Mutex{}
	}
	l, ok := d.locks[id]
	if !ok {
		l = &sync.Mutex{}
		d.locks[id] = l
	}
	d.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// Request applies a user action or an observed event in its own
// transaction; see the package function Request. The caller then drives
// the change's operation, if any.
func (d *Driver) Request(id string, a Action, opts Options) (Change, error) {
	var ch Change
	err := d.Store.Update(func(tx store.Tx) error {
		var err error
		ch, err = Request(tx, id, a, opts, d.now())
		return err
	})
	return ch, err
}

// Drive runs the instance's pending operation to its end, recording each
// step. It returns nil when the instance is at rest (including when there
// was nothing to do), and the step's error when a step fails in a way that
// may be retried; the operation stays in the store for the next Drive or
// Resume. If a request replaces the operation meanwhile, Drive goes on
// with the new one.
func (d *Driver) Drive(ctx context.Context, id string) error {
	defer d.lock(id)()
	for {
		var st *Status
		err := d.Store.View(func(tx store.Tx) error {
			var err error
			st, err = Get(tx, id)
			return err
		})
		if api.CodeOf(err) == api.CodeInvalidInstanceIDNotFound {
			return nil // expired or never existed: nothing owed
		}
		if err != nil {
			return err
		}
		if st.Op == nil {
			return nil
		}
		op := st.Op
		if op.Done < len(op.Steps) {
			step := op.Steps[op.Done]
			if err := d.run(ctx, id, step, op.Force); err != nil {
				var perm *PermanentError
				if errors.As(err, &perm) && (op.Kind == OpLaunch || op.Kind == OpStart) {
					if err := d.abort(id, op.Seq, err); err != nil {
						return err
					}
					continue
				}
				return fmt.Errorf("%s %s: %s: %w", op.Kind, id, step, err)
			}
		}
		// Record progress, unless the operation was replaced while the
		// step ran (the new one starts from its own first step).
		err = d.Store.Update(func(tx store.Tx) error {
			cur, err := Get(tx, id)
			if err != nil {
				return err
			}
			if cur.Op == nil || cur.Op.Seq != op.Seq {
				return nil
			}
			if cur.Op.Done < len(cur.Op.Steps) {
				cur.Op.Done++
			}
			if cur.Op.Done == len(cur.Op.Steps) {
				finish(cur, d.now())
			}
			return put(tx, cur)
		})
		if err != nil {
			return fmt.Errorf("record %s of %s: %w", op.Kind, id, err)
		}
	}
}

// abort turns a start that cannot succeed into StartFailed, whose
// operation the Drive loop then carries out.
func (d *Driver) abort(id string, seq uint64, cause error) error {
	return d.Store.Update(func(tx store.Tx) error {
		cur, err := Get(tx, id)
		if err != nil {
			return err
		}
		if cur.Op == nil || cur.Op.Seq != seq {
			return nil
		}
		detail := cause.Error()
		if api.CodeOf(cause) == api.CodeInsufficientInstanceCapacity {
			detail = string(api.CodeInsufficientInstanceCapacity)
		}
		if _, err := Decide(cur, StartFailed, Options{Detail: detail}, d.now()); err != nil {
			return err
		}
		return put(tx, cur)
	})
}

func (d *Driver) run(ctx context.Context, id string, step Step, force bool) error {
	a := d.Actuator
	switch step {
	case StepCreateInstanceStore:
		return a.CreateInstanceStore(ctx, id)
	case StepStartVMM:
		return a.StartVMM(ctx, id)
	case StepStopVMM:
		return a.StopVMM(ctx, id, force)
	case StepRebootVMM:
		return a.RebootVMM(ctx, id)
	case StepEraseInstanceStore:
		return a.EraseInstanceStore(ctx, id)
	case StepReleaseResources:
		return a.ReleaseResources(ctx, id)
	}
	return fmt.Errorf("unknown step %q", step) // a record from a newer daemon
}

// Resume is what a daemon does on start: it finds every instance with an
// unfinished operation and drives it to its end. Instances are driven one
// after another; the errors of those that could not finish are joined.
func (d *Driver) Resume(ctx context.Context) error {
	var owed []string
	err := d.Store.View(func(tx store.Tx) error {
		all, err := List(tx)
		if err != nil {
			return err
		}
		for _, st := range all {
			if st.Op != nil {
				owed = append(owed, st.ID)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	var errs []error
	for _, id := range owed {
		if err := d.Drive(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
