package lifecycle

// OpKind names an operation.
type OpKind string

// Operations. Launch and Start differ only in what a failure does: a
// failed first launch terminates the instance, a failed restart leaves it
// stopped.
const (
	OpLaunch    OpKind = "launch"
	OpStart     OpKind = "start"
	OpStop      OpKind = "stop"
	OpReboot    OpKind = "reboot"
	OpTerminate OpKind = "terminate"
)

// Step is one unit of work of an operation, carried out by the Actuator.
type Step string

// Steps. Each maps to one Actuator method.
const (
	StepCreateInstanceStore Step = "create-instance-store"
	StepStartVMM            Step = "start-vmm"
	StepStopVMM             Step = "stop-vmm"
	StepRebootVMM           Step = "reboot-vmm"
	StepEraseInstanceStore  Step = "erase-instance-store"
	StepReleaseResources    Step = "release-resources"
)

// opPlan is each operation's steps, the state it shows while they run and
// the state it reaches when they are done.
var opPlan = map[OpKind]struct {
	during, final State
	steps         []Step
}{
	OpLaunch:    {Pending, Running, []Step{StepCreateInstanceStore, StepStartVMM}},
	OpStart:     {Pending, Running, []Step{StepCreateInstanceStore, StepStartVMM}},
	OpStop:      {Stopping, Stopped, []Step{StepStopVMM, StepEraseInstanceStore}},
	OpReboot:    {Running, Running, []Step{StepRebootVMM}},
	OpTerminate: {ShuttingDown, Terminated, []Step{StepStopVMM, StepEraseInstanceStore, StepReleaseResources}},
}

// Operation is the work an instance's last transition still owes. It is
// stored with the instance's Status, so that the work survives a restart.
type Operation struct {
	Kind OpKind `json:"kind"`
	// Seq tells operations of one instance apart: a driver that finished
	// a step of an operation that was meanwhile replaced does not record
	// the step against the new one.
	Seq   uint64 `json:"seq"`
	Steps []Step `json:"steps"`
	// Done counts the steps known to be finished.
	Done int `json:"done"`
	// Final is the state reached when every step is done.
	Final State `json:"final"`
	// Force asks StopVMM to kill the VMM rather than ask the guest to
	// power off.
	Force bool `json:"force,omitempty"`
}

func newOperation(kind OpKind, seq uint64, force bool) *Operation {
	p := opPlan[kind]
	return &Operation{Kind: kind, Seq: seq, Steps: append([]Step(nil), p.steps...), Final: p.final, Force: force}
}
