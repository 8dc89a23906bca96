package supervisor

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"gureum/vmm/api"
)

func TestClassify(t *testing.T) {
	crashed := &api.VMInfo{State: "stopped", End: &api.EndInfo{Kind: "crash", Reason: "triple fault"}}
	powered := &api.VMInfo{State: "stopped", End: &api.EndInfo{Kind: "poweroff", Reason: "S5"}}
	cases := []struct {
		status int
		last   *api.VMInfo
		log    string
		kind   EndKind
		reason string // substring
	}{
		{0, nil, "", EndPoweroff, "powered off"},
		{3, nil, "", EndReboot, "rebooted"},
		{4, nil, "", EndStopped, "stopped"},
		{1, nil, "noise\ngureum-vmm: guest crash: emulation failure\n", EndCrash, "guest crash: emulation failure"},
		{1, crashed, "", EndCrash, "triple fault"},
		{1, nil, "", EndCrash, "VMM failed"},
		{2, nil, "gureum-vmm: invalid configuration: kernel: missing\n", EndCrash, "refused its configuration: invalid configuration"},
		{125, nil, "sh: cannot create x: Permission denied\n", EndCrash, "cgroup: sh: cannot create"},
		{127, nil, "sh: gureum-vmm: not found\n", EndCrash, "could not be executed"},
		{137, nil, "", EndCrash, "SIGKILL"},
		{143, nil, "", EndCrash, "SIGTERM"},
		{42, nil, "", EndCrash, "unexpected status 42"},
		{-1, powered, "", EndPoweroff, "S5"},
		{-1, nil, "", EndCrash, "not recorded"},
	}
	for _, c := range cases {
		kind, reason := classify(c.status, c.last, c.log)
		if kind != c.kind || !strings.Contains(reason, c.reason) {
			t.Errorf("classify(%d, %v, %q) = %s %q, want %s containing %q", c.status, c.last, c.log, kind, reason, c.kind, c.reason)
		}
	}
}

func TestSpecValidateAndArgs(t *testing.T) {
	good := Spec{ID: "i-0abc", Kernel: "/k", Initrd: "/i", Cmdline: "console=ttyS0 quiet", VCPUs: 2, MemoryMiB: 256,
		Disks: []Disk{{Path: "/d/root.qcow2"}, {Path: "/d/ro.img", ReadOnly: true}},
		Nets:  []Net{{Tap: "tap0", MAC: "02:00:00:00:00:01"}}, NoReboot: true}
	if err := good.validate(); err != nil {
		t.Fatal(err)
	}
	r := record{APISock: "/r/api.sock", ConsoleLog: "/r/console.log", ConsoleSock: "/r/console.sock"}
	want := []string{"--kernel", "/k", "--cpus", "2", "--memory", "256M", "--api-sock", "/r/api.sock",
		"--console-log", "/r/console.log", "--console-sock", "/r/console.sock", "--initrd", "/i",
		"--cmdline", "console=ttyS0 quiet", "--disk", "/d/root.qcow2", "--disk", "/d/ro.img,ro",
		"--net", "tap0,mac=02:00:00:00:00:01", "--no-reboot"}
	if got := good.vmmArgs(r); !reflect.DeepEqual(got, want) {
		t.Errorf("vmmArgs:\n got %q\nwant %q", got, want)
	}
	if l := good.limits(); l != (Limits{CPUMilli: 2000, MemoryBytes: (256 + MemoryOverheadMiB) << 20}) {
		t.Errorf("default limits %+v", l)
	}
	bad := []func(*Spec){
		func(s *Spec) { s.ID = "" },
		func(s *Spec) { s.ID = "../etc" },
		func(s *Spec) { s.ID = ".." },
		func(s *Spec) { s.ID = "a/b" },
		func(s *Spec) { s.ID = strings.Repeat("x", 65) },
		func(s *Spec) { s.Kernel = "" },
		func(s *Spec) { s.VCPUs = 0 },
		func(s *Spec) { s.MemoryMiB = 0 },
		func(s *Spec) { s.Disks = []Disk{{Path: "/a,ro"}} },
		func(s *Spec) { s.Nets = []Net{{Tap: "t,mac=1"}} },
		func(s *Spec) { s.Limits = &Limits{CPUMilli: -1} },
	}
	for i, mutate := range bad {
		s := good
		mutate(&s)
		if err := s.validate(); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("bad spec %d (%+v): %v", i, s, err)
		}
	}
}

func TestRecordRoundTrip(t *testing.T) {
	dir := t.TempDir()
	r := record{ID: "i-1", Spec: Spec{ID: "i-1", Kernel: "/k", VCPUs: 1, MemoryMiB: 64}, Limits: Limits{CPUMilli: 200},
		Cgroup: cgroup{CPUDir: "/c/i-1", MemDir: "/m/i-1"}, WrapperPID: 10, WrapperTime: 11, VMMPID: 12, VMMTime: 13,
		APISock: "/r/api.sock", StartedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	if err := writeRecord(dir, r); err != nil {
		t.Fatal(err)
	}
	r.VMMPID = 99
	if err := writeRecord(dir, r); err != nil {
		t.Fatal(err)
	}
	got, err := readRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Errorf("read back %+v, want %+v", got, r)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
}

func TestProcStat(t *testing.T) {
	st, err := readProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.start == 0 || !processAlive(os.Getpid(), st.start) {
		t.Fatalf("own stat %+v not alive", st)
	}
	if processAlive(os.Getpid(), st.start+1) {
		t.Error("a different start time must not count as the same process")
	}
	// A command name with spaces and parentheses.
	procRoot = t.TempDir()
	defer func() { procRoot = "/proc" }()
	os.MkdirAll(filepath.Join(procRoot, "7"), 0o755)
	fields := "S 1 7 7 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 123456 1000 10"
	os.WriteFile(filepath.Join(procRoot, "7", "stat"), []byte("7 (a) b (c) "+fields+"\n"), 0o644)
	st, err = readProcStat(7)
	if err != nil || st.state != 'S' || st.start != 123456 {
		t.Errorf("stat with odd comm: %+v, %v", st, err)
	}
}

func TestReadIntFileWantsNewline(t *testing.T) {
	p := filepath.Join(t.TempDir(), "n")
	os.WriteFile(p, []byte("123"), 0o644)
	if _, ok := readIntFile(p); ok {
		t.Error("a number without its newline was accepted (write may be incomplete)")
	}
	os.WriteFile(p, []byte("123\n"), 0o644)
	if n, ok := readIntFile(p); !ok || n != 123 {
		t.Errorf("got %d %v", n, ok)
	}
}

func TestDetectCgroupsV1AndV2(t *testing.T) {
	dir := t.TempDir()
	defer func() { mountinfoPath, selfCgroupPath = "/proc/self/mountinfo", "/proc/self/cgroup" }()
	mountinfoPath = filepath.Join(dir, "mountinfo")
	selfCgroupPath = filepath.Join(dir, "cgroup")

	// v1 with cpu co-mounted with cpuacct, and a mount point with a space.
	os.WriteFile(mountinfoPath, []byte(`31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/my\040memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`), 0o644)
	os.WriteFile(selfCgroupPath, []byte("4:memory:/jail/x\n2:cpu,cpuacct:/\n0::/\n"), 0o644)
	c, err := detectCgroups("gureum", false)
	if err != nil || c.v2 || c.cpuParent != "/sys/fs/cgroup/cpu,cpuacct/gureum" || c.memParent != "/sys/fs/my memory/gureum" {
		t.Fatalf("v1: %+v %v", c, err)
	}
	c, err = detectCgroups("gureum", true)
	if err != nil || c.cpuParent != "/sys/fs/cgroup/cpu,cpuacct/gureum" || c.memParent != "/sys/fs/my memory/jail/x/gureum" {
		t.Fatalf("v1 nested: %+v %v", c, err)
	}
	g := c.group("i-1")
	if g.V2 || len(g.procsFiles()) != 2 {
		t.Errorf("v1 group %+v", g)
	}

	// v2 only.
	unified := filepath.Join(dir, "unified")
	os.MkdirAll(unified, 0o755)
	os.WriteFile(filepath.Join(unified, "cgroup.controllers"), []byte("cpuset cpu io memory pids\n"), 0o644)
	os.WriteFile(mountinfoPath, []byte("30 1 0:26 / "+unified+" rw - cgroup2 cgroup2 rw,nsdelegate\n"), 0o644)
	os.WriteFile(selfCgroupPath, []byte("0::/system.slice/gureum.service\n"), 0o644)
	c, err = detectCgroups("gureum", true)
	if err != nil || !c.v2 || c.cpuParent != filepath.Join(unified, "system.slice/gureum.service/gureum") {
		t.Fatalf("v2: %+v %v", c, err)
	}
	if g := c.group("i-1"); !g.V2 || len(g.procsFiles()) != 1 {
		t.Errorf("v2 group %+v", g)
	}

	// Neither.
	os.WriteFile(mountinfoPath, []byte("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"), 0o644)
	if _, err := detectCgroups("gureum", false); err == nil {
		t.Error("no cgroup mounts: want an error")
	}
}

// TestCgroupLimitFiles writes and reads limits on plain files laid out as
// the kernel's would be (the kernel's own checks are exercised by the KVM
// tests).
func TestCgroupLimitFiles(t *testing.T) {
	for _, v2 := range []bool{false, true} {
		dir := t.TempDir()
		g := cgroup{V2: v2, CPUDir: dir, MemDir: dir}
		for _, f := range []string{"cpu.max", "memory.max", "cpu.cfs_period_us", "cpu.cfs_quota_us", "memory.limit_in_bytes"} {
			os.WriteFile(filepath.Join(dir, f), nil, 0o644)
		}
		for _, l := range []Limits{{CPUMilli: 200, MemoryBytes: 96 << 20}, {CPUMilli: 2000}, {}} {
			if err := g.setLimits(l); err != nil {
				t.Fatal(err)
			}
			got, err := g.limits()
			if err != nil || got != l {
				t.Errorf("v2=%v: set %+v, read %+v %v", v2, l, got, err)
			}
		}
		g.setLimits(Limits{CPUMilli: 200, MemoryBytes: 1 << 30})
		want := map[bool]map[string]string{
			false: {"cpu.cfs_quota_us": "20000", "cpu.cfs_period_us": "100000", "memory.limit_in_bytes": "1073741824"},
			true:  {"cpu.max": "20000 100000", "memory.max": "1073741824"},
		}[v2]
		for f, v := range want {
			if b, _ := os.ReadFile(filepath.Join(dir, f)); string(b) != v {
				t.Errorf("v2=%v: %s = %q, want %q", v2, f, b, v)
			}
		}
	}
}

// TestWrapperScript runs the wrapper with stand-in commands: it joins the
// "cgroup" (here plain files), records the child's PID and exit status,
// survives SIGTERM, and passes statuses and signals through.
func TestWrapperScript(t *testing.T) {
	dir := t.TempDir()
	procs := []string{filepath.Join(dir, "cpu.procs"), filepath.Join(dir, "mem.procs")}
	run := func(script string) (*exec.Cmd, string, string) {
		pidFile, exitFile := filepath.Join(dir, "vmm.pid"), filepath.Join(dir, "exit")
		os.Remove(pidFile)
		os.Remove(exitFile)
		argv := wrapperCommand("", pidFile, exitFile, procs, []string{"/bin/sh", "-c", script})
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, pidFile, exitFile
	}
	statusOf := func(cmd *exec.Cmd) int {
		cmd.Wait()
		return cmd.ProcessState.ExitCode()
	}

	cmd, pidFile, exitFile := run("exit 3")
	if s := statusOf(cmd); s != 3 {
		t.Errorf("wrapper status %d, want the VMM's 3", s)
	}
	if n, ok := readIntFile(exitFile); !ok || n != 3 {
		t.Errorf("exit file %d %v", n, ok)
	}
	if _, ok := readIntFile(pidFile); !ok {
		t.Error("no VMM PID recorded")
	}
	for _, p := range procs {
		if n, ok := readIntFile(p); !ok || n != cmd.Process.Pid {
			t.Errorf("%s = %d, want the wrapper's PID %d", p, n, cmd.Process.Pid)
		}
	}

	// SIGTERM to the wrapper is ignored; SIGKILL to the child is recorded.
	cmd, pidFile, exitFile = run("sleep 30")
	var child int
	for i := 0; i < 500; i++ {
		if n, ok := readIntFile(pidFile); ok {
			child = n
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if child == 0 {
		t.Fatal("no child PID")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(50 * time.Millisecond)
	st, err := readProcStat(cmd.Process.Pid)
	if err != nil || st.state == 'Z' {
		t.Fatalf("wrapper died of SIGTERM: %+v %v", st, err)
	}
	// Watch the wrapper through a pidfd, as the supervisor does.
	res := make(chan int, 1)
	go func() {
		s, _ := waitExit(context.Background(), cmd.Process.Pid, st.start)
		res <- s
	}()
	syscall.Kill(child, syscall.SIGKILL)
	select {
	case s := <-res:
		if s != 137 && s != -1 {
			t.Errorf("waitExit status %d", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waitExit did not see the wrapper end")
	}
	if n, ok := readIntFile(exitFile); !ok || n != 137 {
		t.Errorf("exit file after SIGKILL: %d %v, want 137", n, ok)
	}
	cmd.Wait()

	// A cgroup that cannot be joined: status 125, the VMM never runs.
	procs = []string{filepath.Join(dir, "missing", "cgroup.procs")}
	cmd, pidFile, _ = run("exit 0")
	if s := statusOf(cmd); s != exitCgroupJoin {
		t.Errorf("unjoinable cgroup: status %d, want %d", s, exitCgroupJoin)
	}
	if _, err := os.Stat(pidFile); err == nil {
		t.Error("the VMM was started outside its cgroup")
	}
}

func TestWaitExitCancel(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	st, err := readProcStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := waitExit(ctx, cmd.Process.Pid, st.start); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waitExit after cancel: %v", err)
	}
	// A start time that does not match: not our process, returns at once.
	if s, err := waitExit(context.Background(), cmd.Process.Pid, st.start+1); s != -1 || err != nil {
		t.Errorf("waitExit of a reused PID: %d %v", s, err)
	}
}
