package lifecycle

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"gureum/api"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// statusIn builds an EBS-backed instance at state s, with the operation
// that state implies in the running daemon.
func statusIn(s State) *Status {
	st := &Status{ID: "i-0123456789abcdef0", State: s, RootDeviceType: api.RootDeviceEBS,
		ShutdownBehavior: api.ShutdownStop, LaunchTime: t0, ChangedAt: t0, LastSeq: 1}
	switch s {
	case Pending:
		st.Op = newOperation(OpLaunch, 1, false)
	case Stopping:
		st.Op = newOperation(OpStop, 1, false)
	case ShuttingDown:
		st.Op = newOperation(OpTerminate, 1, false)
	case Terminated:
		st.TerminatedAt = t0
	}
	return st
}

// want is the expected outcome of an action in a state: the state after,
// the operation begun ("" for none), or an error ("E"), or "gone".
type want struct {
	state State
	op    OpKind
}

var (
	illegal = want{state: "E"}
	gone    = want{state: "gone"}
)

// expected is written out cell by cell, independently of the table in
// state.go, from EC2's documented lifecycle.
var expected = map[Action]map[State]want{
	Start: {Pending: {Pending, ""}, Running: {Running, ""}, Stopping: illegal,
		Stopped: {Pending, OpStart}, ShuttingDown: illegal, Terminated: illegal},
	Stop: {Pending: illegal, Running: {Stopping, OpStop}, Stopping: {Stopping, ""},
		Stopped: {Stopped, ""}, ShuttingDown: illegal, Terminated: illegal},
	Reboot: {Pending: illegal, Running: {Running, OpReboot}, Stopping: illegal,
		Stopped: illegal, ShuttingDown: illegal, Terminated: illegal},
	Terminate: {Pending: {ShuttingDown, OpTerminate}, Running: {ShuttingDown, OpTerminate},
		Stopping: {ShuttingDown, OpTerminate}, Stopped: {ShuttingDown, OpTerminate},
		ShuttingDown: {ShuttingDown, ""}, Terminated: {Terminated, ""}},
	GuestPoweroff: {Pending: {Stopping, OpStop}, Running: {Stopping, OpStop}, Stopping: {Stopping, ""},
		Stopped: illegal, ShuttingDown: {ShuttingDown, ""}, Terminated: illegal},
	GuestReboot: {Pending: illegal, Running: {Running, ""}, Stopping: illegal,
		Stopped: illegal, ShuttingDown: illegal, Terminated: illegal},
	VMMExited: {Pending: {ShuttingDown, OpTerminate}, Running: {Stopping, OpStop}, Stopping: {Stopping, ""},
		Stopped: {Stopped, ""}, ShuttingDown: {ShuttingDown, ""}, Terminated: {Terminated, ""}},
	StartFailed: {Pending: {ShuttingDown, OpTerminate}, Running: illegal, Stopping: illegal,
		Stopped: illegal, ShuttingDown: illegal, Terminated: illegal},
	Expire: {Pending: illegal, Running: illegal, Stopping: illegal,
		Stopped: illegal, ShuttingDown: illegal, Terminated: gone},
}

// EC2's wording of IncorrectInstanceState for the user actions.
var messages = map[Action]string{
	Start:     "The instance 'i-0123456789abcdef0' is not in a state from which it can be started.",
	Stop:      "The instance 'i-0123456789abcdef0' is not in a state from which it can be stopped.",
	Reboot:    "The instance 'i-0123456789abcdef0' is not in a state from which it can be rebooted.",
	Terminate: "The instance 'i-0123456789abcdef0' is not in a state from which it can be terminated.",
}

func TestEveryActionInEveryState(t *testing.T) {
	if len(expected) != len(Actions) {
		t.Fatalf("expected covers %d actions of %d", len(expected), len(Actions))
	}
	for _, a := range Actions {
		for _, s := range States {
			t.Run(fmt.Sprintf("%s/%s", a, s), func(t *testing.T) {
				w, ok := expected[a][s]
				if !ok {
					t.Fatal("cell missing from the expected table")
				}
				st := statusIn(s)
				ch, err := Decide(st, a, Options{}, t0.Add(2*time.Hour))
				switch w {
				case illegal:
					if err == nil {
						t.Fatalf("legal, went to %s", ch.Current)
					}
					if api.CodeOf(err) != api.CodeIncorrectInstanceState {
						t.Fatalf("code %s", api.CodeOf(err))
					}
					msg := err.(*api.Error).Message
					if m, ok := messages[a]; ok && !(a == Stop && s == Pending) && msg != m {
						t.Errorf("message %q, want %q", msg, m)
					}
					if st.State != s {
						t.Errorf("a refused action changed the state to %s", st.State)
					}
					return
				case gone:
					if err != nil || !ch.Removed {
						t.Fatalf("not removed: %v %+v", err, ch)
					}
					return
				}
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if ch.Previous != s || ch.Current != w.state || st.State != w.state {
					t.Errorf("%s → %s (status %s), want %s", ch.Previous, ch.Current, st.State, w.state)
				}
				gotOp := OpKind("")
				if ch.Op != nil {
					gotOp = ch.Op.Kind
				}
				if gotOp != w.op {
					t.Errorf("operation %q, want %q", gotOp, w.op)
				}
				if ch.Op != nil && (ch.Op.Done != 0 || ch.Op.Final != opPlan[ch.Op.Kind].final) {
					t.Errorf("new operation %+v", ch.Op)
				}
			})
		}
	}
}

func TestStopOfPendingSaysNeverRunning(t *testing.T) {
	_, err := Decide(statusIn(Pending), Stop, Options{}, t0)
	if err == nil || !strings.Contains(err.Error(), "cannot be stopped as it has never reached the 'running' state") {
		t.Errorf("got %v", err)
	}
	st := statusIn(Pending)
	st.Op = newOperation(OpStart, 2, false) // a restart, not a first launch
	_, err = Decide(st, Stop, Options{}, t0)
	if err == nil || err.(*api.Error).Message != messages[Stop] {
		t.Errorf("got %v", err)
	}
}

func TestInstanceStoreBackedCannotStop(t *testing.T) {
	st := statusIn(Running)
	st.RootDeviceType = api.RootDeviceInstanceStore
	_, err := Decide(st, Stop, Options{}, t0)
	if api.CodeOf(err) != api.CodeIncorrectInstanceState ||
		err.(*api.Error).Message != "The instance 'i-0123456789abcdef0' does not have an 'ebs' root device type and cannot be stopped." {
		t.Fatalf("got %v", err)
	}
	if st.State != Running || st.Op != nil {
		t.Errorf("refused stop changed the status: %+v", st)
	}
	// A poweroff from inside such an instance terminates it.
	ch, err := Decide(st, GuestPoweroff, Options{}, t0)
	if err != nil || ch.Current != ShuttingDown || ch.Op.Kind != OpTerminate {
		t.Errorf("poweroff of an instance-store instance: %+v %v", ch, err)
	}
}

func TestGuestPoweroffFollowsShutdownBehavior(t *testing.T) {
	st := statusIn(Running)
	st.ShutdownBehavior = api.ShutdownTerminate
	ch, err := Decide(st, GuestPoweroff, Options{}, t0)
	if err != nil || ch.Current != ShuttingDown || ch.Op.Kind != OpTerminate {
		t.Fatalf("got %+v %v", ch, err)
	}
	if st.Reason == nil || st.Reason.Code != "Client.InstanceInitiatedShutdown" {
		t.Errorf("reason %+v", st.Reason)
	}
	st = statusIn(Running)
	if _, err := Decide(st, GuestPoweroff, Options{}, t0); err != nil || st.State != Stopping ||
		st.Reason.Code != "Client.InstanceInitiatedShutdown" {
		t.Errorf("stop behaviour: %+v %v", st, err)
	}
}

func TestFailedRestartGoesBackToStopped(t *testing.T) {
	for _, a := range []Action{StartFailed, VMMExited} {
		st := statusIn(Pending)
		st.Op = newOperation(OpStart, 2, false)
		ch, err := Decide(st, a, Options{Detail: string(api.CodeInsufficientInstanceCapacity)}, t0)
		if err != nil || ch.Current != Stopping || ch.Op.Kind != OpStop || ch.Op.Final != Stopped {
			t.Errorf("%s: %+v %v", a, ch, err)
		}
		if st.Reason == nil || st.Reason.Code != "Server.InsufficientInstanceCapacity" {
			t.Errorf("%s: reason %+v", a, st.Reason)
		}
	}
}

func TestUserStopRecordsReasonAndStartClearsIt(t *testing.T) {
	st := statusIn(Running)
	now := t0.Add(90 * time.Second)
	if _, err := Decide(st, Stop, Options{}, now); err != nil {
		t.Fatal(err)
	}
	if st.Reason.Code != "Client.UserInitiatedShutdown" || st.TransitionReason != "User initiated (2025-03-01 12:01:30 GMT)" {
		t.Errorf("reason %+v %q", st.Reason, st.TransitionReason)
	}
	finish(st, now)
	if _, err := Decide(st, Start, Options{}, now); err != nil {
		t.Fatal(err)
	}
	if st.Reason != nil {
		t.Errorf("start kept reason %+v", st.Reason)
	}
}

func TestForcedStopUpgradesAStopUnderWay(t *testing.T) {
	st := statusIn(Stopping)
	ch, err := Decide(st, Stop, Options{Force: true}, t0)
	if err != nil || ch.Current != Stopping || ch.Op == nil || !st.Op.Force || st.Op.Seq != 1 {
		t.Errorf("got %+v %v, op %+v", ch, err, st.Op)
	}
}

func TestExpireWaitsAnHour(t *testing.T) {
	st := statusIn(Terminated)
	if _, err := Decide(st, Expire, Options{}, t0.Add(59*time.Minute)); err == nil {
		t.Error("expired after 59 minutes")
	}
	if ch, err := Decide(st, Expire, Options{}, t0.Add(time.Hour)); err != nil || !ch.Removed {
		t.Errorf("not expired after an hour: %v", err)
	}
}

func TestStateCodesAreEC2s(t *testing.T) {
	want := map[State]int{Pending: 0, Running: 16, ShuttingDown: 32, Terminated: 48, Stopping: 64, Stopped: 80}
	for s, c := range want {
		if got := s.API(); got.Code != c || got.Name != string(s) {
			t.Errorf("%s: %+v", s, got)
		}
	}
}
