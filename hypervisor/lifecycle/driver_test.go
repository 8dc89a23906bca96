package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"testing"
	"time"

	"gureum/api"
	"gureum/hypervisor/store"
)

var errCrash = errors.New("daemon killed")

// world is a fake host: which VMMs run, which instance stores exist, which
// instances gave their resources back. It can "kill the daemon" at its
// crashAt-th call, either before the call's effect or after it (the
// effect happened but the daemon never recorded it).
type world struct {
	vmm, disk, released map[string]bool
	calls               int
	crashAt             int
	crashAfter          bool
	failStart           error // returned by StartVMM when set
}

func newWorld() *world {
	return &world{vmm: map[string]bool{}, disk: map[string]bool{}, released: map[string]bool{}}
}

func (w *world) do(effect func()) error {
	w.calls++
	if w.calls == w.crashAt {
		if w.crashAfter {
			effect()
		}
		return errCrash
	}
	effect()
	return nil
}

func (w *world) CreateInstanceStore(_ context.Context, id string) error {
	return w.do(func() { w.disk[id] = true })
}
func (w *world) StartVMM(_ context.Context, id string) error {
	if w.failStart != nil {
		w.calls++
		return w.failStart
	}
	return w.do(func() { w.vmm[id] = true })
}
func (w *world) StopVMM(_ context.Context, id string, _ bool) error {
	return w.do(func() { delete(w.vmm, id) })
}
func (w *world) RebootVMM(_ context.Context, id string) error {
	return w.do(func() {})
}
func (w *world) EraseInstanceStore(_ context.Context, id string) error {
	return w.do(func() { delete(w.disk, id) })
}
func (w *world) ReleaseResources(_ context.Context, id string) error {
	return w.do(func() { w.released[id] = true })
}

func (w *world) same(o *world) bool {
	return maps.Equal(w.vmm, o.vmm) && maps.Equal(w.disk, o.disk) && maps.Equal(w.released, o.released)
}

func (w *world) String() string {
	return fmt.Sprintf("vmm=%v disk=%v released=%v", w.vmm, w.disk, w.released)
}

const id = "i-0123456789abcdef0"

func launch(t *testing.T, d *Driver, rootDevice, behaviour string) {
	t.Helper()
	err := d.Store.Update(func(tx store.Tx) error {
		_, err := Launch(tx, Status{ID: id, RootDeviceType: rootDevice, ShutdownBehavior: behaviour}, d.now())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func status(t *testing.T, s store.Store) *Status {
	t.Helper()
	var st *Status
	if err := s.View(func(tx store.Tx) error {
		var err error
		st, err = Get(tx, id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return st
}

// scenario is a setup that brings the instance to rest in some state
// without crashes, and an act under test: requests persisted, then driven.
type scenario struct {
	name  string
	setup func(t *testing.T, d *Driver, w *world)
	act   func(t *testing.T, d *Driver, w *world) // persists requests only
	final State
}

func running(t *testing.T, d *Driver, w *world) {
	launch(t, d, api.RootDeviceEBS, api.ShutdownStop)
	if err := d.Drive(context.Background(), id); err != nil {
		t.Fatal(err)
	}
}

func request(a Action) func(t *testing.T, d *Driver, w *world) {
	return func(t *testing.T, d *Driver, w *world) {
		if _, err := d.Request(id, a, Options{}); err != nil {
			t.Fatal(err)
		}
	}
}

var scenarios = []scenario{
	{"launch", func(*testing.T, *Driver, *world) {}, func(t *testing.T, d *Driver, w *world) {
		launch(t, d, api.RootDeviceEBS, api.ShutdownStop)
	}, Running},
	{"stop", running, request(Stop), Stopped},
	{"start", func(t *testing.T, d *Driver, w *world) {
		running(t, d, w)
		request(Stop)(t, d, w)
		if err := d.Drive(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}, request(Start), Running},
	{"reboot", running, request(Reboot), Running},
	{"terminate", running, request(Terminate), Terminated},
	{"guest-poweroff", running, func(t *testing.T, d *Driver, w *world) {
		delete(w.vmm, id) // the VMM ended with the guest
		request(GuestPoweroff)(t, d, w)
	}, Stopped},
	{"guest-poweroff-terminates", func(t *testing.T, d *Driver, w *world) {
		launch(t, d, api.RootDeviceEBS, api.ShutdownTerminate)
		if err := d.Drive(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}, func(t *testing.T, d *Driver, w *world) {
		delete(w.vmm, id)
		request(GuestPoweroff)(t, d, w)
	}, Terminated},
	{"vmm-died", running, func(t *testing.T, d *Driver, w *world) {
		delete(w.vmm, id)
		request(VMMExited)(t, d, w)
	}, Stopped},
	{"terminate-during-stop", running, func(t *testing.T, d *Driver, w *world) {
		request(Stop)(t, d, w)
		request(Terminate)(t, d, w)
	}, Terminated},
}

type env struct {
	path string
	s    *store.Bolt
	w    *world
	d    *Driver
}

func newEnv(t *testing.T) *env {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := store.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld()
	clock := t0
	return &env{path: path, s: s, w: w, d: &Driver{Store: s, Actuator: w, Now: func() time.Time {
		clock = clock.Add(time.Second)
		return clock
	}}}
}

// restart closes the store as a dying daemon would and opens it again
// with a new driver on the same host.
func (e *env) restart(t *testing.T) {
	if err := e.s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := store.OpenBolt(e.path)
	if err != nil {
		t.Fatal(err)
	}
	e.s = s
	e.d = &Driver{Store: s, Actuator: e.w, Now: e.d.Now}
}

// TestCrashAtEveryStep kills the daemon before and after every actuator
// call of each scenario, restarts it, and checks that Resume converges on
// the same instance state and the same host as an uninterrupted run.
func TestCrashAtEveryStep(t *testing.T) {
	ctx := context.Background()
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			ref := newEnv(t)
			sc.setup(t, ref.d, ref.w)
			ref.w.calls = 0
			sc.act(t, ref.d, ref.w)
			if err := ref.d.Drive(ctx, id); err != nil {
				t.Fatal(err)
			}
			steps := ref.w.calls
			refSt := status(t, ref.s)
			if refSt.State != sc.final || refSt.Op != nil {
				t.Fatalf("uninterrupted run ends %s op %+v, want %s", refSt.State, refSt.Op, sc.final)
			}
			ref.s.Close()

			// crashAt 0: the daemon dies right after persisting the
			// request, before any work.
			for crashAt := 0; crashAt <= steps; crashAt++ {
				for _, after := range []bool{false, true} {
					if crashAt == 0 && after {
						continue
					}
					e := newEnv(t)
					sc.setup(t, e.d, e.w)
					e.w.calls = 0
					sc.act(t, e.d, e.w)
					if crashAt > 0 {
						e.w.crashAt, e.w.crashAfter = crashAt, after
						if err := e.d.Drive(ctx, id); !errors.Is(err, errCrash) {
							t.Fatalf("crash %d: drive returned %v", crashAt, err)
						}
					}
					e.restart(t)
					if err := e.d.Resume(ctx); err != nil {
						t.Fatalf("crash %d after=%v: resume: %v", crashAt, after, err)
					}
					st := status(t, e.s)
					if st.State != refSt.State || st.Op != nil {
						t.Errorf("crash %d after=%v: state %s op %+v, want %s", crashAt, after, st.State, st.Op, refSt.State)
					}
					if !e.w.same(ref.w) {
						t.Errorf("crash %d after=%v: host %v, want %v", crashAt, after, e.w, ref.w)
					}
					e.s.Close()
				}
			}
		})
	}
}

func TestPermanentStartFailureTerminatesFirstLaunch(t *testing.T) {
	e := newEnv(t)
	defer e.s.Close()
	e.w.failStart = Permanent(api.Errorf(api.CodeInsufficientInstanceCapacity, "host full"))
	launch(t, e.d, api.RootDeviceEBS, api.ShutdownStop)
	if err := e.d.Drive(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	st := status(t, e.s)
	if st.State != Terminated || st.Reason == nil || st.Reason.Code != "Server.InsufficientInstanceCapacity" {
		t.Errorf("status %+v reason %+v", st, st.Reason)
	}
	if e.w.disk[id] || !e.w.released[id] {
		t.Errorf("host after failed launch: %v", e.w)
	}
}

func TestPermanentStartFailureLeavesRestartStopped(t *testing.T) {
	e := newEnv(t)
	defer e.s.Close()
	running(t, e.d, e.w)
	request(Stop)(t, e.d, e.w)
	if err := e.d.Drive(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	e.w.failStart = Permanent(errors.New("kernel not found"))
	request(Start)(t, e.d, e.w)
	if err := e.d.Drive(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	st := status(t, e.s)
	if st.State != Stopped || st.Reason == nil || st.Reason.Code != "Server.InternalError" || e.w.released[id] {
		t.Errorf("status %+v reason %+v host %v", st, st.Reason, e.w)
	}
}

func TestTransientFailureIsRetriedByResume(t *testing.T) {
	e := newEnv(t)
	defer e.s.Close()
	e.w.failStart = errors.New("socket not ready")
	launch(t, e.d, api.RootDeviceEBS, api.ShutdownStop)
	if err := e.d.Drive(context.Background(), id); err == nil {
		t.Fatal("a failing step reported success")
	}
	if st := status(t, e.s); st.State != Pending || st.Op == nil || st.Op.Done != 1 {
		t.Fatalf("after a transient failure: %+v", st)
	}
	e.w.failStart = nil
	if err := e.d.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := status(t, e.s); st.State != Running || !e.w.vmm[id] {
		t.Errorf("after resume: %+v %v", st, e.w)
	}
}

func TestRequestErrorsAndNoops(t *testing.T) {
	e := newEnv(t)
	defer e.s.Close()
	if _, err := e.d.Request(id, Start, Options{}); api.CodeOf(err) != api.CodeInvalidInstanceIDNotFound {
		t.Errorf("unknown instance: %v", err)
	}
	running(t, e.d, e.w)
	before := status(t, e.s)
	ch, err := e.d.Request(id, Start, Options{})
	if err != nil || ch.Op != nil || ch.API().CurrentState.Code != 16 || ch.API().PreviousState.Name != "running" {
		t.Errorf("start of a running instance: %+v %v", ch, err)
	}
	if _, err := e.d.Request(id, GuestReboot, Options{}); err != nil {
		t.Errorf("guest reboot: %v", err)
	}
	if after := status(t, e.s); *after != *before {
		t.Errorf("no-op requests changed the record: %+v → %+v", before, after)
	}
	if _, err := e.d.Request(id, Expire, Options{}); api.CodeOf(err) != api.CodeIncorrectInstanceState {
		t.Errorf("expire of a running instance: %v", err)
	}
}

func TestSweepRemovesTerminatedAfterAnHour(t *testing.T) {
	e := newEnv(t)
	defer e.s.Close()
	running(t, e.d, e.w)
	request(Terminate)(t, e.d, e.w)
	if err := e.d.Drive(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	terminatedAt := status(t, e.s).TerminatedAt
	sweep := func(at time.Time) []string {
		var gone []string
		if err := e.s.Update(func(tx store.Tx) error {
			var err error
			gone, err = Sweep(tx, at)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return gone
	}
	if gone := sweep(terminatedAt.Add(Retention - time.Second)); len(gone) != 0 {
		t.Fatalf("swept early: %v", gone)
	}
	if st := status(t, e.s); st.State != Terminated {
		t.Fatalf("terminated instance not visible: %+v", st)
	}
	if gone := sweep(terminatedAt.Add(Retention)); len(gone) != 1 || gone[0] != id {
		t.Fatalf("swept %v", gone)
	}
	err := e.s.View(func(tx store.Tx) error { _, err := Get(tx, id); return err })
	if api.CodeOf(err) != api.CodeInvalidInstanceIDNotFound {
		t.Errorf("after sweep: %v", err)
	}
}
