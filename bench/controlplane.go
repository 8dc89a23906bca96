package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"gureum/api"
	"gureum/client"
)

// The cp part measures gureum's control plane rather than the VMM: how long
// the daemon takes from the run-instances API call to instances that are
// running with the guest's ready line on their console, for 1 and for 20
// instances launched in one call, and how much memory the daemon itself
// keeps with 50 instances running. Each repetition starts a fresh daemon
// (daemonproc.go), so repetitions do not inherit each other's records.
//
// Within a repetition, in order:
//  1. a first single launch on the fresh daemon (cold: first root volume,
//     first VMM start of the daemon), then terminated;
//  2. a second single launch (the figure with the goal), terminated;
//  3. 20 instances in one call, terminated;
//  4. 50 instances in one call; 2 s after the last is ready the daemon's
//     VmRSS is read, and the sum of the VmRSS of the 50 VMM processes and
//     their wrappers; then all are terminated and the daemon stopped.
//
// "Ready" is observed through the API, as a user would: the harness polls
// describe (all ids in one call) and, for instances already running, the
// console output, every cpPoll. A time is taken when the poll that saw
// the line returns, so it includes up to one poll interval and the poll's
// own requests.

// Settings of the cp part.
const (
	cpType   = "t3.nano" // 2 vCPUs, 0.5 GiB by type; the daemon gives each guest 1 vCPU
	cpMemMiB = 32        // guest RAM of every instance (--max-guest-memory)
	cpPoll   = 2 * time.Millisecond
	cpMany   = 20
	cpFleet  = 50
)

func init() {
	parts = append(parts, part{name: "cp", gureumOnly: true, run: runControlPlane})
	metrics = append(metrics, controlPlaneMetrics()...)
}

// controlPlaneMetrics are the table rows of the cp part.
func controlPlaneMetrics() []metric {
	below := func(text string, limit float64) *goal {
		return &goal{check: func(g, q spread) string { return verdict(text, g.median < limit, g.n > 0) }}
	}
	return []metric{
		{part: "cp", key: "one_s", label: "run 1 instance: API call to running with the ready line (s)", format: "%.3f",
			goal: below("< 0.150 s", 0.150)},
		{part: "cp", key: "one_api_s", label: "… of it the run-instances call itself (s)", format: "%.3f"},
		{part: "cp", key: "one_running_s", label: "… to running in describe (VMM started, guest still booting) (s)", format: "%.3f"},
		{part: "cp", key: "cold_one_s", label: "run 1 instance, first launch of a fresh daemon (s)", format: "%.3f"},
		{part: "cp", key: "many_s", label: fmt.Sprintf("run %d instances in one call: to the last ready (s)", cpMany), format: "%.3f",
			goal: below("< 2 s", 2)},
		{part: "cp", key: "many_first_s", label: fmt.Sprintf("… to the first of the %d ready (s)", cpMany), format: "%.3f"},
		{part: "cp", key: "fleet_s", label: fmt.Sprintf("run %d instances in one call: to the last ready (s)", cpFleet), format: "%.3f"},
		{part: "cp", key: "daemon_idle_mib", label: "daemon VmRSS, no instance yet (MiB)", format: "%.1f"},
		{part: "cp", key: "daemon_fleet_mib", label: fmt.Sprintf("daemon VmRSS with %d running instances (MiB)", cpFleet), format: "%.1f"},
		{part: "cp", key: "vmms_fleet_mib", label: fmt.Sprintf("sum of VmRSS of the %d VMMs and their wrappers (MiB)", cpFleet), format: "%.0f"},
	}
}

// runControlPlane is one repetition of the cp part (see the top of the
// file).
func runControlPlane(ctx context.Context, c caseRun, p peer, rep int) (outcome, error) {
	out := outcome{metrics: map[string]float64{}}
	d, err := startDaemon(ctx, c.o.binDir, c.o.scratch, c.logPath("cp", "daemon", rep), cpMemMiB)
	if err != nil {
		return out, err
	}
	defer d.remove()
	out.argv = d.cmd.Args
	mem, err := statusSizes(d.pid())
	if err != nil {
		return out, err
	}
	out.metrics["daemon_idle_mib"] = float64(mem["VmRSS"]) / 1024

	img := &api.ImageSpec{Kernel: c.kernel} // no command line: ready, then idle in hlt
	steps := []struct {
		n      int
		record func(l launch)
	}{
		{1, func(l launch) { out.metrics["cold_one_s"] = l.last().Seconds() }},
		{1, func(l launch) {
			out.metrics["one_s"] = l.last().Seconds()
			out.metrics["one_api_s"] = l.api.Seconds()
			out.metrics["one_running_s"] = l.running[0].Seconds()
		}},
		{cpMany, func(l launch) {
			out.metrics["many_s"] = l.last().Seconds()
			out.metrics["many_first_s"] = l.ready[0].Seconds()
		}},
	}
	for _, st := range steps {
		l, err := launchAndWait(ctx, d.c, img, st.n)
		if err != nil {
			return out, fmt.Errorf("%d instance(s): %w", st.n, err)
		}
		st.record(l)
		if err := d.terminate(ctx, l.ids); err != nil {
			return out, err
		}
	}

	l, err := launchAndWait(ctx, d.c, img, cpFleet)
	if err != nil {
		return out, fmt.Errorf("%d instances: %w", cpFleet, err)
	}
	out.metrics["fleet_s"] = l.last().Seconds()
	if err := sleepCtx(ctx, idleSettle); err != nil {
		return out, err
	}
	if mem, err = statusSizes(d.pid()); err != nil {
		return out, err
	}
	out.metrics["daemon_fleet_mib"] = float64(mem["VmRSS"]) / 1024
	vmms, n := fleetRSS(d.cgroup)
	out.metrics["vmms_fleet_mib"] = float64(vmms) / 1024
	out.detail = fmt.Sprintf("%d instances of %s with %d MiB; %d processes in their cgroups", cpFleet, cpType, cpMemMiB, n)
	if err := d.terminate(ctx, l.ids); err != nil {
		return out, err
	}
	return out, nil
}

// launch is what one run-instances call measured: how long the call
// took, and when each instance was seen ready, sorted, both from just
// before the call.
type launch struct {
	ids     []string
	api     time.Duration
	running []time.Duration // first seen running in describe
	ready   []time.Duration // then seen with the ready line
}

// last is when the last instance was ready.
func (l launch) last() time.Duration { return l.ready[len(l.ready)-1] }

// launchAndWait runs n instances of the test guest in one call and waits
// until every one is running with the guest's ready line on its console.
func launchAndWait(ctx context.Context, c *client.Client, img *api.ImageSpec, n int) (launch, error) {
	var l launch
	start := time.Now()
	res, err := c.RunInstances(ctx, api.RunInstancesRequest{Image: img, InstanceType: cpType, Count: n})
	l.api = time.Since(start)
	if err != nil {
		return l, fmt.Errorf("run instances: %w", err)
	}
	waiting, running := map[string]bool{}, map[string]bool{}
	for _, in := range res.Instances {
		l.ids = append(l.ids, in.InstanceID)
		waiting[in.InstanceID] = true
	}
	if len(l.ids) != n {
		return l, fmt.Errorf("asked for %d instances, got %d", n, len(l.ids))
	}
	deadline := time.Now().Add(cpReadyTimeout)
	for len(waiting) > 0 {
		var pending []string
		for id := range waiting {
			pending = append(pending, id)
		}
		ins, err := c.DescribeInstances(ctx, client.Filter{IDs: pending})
		if err != nil {
			return l, fmt.Errorf("describe: %w", err)
		}
		for _, in := range ins {
			switch in.State.Name {
			case "pending":
				continue
			case "running":
				if !running[in.InstanceID] {
					running[in.InstanceID] = true
					l.running = append(l.running, time.Since(start))
				}
			default:
				return l, fmt.Errorf("%s went %s (%+v) instead of running", in.InstanceID, in.State.Name, in.StateReason)
			}
			co, err := c.ConsoleOutput(ctx, in.InstanceID)
			if err != nil {
				return l, fmt.Errorf("console of %s: %w", in.InstanceID, err)
			}
			if readyLine.MatchString(co.Output) {
				l.ready = append(l.ready, time.Since(start))
				delete(waiting, in.InstanceID)
			}
		}
		if len(waiting) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return l, fmt.Errorf("%d of %d not running with the ready line after %v", len(waiting), n, cpReadyTimeout)
		}
		if err := sleepCtx(ctx, cpPoll); err != nil {
			return l, err
		}
	}
	sort.Slice(l.ready, func(i, j int) bool { return l.ready[i] < l.ready[j] })
	sort.Slice(l.running, func(i, j int) bool { return l.running[i] < l.running[j] })
	return l, nil
}

// fleetRSS sums VmRSS (KiB) over the processes of every instance cgroup
// under the daemon's parent cgroup and says how many processes it read.
// Every controller hierarchy (cpu, memory on cgroup v1) lists the same
// processes, so the first that has any is read.
func fleetRSS(cgroup string) (kib int64, procs int) {
	for _, parent := range ownCgroups(cgroup) {
		subs, _ := filepath.Glob(filepath.Join(parent, "i-*"))
		for _, sub := range subs {
			for _, pid := range cgroupPIDs(sub) {
				if sizes, err := statusSizes(pid); err == nil {
					kib += sizes["VmRSS"]
					procs++
				}
			}
		}
		if procs > 0 {
			return kib, procs
		}
	}
	return kib, procs
}
