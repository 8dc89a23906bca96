// Package lifecycle is the instance state machine of EC2, and the
// machinery that makes every transition durable before it is carried out.
//
// # States and actions
//
// An instance is in one of six states (pending, running, stopping, stopped,
// shutting-down, terminated). Things happen to it through a closed set of
// actions: requests from users (Start, Stop, Reboot, Terminate) and events
// the daemon observes (the guest powered off or rebooted, the VMM died,
// the start failed, the terminated record expired). One table, transitions
// below, says for every action in which states it is legal and what it
// does there; anything not in the table is IncorrectInstanceState.
//
// # Persist, then act
//
// A legal action either changes nothing (EC2 answers "already running" with
// success) or begins an Operation: a short list of idempotent steps (create
// the instance store, start the VMM, stop it, erase the store, release
// resources) and the state the instance reaches when they are done. The
// caller writes the new state and the operation in one store transaction
// (Request, Launch) and only then does the work (Driver.Drive), which
// records each finished step before starting the next. A daemon killed at
// any point finds the unfinished operation in the store on restart
// (Driver.Resume) and carries on from the first step not recorded as
// done. A step that had run but was not yet recorded runs again, which is
// why every Actuator method must be idempotent.
package lifecycle

import (
	"fmt"

	"gureum/api"
)

// State is an instance's lifecycle state, named as EC2 names it.
type State string

// The six instance states.
const (
	Pending      State = api.StateNamePending
	Running      State = api.StateNameRunning
	Stopping     State = api.StateNameStopping
	Stopped      State = api.StateNameStopped
	ShuttingDown State = api.StateNameShuttingDown
	Terminated   State = api.StateNameTerminated
)

// States lists every state, in EC2 code order.
var States = []State{Pending, Running, ShuttingDown, Terminated, Stopping, Stopped}

var stateCodes = map[State]int{
	Pending:      api.StateCodePending,
	Running:      api.StateCodeRunning,
	ShuttingDown: api.StateCodeShuttingDown,
	Terminated:   api.StateCodeTerminated,
	Stopping:     api.StateCodeStopping,
	Stopped:      api.StateCodeStopped,
}

// API returns the state as the wire type {code, name}.
func (s State) API() api.InstanceState {
	return api.InstanceState{Code: stateCodes[s], Name: string(s)}
}

// Action is something that happens to an instance.
type Action string

// User requests.
const (
	Start     Action = "start"
	Stop      Action = "stop"
	Reboot    Action = "reboot"
	Terminate Action = "terminate"
)

// Events the daemon observes and feeds to the state machine.
const (
	// GuestPoweroff: the guest powered itself off (ACPI S5).
	GuestPoweroff Action = "guest-poweroff"
	// GuestReboot: the guest rebooted; the VMM restarts it in place.
	GuestReboot Action = "guest-reboot"
	// VMMExited: the VMM process ended without being asked to.
	VMMExited Action = "vmm-exited"
	// StartFailed: the VMM could not be started (bad image, no capacity).
	StartFailed Action = "start-failed"
	// Expire: a terminated instance's hour of visibility is over.
	Expire Action = "expire"
)

// Actions lists every action.
var Actions = []Action{Start, Stop, Reboot, Terminate, GuestPoweroff, GuestReboot, VMMExited, StartFailed, Expire}

// effect is what a legal action does in a given state.
type effect int

const (
	// keep: legal, nothing changes. EC2 answers such requests (start a
	// running instance, stop a stopped one) with success and the state as
	// it is.
	keep effect = iota + 1
	// beginStart, beginStop, beginReboot, beginTerminate begin that
	// operation, replacing any operation in progress.
	beginStart
	beginStop
	beginReboot
	beginTerminate
	// halt: the instance went down on its own. It stops if it can be
	// stopped and its shutdown behaviour says stop, else it terminates.
	halt
	// abortStart: a start did not come up. A first launch terminates; a
	// restart of a stopped instance goes back to stopped.
	abortStart
	// remove: the record is deleted.
	remove
)

// transitions is the state machine: for each action, the states in which
// it is legal and its effect there. It is the only place that decides
// legality; Decide reads it and the tests check every cell.
var transitions = map[Action]map[State]effect{
	Start:     {Stopped: beginStart, Pending: keep, Running: keep},
	Stop:      {Running: beginStop, Stopping: keep, Stopped: keep},
	Reboot:    {Running: beginReboot},
	Terminate: {Pending: beginTerminate, Running: beginTerminate, Stopping: beginTerminate, Stopped: beginTerminate, ShuttingDown: keep, Terminated: keep},

	GuestPoweroff: {Pending: halt, Running: halt, Stopping: keep, ShuttingDown: keep},
	GuestReboot:   {Running: keep},
	// A VMM that exits while being stopped, or after, is expected.
	VMMExited:   {Pending: abortStart, Running: halt, Stopping: keep, Stopped: keep, ShuttingDown: keep, Terminated: keep},
	StartFailed: {Pending: abortStart},
	Expire:      {Terminated: remove},
}

// incorrectState is the error of an action that is not legal in the
// instance's state, worded as EC2 words it.
func incorrectState(st *Status, a Action) *api.Error {
	var msg string
	switch a {
	case Start:
		msg = fmt.Sprintf("The instance '%s' is not in a state from which it can be started.", st.ID)
	case Stop:
		if st.State == Pending && st.Op != nil && st.Op.Kind == OpLaunch {
			msg = fmt.Sprintf("Instance '%s' cannot be stopped as it has never reached the 'running' state.", st.ID)
		} else {
			msg = fmt.Sprintf("The instance '%s' is not in a state from which it can be stopped.", st.ID)
		}
	case Reboot:
		msg = fmt.Sprintf("The instance '%s' is not in a state from which it can be rebooted.", st.ID)
	case Terminate:
		msg = fmt.Sprintf("The instance '%s' is not in a state from which it can be terminated.", st.ID)
	default:
		msg = fmt.Sprintf("The instance '%s' is in state '%s', where the event '%s' does not apply.", st.ID, st.State, a)
	}
	return &api.Error{Code: api.CodeIncorrectInstanceState, Message: msg}
}

// notStoppable is the error of a stop of an instance whose root device is
// not an EBS volume: there would be nothing to start again from.
func notStoppable(st *Status) *api.Error {
	return api.Errorf(api.CodeIncorrectInstanceState,
		"The instance '%s' does not have an 'ebs' root device type and cannot be stopped.", st.ID)
}
