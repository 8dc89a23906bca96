package vmm

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"gureum/vmm/kvm"
)

// State is a VM's lifecycle state as the socket API reports it.
type State string

// Lifecycle: created → running ⇄ paused → stopped. A reboot passes through
// running again without leaving the process.
const (
	StateCreated State = "created"
	StateRunning State = "running"
	StatePaused  State = "paused"
	StateStopped State = "stopped"
)

// Action is one of the closed set of things the API can ask of a VM.
type Action string

// Actions and the states they are legal in (see legalIn).
const (
	ActionPause      Action = "pause"
	ActionResume     Action = "resume"
	ActionShutdown   Action = "shutdown"     // Ctrl-Alt-Del, then stop after a deadline
	ActionReboot     Action = "reboot"       // reset the machine in place
	ActionStop       Action = "stop"         // end at once
	ActionCtrlAltDel Action = "ctrl_alt_del" // send the keys, nothing more
)

var legalIn = map[Action][]State{
	ActionPause:      {StateRunning},
	ActionResume:     {StatePaused},
	ActionShutdown:   {StateRunning, StatePaused},
	ActionReboot:     {StateRunning, StatePaused},
	ActionStop:       {StateCreated, StateRunning, StatePaused},
	ActionCtrlAltDel: {StateRunning},
}

// ErrIllegalState is returned for an action not legal in the VM's state.
var ErrIllegalState = errors.New("action not legal in this state")

// ErrUnknownAction is returned for an action outside the closed set.
var ErrUnknownAction = errors.New("unknown action")

// End is how a VM's run ended.
type End struct {
	Kind   EndKind
	Reason string
	At     time.Time
}

// VM is a virtual machine across its boots. Its methods are safe for
// concurrent use (the API goroutine calls them while Run runs).
type VM struct {
	cfg     Config
	sys     *kvm.System
	console *Console
	back    *backends
	drives  *driveSet // the virtio-blk drives (drives.go); own the disks

	mu        sync.Mutex // guards the fields below
	state     State
	m         *machine
	bootCount int
	started   time.Time
	end       *End
	// between is non-nil from a reboot (requested, or the old machine
	// torn down) until the next machine is up or the VM ends, when it is
	// closed: actions in that time wait for the next machine rather than
	// act on the one going away.
	between chan struct{}
	// ended is closed when the VM has ended for good (finish).
	ended chan struct{}
}

// New validates cfg and opens what outlives a single boot: /dev/kvm, the
// disks and the taps. console receives the guest's serial output.
func New(cfg Config, console *Console) (*VM, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sys, err := kvm.Open()
	if err != nil {
		return nil, err
	}
	installKickHandler()
	back, err := openBackends(cfg)
	if err != nil {
		sys.Close()
		return nil, err
	}
	drives := newDriveSet(cfg, back.disks)
	back.disks = nil // the drives own them now: attach, detach and snapshots replace them
	return &VM{cfg: cfg, sys: sys, console: console, back: back, drives: drives, state: StateCreated, ended: make(chan struct{})}, nil
}

// Close releases /dev/kvm and the backends. Call after Run returned.
func (v *VM) Close() error {
	v.drives.close()
	v.back.close()
	return v.sys.Close()
}

// Run boots the guest and runs it until it powers off, crashes, reboots
// with NoReboot set, or is stopped. A guest reboot otherwise rebuilds the
// machine in place and goes on.
func (v *VM) Run() (End, error) {
	for {
		v.mu.Lock()
		if v.state == StateStopped && v.end != nil { // stopped before boot
			end := *v.end
			v.mu.Unlock()
			return end, nil
		}
		v.mu.Unlock()
		m, err := v.boot()
		if err != nil {
			end := End{Kind: EndCrash, Reason: err.Error(), At: time.Now()}
			v.finish(end)
			return end, err
		}
		ev := <-m.events
		v.teardown(m)
		if ev.kind == EndReboot && (!v.cfg.NoReboot || ev.reason == rebootRequested) {
			continue
		}
		end := End{Kind: ev.kind, Reason: ev.reason, At: time.Now()}
		v.finish(end)
		return end, nil
	}
}

const rebootRequested = "reboot requested through the API"

func (v *VM) finish(end End) {
	v.mu.Lock()
	v.state = StateStopped
	v.end = &end
	v.endBetween()
	if v.ended != nil {
		close(v.ended)
		v.ended = nil
	}
	v.mu.Unlock()
}

// boot builds a machine and starts its vCPUs.
func (v *VM) boot() (*machine, error) {
	m, err := v.build()
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	v.m = m
	v.endBetween()
	v.bootCount++
	if v.bootCount == 1 {
		v.started = time.Now()
	}
	v.state = StateRunning
	v.mu.Unlock()
	for _, r := range m.vcpus {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			r.loop()
		}()
	}
	return m, nil
}

// teardown stops the vCPUs and releases the machine.
func (v *VM) teardown(m *machine) {
	m.stopping.Store(true)
	m.runMu.Lock()
	for _, r := range m.vcpus {
		close(r.resume) // release parked vCPUs
		r.resume = make(chan struct{})
	}
	m.runMu.Unlock()
	for _, r := range m.vcpus {
		r.kick()
	}
	// A vCPU may be waiting for the loop; the loop is still running, so
	// it will answer, and the vCPU then sees stopping.
	m.wg.Wait()
	v.mu.Lock()
	v.m = nil
	if v.between == nil {
		v.between = make(chan struct{})
	}
	v.mu.Unlock()
	m.close()
}

// endBetween wakes actions that waited for the machine after a reboot.
// Call with v.mu held.
func (v *VM) endBetween() {
	if v.between != nil {
		close(v.between)
		v.between = nil
	}
}

// rebootWait bounds how long an action waits for the machine a reboot is
// building.
const rebootWait = 30 * time.Second

// machineFor returns the running machine for an action, waiting while a
// reboot builds the next one (an action must not see the gap: a shutdown
// sent just after a reboot shuts the rebooted guest down). It returns nil
// with the state when there is no machine and none is coming.
func (v *VM) machineFor() (*machine, State, error) {
	deadline := time.NewTimer(rebootWait)
	defer deadline.Stop()
	for {
		v.mu.Lock()
		st, m, between := v.state, v.m, v.between
		v.mu.Unlock()
		if between == nil {
			return m, st, nil
		}
		select {
		case <-between:
		case <-deadline.C:
			return nil, st, fmt.Errorf("%w: the guest is still rebooting after %v", ErrIllegalState, rebootWait)
		}
	}
}

// State returns the lifecycle state and, once stopped, how the run ended.
func (v *VM) State() (State, *End) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.end == nil {
		return v.state, nil
	}
	e := *v.end
	return v.state, &e
}

// Do performs an action. shutdownTimeout applies to ActionShutdown.
func (v *VM) Do(a Action, shutdownTimeout time.Duration) error {
	states, ok := legalIn[a]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownAction, a)
	}
	m, st, err := v.machineFor()
	if err != nil {
		return err
	}
	v.mu.Lock()
	legal := false
	for _, s := range states {
		legal = legal || s == st
	}
	if !legal {
		v.mu.Unlock()
		return fmt.Errorf("%w: %s while %s", ErrIllegalState, a, st)
	}
	if a == ActionStop && m == nil { // not booted yet
		v.state = StateStopped
		v.end = &End{Kind: EndStopped, Reason: "stopped before boot", At: time.Now()}
		v.mu.Unlock()
		return nil
	}
	v.mu.Unlock()
	if m == nil {
		return fmt.Errorf("%w: %s while %s with no machine", ErrIllegalState, a, st)
	}
	switch a {
	case ActionPause:
		m.pause(5 * time.Second)
		v.setState(StatePaused)
	case ActionResume:
		m.resume()
		v.setState(StateRunning)
	case ActionStop:
		m.guestEvent(event{kind: EndStopped, reason: "stopped through the API"})
	case ActionReboot:
		v.mu.Lock()
		if v.between == nil {
			v.between = make(chan struct{})
		}
		v.mu.Unlock()
		m.guestEvent(event{kind: EndReboot, reason: rebootRequested})
	case ActionCtrlAltDel:
		return m.ctrlAltDel()
	case ActionShutdown:
		if st == StatePaused {
			m.resume()
			v.setState(StateRunning)
		}
		if err := m.ctrlAltDel(); err != nil {
			return err
		}
		v.mu.Lock()
		ended := v.ended
		v.mu.Unlock()
		go func() {
			// The deadline belongs to the VM, not to this machine: if the
			// guest reboots instead of powering off, the machine it
			// reboots into is stopped at the deadline.
			t := time.NewTimer(shutdownTimeout)
			defer t.Stop()
			select {
			case <-t.C:
				if m, _, _ := v.machineFor(); m != nil {
					m.guestEvent(event{kind: EndStopped, reason: fmt.Sprintf("guest did not power off within %v of Ctrl-Alt-Del", shutdownTimeout)})
				}
			case <-ended:
			}
		}()
	}
	return nil
}

func (v *VM) setState(s State) {
	v.mu.Lock()
	if v.state != StateStopped {
		v.state = s
	}
	v.mu.Unlock()
}

// pause takes every vCPU out of the guest and waits until all are parked,
// for at most wait: a vCPU stuck in a device access cannot park yet (it
// parks at its next exit), and the pause is reported all the same.
func (m *machine) pause(wait time.Duration) {
	m.runMu.Lock()
	m.paused = true
	m.runMu.Unlock()
	for _, r := range m.vcpus {
		r.pauseReq.Store(true)
		r.kick()
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for _, r := range m.vcpus {
		select {
		case <-r.parked:
		case <-m.loop.done:
			return
		case <-deadline.C:
			return
		}
	}
}

// resume lets parked vCPUs back into the guest.
func (m *machine) resume() {
	m.runMu.Lock()
	m.paused = false
	for _, r := range m.vcpus {
		r.pauseReq.Store(false)
		r.cpu.SetImmediateExit(false)
		close(r.resume)
		r.resume = make(chan struct{})
	}
	m.runMu.Unlock()
}
