package service

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gureum/api"
	"gureum/hypervisor/instancetype"
	"gureum/hypervisor/lifecycle"
	"gureum/storage"
	"gureum/vmm/vmmtest"
)

// fakeClock is a clock the test moves by hand, for billing to the second.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// openTest opens a service on a fresh data directory with real VMMs, in
// a cgroup parent of the test's own. Instances left running are killed at
// cleanup.
func openTest(t *testing.T, clock func() time.Time) *Service {
	t.Helper()
	vmmtest.RequireKVM(t)
	vmmtest.RequireRoot(t)
	dir := t.TempDir()
	vmmtest.CleanupCgroups(t, fmt.Sprintf("gureum-svc-test-%d", os.Getpid()))
	cfg := Config{
		DataDir: dir, VMM: vmmtest.Bin(t, "gureum-vmm"),
		Host:              instancetype.Host{VCPUs: 2, MemoryGiB: 4, CPUOvercommit: 40, MemoryOvercommit: 100},
		MaxGuestMemoryMiB: 64, MaxGuestVCPUs: 1, StopTimeout: 5 * time.Second,
		ReconcileEvery: 200 * time.Millisecond, CreditEvery: time.Hour,
		CgroupName: fmt.Sprintf("gureum-svc-test-%d", os.Getpid()), CgroupNested: true, Now: clock,
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, in := range s.sup.List() {
			s.sup.Kill(in.ID)
			s.sup.Wait(context.Background(), in.ID)
		}
		cpu, mem := s.CgroupParents()
		s.Close()
		os.Remove(cpu)
		os.Remove(mem)
	})
	return s
}

func testImage(t *testing.T, cmdline string) *api.ImageSpec {
	return &api.ImageSpec{Kernel: vmmtest.Bin(t, "testguest.elf"), Cmdline: cmdline}
}

// waitState waits until the instance is in want.
func waitState(t *testing.T, s *Service, id string, want lifecycle.State) api.Instance {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var in api.Instance
	for time.Now().Before(deadline) {
		var err error
		in, err = s.Instance(Admin, id)
		if err != nil {
			t.Fatal(err)
		}
		if in.State.Name == string(want) {
			return in
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: state %s, want %s (reason %+v)", id, in.State.Name, want, in.StateReason)
	return in
}

func wantCode(t *testing.T, err error, code api.Code) {
	t.Helper()
	if api.CodeOf(err) != code || err == nil {
		t.Fatalf("got %v, want %s", err, code)
	}
}

func TestLifecycleThroughService(t *testing.T) {
	s := openTest(t, nil)
	res, err := s.RunInstances(context.Background(), Admin, api.RunInstancesRequest{
		Image: testImage(t, ""), InstanceType: "i3.large", Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Instances[0].InstanceID
	if res.Instances[0].State.Name != "pending" {
		t.Errorf("launch answered %s", res.Instances[0].State.Name)
	}
	// Illegal while pending.
	_, err = s.Stop(Admin, id, api.StopRequest{})
	wantCode(t, err, api.CodeIncorrectInstanceState)
	in := waitState(t, s, id, lifecycle.Running)
	if len(in.BlockDevices) != 1 || in.RootDeviceType != "ebs" || in.InstanceStoreGB != 475 {
		t.Fatalf("describe: %+v", in)
	}
	_, err = s.Start(Admin, id) // no-op on running
	if err != nil {
		t.Fatal(err)
	}
	// The guest's console through the API.
	waitConsole(t, s, id, "gureum-testguest: ready")

	// Data: write to the root volume (by its file, while the guest idles)
	// and to the instance store; stop; the first stays, the second goes.
	vol := in.BlockDevices[0].VolumeID
	isPath := filepath.Join(s.cfg.DataDir, instanceStoreDir, id+".img")
	writeAt(t, isPath, "raw", "ephemeral")
	ch, err := s.Stop(Admin, id, api.StopRequest{})
	if err != nil || ch.CurrentState.Name != "stopping" {
		t.Fatalf("stop: %+v %v", ch, err)
	}
	_, err = s.Reboot(Admin, id)
	wantCode(t, err, api.CodeIncorrectInstanceState)
	waitState(t, s, id, lifecycle.Stopped)
	if _, err := os.Stat(isPath); !os.IsNotExist(err) {
		t.Fatalf("instance store survived the stop: %v", err)
	}
	volPath, _ := s.volumes.Path(vol)
	writeAt(t, volPath, "qcow2", "persistent")
	_, err = s.Reboot(Admin, id)
	wantCode(t, err, api.CodeIncorrectInstanceState)
	if _, err := s.Start(Admin, id); err != nil {
		t.Fatal(err)
	}
	waitState(t, s, id, lifecycle.Running)
	if got := readAt(t, isPath, "raw", 9); got != strings.Repeat("\x00", 9) {
		t.Errorf("instance store after start: %q", got)
	}
	if got := readAt(t, volPath, "qcow2", 10); got != "persistent" {
		t.Errorf("root volume after start: %q", got)
	}
	if _, err := s.Reboot(Admin, id); err != nil {
		t.Fatal(err)
	}
	waitState(t, s, id, lifecycle.Running)
	if _, err := s.Terminate(Admin, id, api.StopRequest{}); err != nil {
		t.Fatal(err)
	}
	in = waitState(t, s, id, lifecycle.Terminated)
	if in.StateReason == nil || in.StateReason.Code != "Client.UserInitiatedShutdown" {
		t.Errorf("reason: %+v", in.StateReason)
	}
	for _, f := range []func() (api.StateChange, error){
		func() (api.StateChange, error) { return s.Start(Admin, id) },
		func() (api.StateChange, error) { return s.Stop(Admin, id, api.StopRequest{}) },
		func() (api.StateChange, error) { return s.Reboot(Admin, id) },
	} {
		_, err := f()
		wantCode(t, err, api.CodeIncorrectInstanceState)
	}
	if _, err := s.Terminate(Admin, id, api.StopRequest{}); err != nil {
		t.Errorf("terminate of terminated: %v", err)
	}
	if _, err := s.volumes.Volume(vol); err == nil {
		t.Error("root volume survived termination")
	}
	if len(s.sup.List()) != 0 {
		t.Errorf("VMMs left: %+v", s.sup.List())
	}
}

func waitConsole(t *testing.T, s *Service, id, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		out, err := s.ConsoleOutput(Admin, id)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out.Output, want) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("console of %s never showed %q", id, want)
}

func writeAt(t *testing.T, path, format, data string) {
	t.Helper()
	d, err := storage.Open(path, storage.OpenOptions{Format: format})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt([]byte(data), 8<<20); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

func readAt(t *testing.T, path, format string, n int) string {
	t.Helper()
	d, err := storage.Open(path, storage.OpenOptions{Format: format, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	b := make([]byte, n)
	if _, err := d.ReadAt(b, 8<<20); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBillingRunStopStart checks the meter against the rule with an
// injected clock: a 30 s run is billed the 60 s minimum, a 90.5 s run 91 s,
// stopped time nothing; the root volume is billed per GB-month throughout.
func TestBillingRunStopStart(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: t0}
	s := openTest(t, clock.Now)
	res, err := s.RunInstances(context.Background(), Admin, api.RunInstancesRequest{Image: testImage(t, ""), InstanceType: "m5.large"})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Instances[0].InstanceID
	waitState(t, s, id, lifecycle.Running)
	clock.Advance(30 * time.Second)
	if _, err := s.Stop(Admin, id, api.StopRequest{}); err != nil {
		t.Fatal(err)
	}
	waitState(t, s, id, lifecycle.Stopped)
	clock.Advance(100 * time.Second)
	if _, err := s.Start(Admin, id); err != nil {
		t.Fatal(err)
	}
	waitState(t, s, id, lifecycle.Running)
	clock.Advance(90*time.Second + 500*time.Millisecond)
	if _, err := s.Stop(Admin, id, api.StopRequest{Force: true}); err != nil {
		t.Fatal(err)
	}
	waitState(t, s, id, lifecycle.Stopped)

	rep, err := s.Billing(Admin, t0.Add(-time.Hour), t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	hourly := s.prices.InstanceHourly["m5.large"]
	var inst, vol *api.BillingLine
	for i, l := range rep.Lines {
		switch l.Kind {
		case "instance":
			inst = &rep.Lines[i]
		case "volume":
			vol = &rep.Lines[i]
		}
	}
	if inst == nil || inst.Quantity != 60+91 || inst.ResourceID != id {
		t.Fatalf("instance line %+v, want 151 seconds (lines %+v)", inst, rep.Lines)
	}
	if want := 151 * hourly / 3600; diff(inst.Cost, want) > 1e-12 {
		t.Errorf("instance cost %g, want %g", inst.Cost, want)
	}
	if want := 3600.0 / (30 * 24 * 3600); vol == nil || diff(vol.Quantity, want) > 1e-12 || vol.Type != "gp3" {
		t.Errorf("volume line %+v, want %g GB-month of gp3", vol, want)
	}
	// A period that starts inside the second run bills only its part.
	rep, err = s.Billing(Admin, t0.Add(200*time.Second), t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range rep.Lines {
		if l.Kind == "instance" && l.Quantity != 21 {
			t.Errorf("instance in the late period: %g seconds, want 21", l.Quantity)
		}
	}
	if _, err := s.Billing(Admin, t0, t0); api.CodeOf(err) != api.CodeInvalidParameterValue {
		t.Errorf("empty period: %v", err)
	}
}

func diff(a, b float64) float64 {
	if a > b {
		return a - b
	}
	return b - a
}

// TestCreditHoldAndRelease: a standard t3.nano starts with an empty bank
// (T3 gets no launch credits); a guest spinning its vCPU for a second of
// a one-second sample spends far more than it earned, so it is held at
// its baseline (2 vCPUs x 5% = 0.1 CPU) through the cgroup quota. An hour
// later, held at a tenth of a CPU, it has earned more than it spent and
// the hold is lifted.
func TestCreditHoldAndRelease(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: t0}
	s := openTest(t, clock.Now)
	res, err := s.RunInstances(context.Background(), Admin, api.RunInstancesRequest{Image: testImage(t, "selftest burn=0:30"), InstanceType: "t3.nano", CreditMode: "standard"})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Instances[0].InstanceID
	waitState(t, s, id, lifecycle.Running)
	waitConsole(t, s, id, "gureum-testguest: ready")
	time.Sleep(time.Second)
	clock.Advance(time.Second)
	s.TickCredits(context.Background())
	in, _ := s.Instance(Admin, id)
	lim, err := s.sup.Limits(id)
	if err != nil {
		t.Fatal(err)
	}
	if in.Credits == nil || !in.Credits.Throttled || lim.CPUMilli != 100 {
		t.Fatalf("after a busy second with no credits: credits %+v, cpu %d milli, want held at 100", in.Credits, lim.CPUMilli)
	}
	clock.Advance(time.Hour)
	s.TickCredits(context.Background())
	in, _ = s.Instance(Admin, id)
	lim, _ = s.sup.Limits(id)
	if in.Credits.Throttled || in.Credits.Balance < 5 || lim.CPUMilli != 1000 {
		t.Fatalf("after an hour at baseline: credits %+v, cpu %d milli, want released", in.Credits, lim.CPUMilli)
	}
	if _, err := s.Terminate(Admin, id, api.StopRequest{Force: true}); err != nil {
		t.Fatal(err)
	}
	waitState(t, s, id, lifecycle.Terminated)
}
