package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"gureum/vmm/vmmtest"
)

// The daemon-kill test runs a supervisor in a child process: this test
// binary re-executed with helperEnv set to a JSON helperConfig. The child
// starts the instances, prints one "started ID PID" line each and "ready",
// then waits to be killed.
const helperEnv = "GUREUM_SUPERVISOR_TEST_HELPER"

type helperConfig struct {
	RunDir     string
	VMM        string
	Kernel     string
	CgroupName string
	IDs        []string
}

func TestMain(m *testing.M) {
	if cfg := os.Getenv(helperEnv); cfg != "" {
		os.Exit(runHelper(cfg))
	}
	// Become a child subreaper: when a supervising child process is
	// killed, the VMM wrappers it started are re-parented to this process
	// (instead of PID 1), so the supervisor under test can reap them.
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	os.Exit(m.Run())
}

func runHelper(js string) int {
	var hc helperConfig
	if err := json.Unmarshal([]byte(js), &hc); err != nil {
		fmt.Println("helper:", err)
		return 2
	}
	s, err := New(Config{RunDir: hc.RunDir, VMM: hc.VMM, CgroupName: hc.CgroupName, CgroupNested: true})
	if err != nil {
		fmt.Println("helper:", err)
		return 2
	}
	for i, id := range hc.IDs {
		info, err := s.Start(context.Background(), Spec{ID: id, Kernel: hc.Kernel, VCPUs: 1 + i%2, MemoryMiB: 32 + 16*uint64(i)})
		if err != nil {
			fmt.Println("helper:", err)
			return 2
		}
		// Ctrl-Alt-Del pressed before the guest set up its keyboard is
		// lost (as on a PC), so the test shuts down only ready guests.
		if err := waitConsole(info.ConsoleLog, "gureum-testguest: ready", 20*time.Second); err != nil {
			fmt.Println("helper:", err)
			return 2
		}
		fmt.Println("started", id, info.PID)
	}
	fmt.Println("ready")
	select {}
}

// waitConsole waits until the console log holds want.
func waitConsole(path, want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(path); strings.Contains(string(b), want) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, _ := os.ReadFile(path)
	return fmt.Errorf("%s: no %q within %v; console:\n%s", path, want, timeout, b)
}

// requireCgroups skips (or fails under GUREUM_REQUIRE_KVM=1) when the test
// cannot make cgroups.
func requireCgroups(t *testing.T) {
	t.Helper()
	vmmtest.RequireRoot(t)
	if _, err := detectCgroups("x", true); err != nil {
		if os.Getenv("GUREUM_REQUIRE_KVM") == "1" {
			t.Fatalf("GUREUM_REQUIRE_KVM=1 but %v", err)
		}
		t.Skipf("%v: skipping", err)
	}
}

// testSetup returns a supervisor config for a fresh run directory and a
// cgroup parent of its own, and removes at cleanup whatever a failing test
// left: processes recorded in the run directory (killed by PID after the
// start-time check) and the cgroups.
func testSetup(t *testing.T) Config {
	t.Helper()
	vmmtest.RequireKVM(t)
	requireCgroups(t)
	cfg := Config{
		RunDir:       t.TempDir(),
		VMM:          vmmtest.Bin(t, "gureum-vmm"),
		CgroupName:   fmt.Sprintf("gureum-test-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-")),
		CgroupNested: true,
	}
	cg, err := detectCgroups(cfg.CgroupName, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ents, _ := os.ReadDir(cfg.RunDir)
		for _, e := range ents {
			r, err := readRecord(filepath.Join(cfg.RunDir, e.Name()))
			if err != nil {
				continue
			}
			for _, p := range [][2]uint64{{uint64(r.VMMPID), r.VMMTime}, {uint64(r.WrapperPID), r.WrapperTime}} {
				if processAlive(int(p[0]), p[1]) {
					t.Logf("cleanup: killing leftover process %d of %s", p[0], r.ID)
					unix.Kill(int(p[0]), unix.SIGKILL)
				}
			}
		}
		for _, parent := range []string{cg.cpuParent, cg.memParent} {
			subs, _ := os.ReadDir(parent)
			for _, sub := range subs {
				if sub.IsDir() {
					removeCgroup(cgroup{CPUDir: filepath.Join(parent, sub.Name()), MemDir: filepath.Join(parent, sub.Name())})
				}
			}
			os.Remove(parent)
		}
		// Reap wrappers re-parented to this process.
		for {
			var ws unix.WaitStatus
			if pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	})
	return cfg
}

// exitCollector gathers OnExit reports.
type exitCollector chan Exit

func (c exitCollector) next(t *testing.T, timeout time.Duration) Exit {
	t.Helper()
	select {
	case e := <-c:
		return e
	case <-time.After(timeout):
		t.Fatalf("no VMM exit reported within %v", timeout)
		return Exit{}
	}
}

func sessionOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	sid, _ := strconv.Atoi(f[3]) // field 6
	return sid
}

func TestSupervisorSurvivesDaemonKill(t *testing.T) {
	cfg := testSetup(t)
	ids := []string{"i-one", "i-two", "i-three"}
	hc, _ := json.Marshal(helperConfig{RunDir: cfg.RunDir, VMM: cfg.VMM, Kernel: vmmtest.Bin(t, "testguest.elf"),
		CgroupName: cfg.CgroupName, IDs: ids})

	// The "daemon": a child process that starts three VMMs.
	daemon := exec.Command(os.Args[0], "-test.run=^$")
	daemon.Env = append(os.Environ(), helperEnv+"="+string(hc))
	daemon.Stderr = os.Stderr
	out, err := daemon.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { daemon.Process.Kill(); daemon.Wait() })
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	pids := map[string]int{}
	timeout := time.After(30 * time.Second)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("supervising process ended before starting its VMMs")
			}
			var id string
			var pid int
			if _, err := fmt.Sscanf(l, "started %s %d", &id, &pid); err == nil {
				pids[id] = pid
			} else if l == "ready" {
				break wait
			} else {
				t.Log("supervising process:", l)
			}
		case <-timeout:
			t.Fatal("supervising process did not start its VMMs in 30 s")
		}
	}

	// Each VMM: in its own session (not the daemon's) and in its cgroups
	// with its limits.
	for i, id := range ids {
		r, err := readRecord(filepath.Join(cfg.RunDir, id))
		if err != nil {
			t.Fatal(err)
		}
		if r.VMMPID != pids[id] {
			t.Fatalf("%s: state file says VMM PID %d, Start said %d", id, r.VMMPID, pids[id])
		}
		if sid := sessionOf(t, r.VMMPID); sid != r.WrapperPID || sid == daemon.Process.Pid {
			t.Errorf("%s: VMM session %d, want its wrapper's %d", id, sid, r.WrapperPID)
		}
		for _, d := range r.Cgroup.dirs() {
			procs, _ := cgroup{CPUDir: d}.pids()
			if !containsInt(procs, r.VMMPID) || !containsInt(procs, r.WrapperPID) {
				t.Errorf("%s: %s/cgroup.procs = %v, want VMM %d and wrapper %d", id, d, procs, r.VMMPID, r.WrapperPID)
			}
		}
		got, err := r.Cgroup.limits()
		if err != nil {
			t.Fatal(err)
		}
		want := DefaultLimits(1+i%2, 32+16*uint64(i))
		if got != want {
			t.Errorf("%s: cgroup limits %+v, want %+v", id, got, want)
		}
	}

	// kill -9 the daemon: the VMMs keep running.
	daemon.Process.Kill()
	daemon.Wait()
	time.Sleep(100 * time.Millisecond)
	recs := map[string]record{}
	for _, id := range ids {
		r, _ := readRecord(filepath.Join(cfg.RunDir, id))
		recs[id] = r
		if !processAlive(r.VMMPID, r.VMMTime) {
			t.Fatalf("%s: VMM %d died with the supervising process", id, r.VMMPID)
		}
	}
	// While no supervisor watches, i-three's VMM is stopped by SIGTERM
	// (its wrapper records exit status 4).
	unix.Kill(recs["i-three"].VMMPID, unix.SIGTERM)
	deadline := time.Now().Add(5 * time.Second)
	for processAlive(recs["i-three"].WrapperPID, recs["i-three"].WrapperTime) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}

	// A new supervisor re-adopts the two live VMMs and reports the third.
	exits := make(exitCollector, 8)
	cfg.OnExit = func(e Exit) { exits <- e }
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	adopted, err := s.Adopt(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(adopted) != 2 {
		t.Fatalf("adopted %d VMMs, want 2: %+v", len(adopted), adopted)
	}
	// Adopt returns only once the VMM that ended is reported.
	if len(exits) != 1 {
		t.Fatalf("%d exits reported when Adopt returned, want 1", len(exits))
	}
	e := exits.next(t, time.Second)
	if e.ID != "i-three" || e.Kind != EndStopped || !e.WhileAway || e.Status != 4 {
		t.Fatalf("exit of the VMM stopped while away: %+v", e)
	}
	for _, id := range []string{"i-one", "i-two"} {
		v, err := s.State(ctx, id)
		if err != nil || v.State != "running" {
			t.Fatalf("%s after re-adoption: %+v, %v", id, v, err)
		}
	}

	// A VMM killed with SIGKILL is reported as crashed; the other runs on.
	unix.Kill(recs["i-two"].VMMPID, unix.SIGKILL)
	e = exits.next(t, 5*time.Second)
	if e.ID != "i-two" || e.Kind != EndCrash || !strings.Contains(e.Reason, "SIGKILL") || e.WhileAway {
		t.Fatalf("exit of the killed VMM: %+v", e)
	}
	if v, err := s.State(ctx, "i-one"); err != nil || v.State != "running" {
		t.Fatalf("i-one after i-two was killed: %+v, %v", v, err)
	}

	// Graceful stop: the test guest powers off on Ctrl-Alt-Del.
	if err := s.Shutdown(ctx, "i-one", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	e = exits.next(t, 10*time.Second)
	if e.ID != "i-one" || e.Kind != EndPoweroff || e.Status != 0 || !strings.Contains(e.ConsoleTail, "powering off") {
		t.Fatalf("exit after shutdown: %+v", e)
	}

	// Everything is cleaned: no run directory, no instance cgroup.
	if ents, _ := os.ReadDir(cfg.RunDir); len(ents) != 0 {
		t.Errorf("run directory not empty: %v", ents)
	}
	for _, r := range recs {
		for _, d := range r.Cgroup.dirs() {
			if _, err := os.Stat(d); err == nil {
				t.Errorf("cgroup %s not removed", d)
			}
		}
		for _, p := range [][2]uint64{{uint64(r.VMMPID), r.VMMTime}, {uint64(r.WrapperPID), r.WrapperTime}} {
			if processAlive(int(p[0]), p[1]) || isZombie(int(p[0]), p[1]) {
				t.Errorf("%s: process %d still there", r.ID, p[0])
			}
		}
	}
	if len(s.List()) != 0 {
		t.Errorf("still supervising %+v", s.List())
	}
}

// TestCPUQuotaHoldsBurningGuest runs a guest that spins its one vCPU with
// the group's quota at 20% of a CPU, checks the busy time the VMM reports
// stays near 20%, then raises the quota at run time.
func TestCPUQuotaHoldsBurningGuest(t *testing.T) {
	cfg := testSetup(t)
	exits := make(exitCollector, 4)
	cfg.OnExit = func(e Exit) { exits <- e }
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	info, err := s.Start(ctx, Spec{ID: "i-burn", Kernel: vmmtest.Bin(t, "testguest.elf"), VCPUs: 1, MemoryMiB: 32,
		Cmdline: "selftest burn=0:8", Limits: &Limits{CPUMilli: 200, MemoryBytes: 96 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	if err := waitConsole(info.ConsoleLog, "gureum-testguest: ready", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	busy := func() (uint64, time.Time) {
		m, err := s.Metrics(ctx, "i-burn")
		if err != nil || len(m.VCPUs) != 1 {
			t.Fatalf("metrics: %+v, %v", m, err)
		}
		return m.VCPUs[0].BusyNS, time.Now()
	}
	share := func(window time.Duration) float64 {
		b0, t0 := busy()
		time.Sleep(window)
		b1, t1 := busy()
		return float64(b1-b0) / float64(t1.Sub(t0).Nanoseconds())
	}
	// The host is shared (2 cores, other tests run in parallel), so the
	// guest may get less than its quota in some window; it must never get
	// more, must reach it in at least one window, and the kernel must
	// report the group throttled (the quota, not the host, is the limit).
	g := s.cg.group("i-burn")
	throttled0 := g.throttled(t)
	var best float64
	for i := 0; i < 3; i++ {
		got := share(1500 * time.Millisecond)
		t.Logf("busy share at a 20%% quota: %.1f%%", got*100)
		if got > 0.25 {
			t.Errorf("busy share %.1f%% above the 20%% quota (+5 points)", got*100)
		}
		best = max(best, got)
		if best >= 0.15 {
			break
		}
	}
	if best < 0.15 {
		t.Errorf("busy share at a 20%% quota never reached 15%% (best %.1f%%)", best*100)
	}
	if g.throttled(t) == throttled0 {
		t.Error("the cgroup was never throttled at a 20% quota")
	}
	// Lift the quota at run time: throttling stops.
	if err := s.SetLimits("i-burn", Limits{MemoryBytes: 96 << 20}); err != nil {
		t.Fatal(err)
	}
	if l, err := s.Limits("i-burn"); err != nil || l.CPUMilli != 0 {
		t.Fatalf("limits after SetLimits: %+v, %v", l, err)
	}
	throttled1 := g.throttled(t)
	t.Logf("busy share without a quota: %.1f%%", share(1500*time.Millisecond)*100)
	if n := g.throttled(t); n != throttled1 {
		t.Errorf("throttled %d more times after the quota was lifted", n-throttled1)
	}
	// The self test ends with a power-off.
	e := exits.next(t, 20*time.Second)
	if e.Kind != EndPoweroff || !strings.Contains(e.ConsoleTail, "selftest burn: ok") {
		t.Fatalf("exit: %+v", e)
	}
}

// TestStartFailureReported checks that a VMM that refuses its
// configuration makes Start fail with the VMM's message and leaves nothing.
func TestStartFailureReported(t *testing.T) {
	cfg := testSetup(t)
	called := false
	cfg.OnExit = func(Exit) { called = true }
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Start(context.Background(), Spec{ID: "i-bad", Kernel: "/nonexistent/kernel", VCPUs: 1, MemoryMiB: 32})
	if err == nil || !strings.Contains(err.Error(), "crash") {
		t.Fatalf("Start with a missing kernel: %v", err)
	}
	t.Log(err)
	if called {
		t.Error("OnExit called for a VMM Start reported as failed")
	}
	if ents, _ := os.ReadDir(cfg.RunDir); len(ents) != 0 {
		t.Errorf("run directory not empty: %v", ents)
	}
	cg := s.cg.group("i-bad")
	for _, d := range cg.dirs() {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("cgroup %s left behind", d)
		}
	}
}

// throttled returns how many scheduler periods the group was throttled in
// (cpu.stat's nr_throttled, under v1 and v2 alike).
func (g cgroup) throttled(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(g.CPUDir, "cpu.stat"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "nr_throttled "); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	t.Fatalf("no nr_throttled in cpu.stat:\n%s", b)
	return 0
}

// TestStartTimeoutKills checks that a VMM whose socket never answers is
// killed when Start gives up, and leaves nothing behind. The "VMM" is a
// script that sleeps, so this needs root and cgroups but not KVM.
func TestStartTimeoutKills(t *testing.T) {
	requireCgroups(t)
	dir := t.TempDir()
	fake := filepath.Join(dir, "fake-vmm")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nexec sleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := Config{RunDir: filepath.Join(dir, "run"), VMM: fake, CgroupNested: true, StartTimeout: 300 * time.Millisecond,
		CgroupName: fmt.Sprintf("gureum-test-%d-timeout", os.Getpid())}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cpuParent, memParent := s.CgroupParents()
	defer func() {
		s.Close()
		os.Remove(cpuParent)
		os.Remove(memParent)
	}()
	_, err = s.Start(context.Background(), Spec{ID: "i-mute", Kernel: "/k", VCPUs: 1, MemoryMiB: 16})
	if err == nil || !strings.Contains(err.Error(), "not ready") || !strings.Contains(err.Error(), "SIGKILL") {
		t.Fatalf("Start of a VMM that never answers: %v", err)
	}
	if ents, _ := os.ReadDir(cfg.RunDir); len(ents) != 0 {
		t.Errorf("run directory not empty: %v", ents)
	}
	for _, d := range s.cg.group("i-mute").dirs() {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("cgroup %s left behind", d)
		}
	}
	if _, err := s.Get("i-mute"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after a failed Start: %v", err)
	}
}
