package supervisor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"gureum/vmm/api"
)

// watch waits for the instance's VMM to end, then reports it. It runs on
// its own goroutine per instance and returns early, reporting nothing,
// when the supervisor is closed.
//
// The wrapper's end is the signal: it outlives the VMM by the time it takes
// to write the exit status file. If the wrapper was killed itself (no file),
// the VMM may still run; then the VMM process is watched directly and its
// status stays unknown.
func (s *Supervisor) watch(in *instance) {
	defer s.wg.Done()
	in.mu.Lock()
	r := in.rec
	in.mu.Unlock()
	status := -1
	if processAlive(r.WrapperPID, r.WrapperTime) || isZombie(r.WrapperPID, r.WrapperTime) {
		st, err := waitExit(s.ctx, r.WrapperPID, r.WrapperTime)
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			s.logger.Warn("supervisor: watch failed", "instance", r.ID, "err", err)
		}
		status = st
	}
	if st, ok := readIntFile(filepath.Join(in.dir, exitFileName)); ok {
		status = st
	} else if status < 0 || status > 128 {
		// The wrapper was killed (or is not ours to wait for) before it
		// recorded anything: the VMM's own status is unknown. (A wrapper
		// status up to 128 is the wrapper's own failure, e.g. 125.)
		status = -1
		in.learnVMMPID()
		in.mu.Lock()
		r = in.rec
		in.mu.Unlock()
		if processAlive(r.VMMPID, r.VMMTime) {
			if _, err := waitExit(s.ctx, r.VMMPID, r.VMMTime); err != nil && s.ctx.Err() != nil {
				return
			}
		}
	}
	s.finish(in, status)
}

// isZombie reports whether pid is the process started at start and has
// exited but not been reaped.
func isZombie(pid int, start uint64) bool {
	st, err := readProcStat(pid)
	return err == nil && st.start == start && st.state == 'Z'
}

// finish classifies the end, removes the cgroup and the run directory,
// forgets the instance and reports the Exit.
func (s *Supervisor) finish(in *instance, status int) {
	in.mu.Lock()
	in.finished = true
	r, last, ready, away := in.rec, in.last, in.ready, in.away
	in.mu.Unlock()

	logTail := tailFile(r.VMMLog, 4096)
	kind, reason := classify(status, last, logTail)
	if in.note != "" {
		kind, reason = EndCrash, in.note
	}
	e := Exit{
		ID: r.ID, Kind: kind, Reason: reason, Status: status, WhileAway: away, At: time.Now().UTC(),
		ConsoleTail: tailFile(r.ConsoleLog, 16384), LogTail: logTail,
	}
	if last != nil {
		e.BootCount = last.BootCount
	}
	if err := removeCgroup(r.Cgroup); err != nil {
		s.logger.Warn("supervisor: cgroup not removed", "instance", r.ID, "err", err)
	}
	if err := os.RemoveAll(in.dir); err != nil {
		s.logger.Warn("supervisor: run directory not removed", "instance", r.ID, "err", err)
	}
	s.mu.Lock()
	if s.insts[r.ID] == in {
		delete(s.insts, r.ID)
	}
	s.mu.Unlock()
	in.exit = e
	if ready && s.cfg.OnExit != nil {
		s.cfg.OnExit(e)
	}
	close(in.done)
}

// removeCgroup removes an instance's group. Anything still inside belongs
// to the instance by construction (only the wrapper and its children can
// have joined it), so leftovers are killed first.
func removeCgroup(g cgroup) error {
	for try := 0; try < 3; try++ {
		pids, _ := g.pids()
		if len(pids) == 0 {
			break
		}
		for _, p := range pids {
			unix.Kill(p, unix.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return g.remove()
}

// Adopt takes over the VMMs recorded in the run directory that this
// supervisor does not know yet: typically every one, right after the
// daemon restarted. A VMM is adopted when its process is alive with the
// recorded start time and its socket answers; it is then watched like one
// started here, and returned. A VMM that ended meanwhile is reported
// through OnExit with WhileAway set (how it ended comes from the status its
// wrapper recorded), and one that is alive but does not answer within a
// few seconds is killed and reported as crashed. Either way its cgroup and
// run directory are removed. Adopt returns only after every VMM it found
// ended has been reported, so that when it returns, each instance of the
// run directory is either adopted or already through OnExit.
func (s *Supervisor) Adopt(ctx context.Context) ([]Info, error) {
	ents, err := os.ReadDir(s.cfg.RunDir)
	if err != nil {
		return nil, fmt.Errorf("adopt: %w", err)
	}
	var adopted []Info
	var ended []*instance
	for _, ent := range ents {
		if !ent.IsDir() || !validID(ent.Name()) {
			continue
		}
		id := ent.Name()
		s.mu.Lock()
		_, known := s.insts[id]
		s.mu.Unlock()
		if known {
			continue
		}
		in, alive := s.adoptOne(ctx, filepath.Join(s.cfg.RunDir, id), id)
		if alive {
			adopted = append(adopted, in.info())
		} else {
			ended = append(ended, in)
		}
	}
	// Their watchers report them (finish) on their own goroutines; wait
	// for that here rather than through Wait, which no longer finds an
	// instance once finish has forgotten it but before OnExit has run.
	for _, in := range ended {
		select {
		case <-in.done:
		case <-ctx.Done():
			return adopted, ctx.Err()
		}
	}
	return adopted, nil
}

// adoptOne registers the instance in dir and starts its watcher; it reports
// whether the VMM was alive and answering.
func (s *Supervisor) adoptOne(ctx context.Context, dir, id string) (*instance, bool) {
	rec, err := readRecord(dir)
	if err != nil {
		// The previous supervisor died between creating the directory and
		// writing the record: no process was started yet.
		rec = record{ID: id, Cgroup: s.cg.group(id), VMMLog: filepath.Join(dir, vmmLogName),
			ConsoleLog: filepath.Join(dir, consoleLogName), APISock: filepath.Join(dir, apiSockName)}
	}
	in := &instance{dir: dir, rec: rec, client: api.NewClient(rec.APISock), done: make(chan struct{}),
		adopted: true, ready: true}
	// A launch interrupted before the VMM's PID was recorded: the wrapper
	// may have written it since.
	in.learnVMMPID()
	in.mu.Lock()
	r := in.rec
	in.mu.Unlock()

	alive := processAlive(r.VMMPID, r.VMMTime)
	if alive {
		var v api.VMInfo
		alive = false
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			tctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			v, err = in.client.VM(tctx)
			cancel()
			if err == nil {
				alive = true
				in.last = &v
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !alive {
			in.note = fmt.Sprintf("the VMM did not answer on its socket when re-adopted (%v), so it was killed", err)
			unix.Kill(r.VMMPID, unix.SIGKILL)
		}
	} else {
		in.away = true
		// The wrapper may be between the VMM's end and its own; it is
		// watched (and the VMM status file awaited) by watch.
	}
	s.mu.Lock()
	s.insts[id] = in
	s.mu.Unlock()
	s.wg.Add(1)
	go s.watch(in)
	return in, alive
}
