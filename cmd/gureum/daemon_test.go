package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gureum/api"
	"gureum/client"
	"gureum/vmm/vmmtest"
)

// daemonProc is a `gureum daemon` process under test.
type daemonProc struct {
	t    *testing.T
	dir  string
	sock string
	cg   string
	cmd  *exec.Cmd
	c    *client.Client
}

func (d *daemonProc) start() {
	d.t.Helper()
	d.cmd = exec.Command(vmmtest.Bin(d.t, "gureum"), "daemon", "--data-dir", d.dir, "--socket", d.sock,
		"--vmm", vmmtest.Bin(d.t, "gureum-vmm"), "--cgroup", d.cg, "--cgroup-nested",
		"--max-guest-memory", "64", "--max-guest-vcpus", "1", "--cpu-overcommit", "40", "--memory-overcommit", "100",
		"--reconcile-interval", "200ms", "--stop-timeout", "5s", "--log-level", "debug",
		"--default-image", "none") // the end checks that no volume file is left
	logf, err := os.OpenFile(filepath.Join(d.dir, "daemon.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		d.t.Fatal(err)
	}
	defer logf.Close()
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.c = client.New(d.sock)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := d.c.DescribeInstances(context.Background(), client.Filter{}); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.t.Fatalf("daemon did not answer; log:\n%s", d.log())
}

func (d *daemonProc) log() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "daemon.log"))
	return string(b)
}

// kill9 kills the daemon with SIGKILL, as a crash would.
func (d *daemonProc) kill9() {
	d.cmd.Process.Kill()
	d.cmd.Wait()
}

func (d *daemonProc) wait(ids []string, state string) []api.Instance {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ins, err := d.c.WaitState(ctx, ids, []string{state}, nil)
	if err != nil {
		d.t.Fatalf("waiting for %s: %v %+v\nlog:\n%s", state, err, ins, d.log())
	}
	return ins
}

// vmmPID reads the running VMM's PID from its run directory.
func (d *daemonProc) vmmPID(id string) int {
	b, err := os.ReadFile(filepath.Join(d.dir, "run", id, "vmm.pid"))
	if err != nil {
		d.t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		d.t.Fatal(err)
	}
	return pid
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

// TestE2EDaemonKillAndRestart kills the daemon with SIGKILL during a
// launch, a stop and a termination, and while it is away kills a VMM;
// each time a new daemon re-adopts the running VMMs and converges. At the
// end no process, cgroup, run directory, instance store or volume is
// left.
func TestE2EDaemonKillAndRestart(t *testing.T) {
	vmmtest.RequireKVM(t)
	vmmtest.RequireRoot(t)
	dir := t.TempDir()
	d := &daemonProc{t: t, dir: dir, sock: filepath.Join(dir, "gureum.sock"), cg: fmt.Sprintf("gureum-daemon-test-%d", os.Getpid())}
	vmmtest.CleanupCgroups(t, d.cg)
	d.start()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.kill9()
		}
		// CleanupCgroups (above) kills VMMs a failed test left.
	})
	ctx := context.Background()
	img := &api.ImageSpec{Kernel: vmmtest.Bin(t, "testguest.elf")}

	// 1. Killed right after a launch was accepted.
	res, err := d.c.RunInstances(ctx, api.RunInstancesRequest{Image: img, InstanceType: "i3.large", Count: 4})
	if err != nil {
		t.Fatal(err)
	}
	d.kill9()
	var ids []string
	for _, in := range res.Instances {
		ids = append(ids, in.InstanceID)
	}
	d.start()
	d.wait(ids, "running")
	a, b, c, e := ids[0], ids[1], ids[2], ids[3]

	// 2. Killed during a stop, and 3. during a termination.
	if _, err := d.c.StopInstance(ctx, a, api.StopRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.c.TerminateInstance(ctx, b, api.StopRequest{}); err != nil {
		t.Fatal(err)
	}
	d.kill9()
	// 4. A VMM that dies while no daemon runs.
	cpid := d.vmmPID(c)
	syscall.Kill(cpid, syscall.SIGKILL)
	// Its wrapper reaps it and records how it ended; the daemon reads
	// that record at start.
	exitFile := filepath.Join(d.dir, "run", c, "exit-status")
	for i := 0; i < 500; i++ {
		if _, err := os.Stat(exitFile); err == nil && !alive(cpid) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	epid := d.vmmPID(e)
	d.start()
	d.wait([]string{a}, "stopped")
	d.wait([]string{b}, "terminated")
	in := d.wait([]string{c}, "stopped")[0]
	if in.StateReason == nil || in.StateReason.Code != "Server.InternalError" || !strings.Contains(in.StateReason.Message+in.StateTransitionReason, "SIGKILL") {
		t.Errorf("VMM killed while away: reason %+v %q", in.StateReason, in.StateTransitionReason)
	}
	if _, err := os.Stat(filepath.Join(dir, "instance-store", a+".img")); !os.IsNotExist(err) {
		t.Errorf("instance store of the stopped instance: %v", err)
	}
	// The fourth ran through all of this, re-adopted twice.
	if !alive(epid) || d.vmmPID(e) != epid {
		t.Errorf("VMM of %s was not re-adopted", e)
	}

	// 5. SIGTERM: a clean shutdown leaves the VMM running.
	d.cmd.Process.Signal(syscall.SIGTERM)
	if err := d.cmd.Wait(); err != nil {
		t.Errorf("daemon exit after SIGTERM: %v", err)
	}
	if !alive(epid) {
		t.Fatal("SIGTERM of the daemon ended an instance")
	}
	d.start()
	if got := d.wait([]string{e}, "running"); got[0].State.Name != "running" {
		t.Fatal(got)
	}
	for _, id := range []string{a, c, e} {
		if _, err := d.c.TerminateInstance(ctx, id, api.StopRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	d.wait(ids, "terminated")
	if vols, _ := d.c.Volumes(ctx); len(vols) != 0 {
		t.Errorf("volumes left: %+v", vols)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
	if alive(epid) || alive(cpid) {
		t.Error("VMM process left")
	}
	for _, sub := range []string{"run", "instance-store"} {
		if ents, _ := os.ReadDir(filepath.Join(dir, sub)); len(ents) != 0 {
			t.Errorf("%s not empty: %v", sub, ents)
		}
	}
	if layers, _ := filepath.Glob(filepath.Join(dir, "volumes", "layers", "*")); len(layers) != 0 {
		t.Errorf("volume files left: %v", layers)
	}
	if _, err := os.Stat(d.sock); !os.IsNotExist(err) {
		t.Errorf("socket left after SIGTERM: %v", err)
	}
}
