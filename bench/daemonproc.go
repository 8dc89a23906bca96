package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gureum/api"
	"gureum/client"
)

// The control-plane part runs a real `gureum daemon` per repetition, on a
// fresh data directory and socket of its own, and talks to it only through
// its REST API (gureum/client), as the CLI does. Everything it starts is
// bounded and removed by the part: the instances through the API, the
// daemon by its PID, the VMMs that might outlive a failure by the PIDs
// listed in the daemon's own cgroups, then the cgroups and the directory.

// Bounds of the control-plane part.
const (
	daemonUpTimeout = 30 * time.Second // start to the API answering
	daemonExitWait  = 15 * time.Second // SIGTERM to exit
	cpReadyTimeout  = 120 * time.Second
	cpTermTimeout   = 60 * time.Second
)

// benchDaemon is one `gureum daemon` process of the benchmark.
type benchDaemon struct {
	dir    string // data directory, removed at the end
	cgroup string // name of its parent cgroup (made under the harness's own)
	cmd    *exec.Cmd
	exited chan struct{}
	c      *client.Client
}

// startDaemon starts `gureum daemon` on a fresh directory under scratch,
// with the flags of a small test host: guests get at most memMiB of RAM
// and one vCPU whatever their type (describe still shows the type's), and
// capacity is overcommitted so that 50 small instances fit on 2 CPUs. Its
// log goes to logPath. It returns once the API answers.
func startDaemon(ctx context.Context, binDir, scratch, logPath string, memMiB int) (*benchDaemon, error) {
	dir, err := os.MkdirTemp(scratch, "gureum-bench-cp-*")
	if err != nil {
		return nil, fmt.Errorf("daemon data directory: %w", err)
	}
	d := &benchDaemon{dir: dir, cgroup: fmt.Sprintf("gureum-bench-%d", os.Getpid()), exited: make(chan struct{})}
	logFile, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("daemon log: %w", err)
	}
	defer logFile.Close() // the child keeps its own descriptor
	sock := filepath.Join(dir, "gureum.sock")
	d.cmd = exec.Command(filepath.Join(binDir, "gureum"), "daemon",
		"--data-dir", dir, "--socket", sock, "--vmm", filepath.Join(binDir, "gureum-vmm"),
		"--cgroup", d.cgroup, "--cgroup-nested", "--default-image", "none",
		"--max-guest-memory", strconv.Itoa(memMiB), "--max-guest-vcpus", "1",
		"--cpu-overcommit", "100", "--memory-overcommit", "100", "--log-level", "info")
	d.cmd.Stdout, d.cmd.Stderr = logFile, logFile
	// Its own session: a Ctrl-C on the harness's terminal reaches only
	// the harness, which then stops the daemon by PID.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := d.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start gureum daemon: %w", err)
	}
	go func() {
		d.cmd.Wait()
		close(d.exited)
	}()
	d.c = client.New(sock)
	deadline := time.Now().Add(daemonUpTimeout)
	for {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := d.c.DescribeInstances(actx, client.Filter{})
		cancel()
		if err == nil {
			return d, nil
		}
		select {
		case <-d.exited:
			d.remove()
			return nil, fmt.Errorf("gureum daemon exited at start (%s); log in %s", d.cmd.ProcessState, logPath)
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			d.remove()
			return nil, fmt.Errorf("gureum daemon API not answering after %v: %w", daemonUpTimeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pid returns the daemon's process ID.
func (d *benchDaemon) pid() int { return d.cmd.Process.Pid }

// terminate asks the daemon to terminate instances ids at once (force:
// their VMMs are killed, nothing in them is worth a graceful shutdown) and
// waits until all are terminated.
func (d *benchDaemon) terminate(ctx context.Context, ids []string) error {
	for _, id := range ids {
		if _, err := d.c.TerminateInstance(ctx, id, api.StopRequest{Force: true}); err != nil {
			return fmt.Errorf("terminate %s: %w", id, err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, cpTermTimeout)
	defer cancel()
	if _, err := d.c.WaitState(wctx, ids, []string{"terminated"}, nil); err != nil {
		return fmt.Errorf("waiting for termination: %w", err)
	}
	return nil
}

// remove stops the daemon (SIGTERM, then SIGKILL, both to its PID), kills
// any VMM still in its cgroups, removes the cgroups and the data
// directory. It is safe to call more than once.
func (d *benchDaemon) remove() {
	select {
	case <-d.exited:
	default:
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(daemonExitWait):
			d.cmd.Process.Kill()
			<-d.exited
		}
	}
	// The daemon leaves VMMs running when it stops, by design (a daemon
	// restart must not stop instances). After a clean run none is left;
	// after a failure the harness ends those in its own cgroups.
	for _, parent := range ownCgroups(d.cgroup) {
		subs, _ := filepath.Glob(filepath.Join(parent, "i-*"))
		for _, sub := range subs {
			for _, pid := range cgroupPIDs(sub) {
				fmt.Fprintf(os.Stderr, "bench: killing VMM %d left in %s\n", pid, sub)
				syscall.Kill(pid, syscall.SIGKILL)
			}
			for i := 0; i < 100 && len(cgroupPIDs(sub)) > 0; i++ {
				time.Sleep(20 * time.Millisecond)
			}
			os.Remove(sub)
		}
		os.Remove(parent)
	}
	os.RemoveAll(d.dir)
}

// ownCgroups lists the directories a cgroup called name would have under
// the harness's own cgroups (where --cgroup-nested puts the daemon's,
// since the daemon starts in the harness's cgroup), on cgroup v1 and v2.
func ownCgroups(name string) []string {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		// "ID:CONTROLLERS:PATH"; v2 has ID 0 and no controllers.
		parts := strings.SplitN(s.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		var mounts []string
		if parts[1] == "" {
			mounts = []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}
		} else {
			for _, ctl := range strings.Split(parts[1], ",") {
				mounts = append(mounts, filepath.Join("/sys/fs/cgroup", ctl))
			}
			mounts = append(mounts, filepath.Join("/sys/fs/cgroup", parts[1]))
		}
		for _, m := range mounts {
			// /sys/fs/cgroup/cpu is often a link to cpu,cpuacct: resolve
			// links so that each directory is listed once.
			dir, err := filepath.EvalSymlinks(filepath.Join(m, parts[2], name))
			if err != nil {
				continue
			}
			if st, err := os.Stat(dir); err == nil && st.IsDir() && !containsString(out, dir) {
				out = append(out, dir)
			}
		}
	}
	return out
}

// cgroupPIDs lists the processes in a cgroup directory.
func cgroupPIDs(dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
