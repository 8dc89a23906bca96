// Package supervisor runs each instance's gureum-vmm process for the
// control plane: it starts the VMM detached from the daemon, in its own
// cgroup with CPU and memory limits, talks to it only through the VMM's
// socket API (gureum/vmm/api), watches it, reports how it ended, and
// re-adopts running VMMs after the daemon itself was restarted or killed.
//
// Files, process model and cgroups are described in docs/supervision.md.
//
// Concurrency: every exported method of Supervisor is safe for concurrent
// use. Each instance has one watcher goroutine; Config.OnExit is called on
// it, so calls for different instances may run at the same time.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"gureum/vmm/api"
)

// Config configures a Supervisor.
type Config struct {
	// RunDir holds one directory per instance (created if missing). A
	// supervisor started later on the same RunDir re-adopts the VMMs
	// recorded there.
	RunDir string
	// VMM is the gureum-vmm binary.
	VMM string
	// CgroupName names gureum's parent group in each cgroup hierarchy
	// (default "gureum"); instance groups are made below it.
	CgroupName string
	// CgroupNested puts the parent group under the group the supervisor
	// itself runs in instead of under the hierarchy's root: for a daemon
	// given a delegated subtree, and for tests.
	CgroupNested bool
	// OnExit is told when a VMM that Start returned (or Adopt found) ends.
	// It runs on the instance's watcher goroutine after the instance's
	// cgroup and run directory were removed, so it may Start the same ID
	// again (as for EndReboot). May be nil.
	OnExit func(Exit)
	// Logger receives what the supervisor cannot report otherwise (a
	// cgroup it could not remove). Default slog.Default().
	Logger *slog.Logger
	// StartTimeout bounds Start's wait for the VMM's socket (default 10 s).
	StartTimeout time.Duration
}

// Info describes one supervised instance.
type Info struct {
	ID          string
	Spec        Spec
	Limits      Limits
	PID         int // the gureum-vmm process
	WrapperPID  int // its parent, which records its exit status
	RunDir      string
	APISock     string
	ConsoleSock string
	ConsoleLog  string
	VMMLog      string
	// CgroupDirs are the instance's cgroup directories (one under v2, one
	// per controller under v1).
	CgroupDirs []string
	StartedAt  time.Time
	// Adopted is set for a VMM found running by Adopt.
	Adopted bool
}

// Errors.
var (
	ErrExists   = errors.New("instance already has a VMM")
	ErrNotFound = errors.New("no VMM for this instance")
	ErrClosed   = errors.New("supervisor closed")
)

// Supervisor starts and watches VMM processes.
type Supervisor struct {
	cfg    Config
	logger *slog.Logger
	cg     *cgroupSystem
	ctx    context.Context // cancelled by Close: watchers stop
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	insts map[string]*instance
}

// instance is one VMM under watch.
type instance struct {
	dir    string
	client *api.Client // set at creation, never changed
	away   bool        // ended before this supervisor adopted it
	note   string      // overrides the classified reason (set before the watcher starts)

	mu       sync.Mutex
	rec      record
	adopted  bool
	last     *api.VMInfo // last GET /vm answer
	ready    bool        // Start returned it / Adopt adopted it: report its end
	finished bool        // the watcher has begun reporting the end
	exit     Exit
	done     chan struct{} // closed once exit is set and reported
}

// New makes a supervisor on cfg.RunDir. It finds the cgroup hierarchies
// and creates gureum's parent group, but touches no instance: call Adopt
// to take over VMMs left by an earlier supervisor.
func New(cfg Config) (*Supervisor, error) {
	if cfg.RunDir == "" || cfg.VMM == "" {
		return nil, errors.New("supervisor: RunDir and VMM are required")
	}
	if cfg.CgroupName == "" {
		cfg.CgroupName = "gureum"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	if err := os.MkdirAll(cfg.RunDir, 0o700); err != nil {
		return nil, fmt.Errorf("supervisor: run directory: %w", err)
	}
	cg, err := detectCgroups(cfg.CgroupName, cfg.CgroupNested)
	if err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	if err := cg.ensureParent(); err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Supervisor{cfg: cfg, logger: cfg.Logger, cg: cg, ctx: ctx, cancel: cancel, insts: map[string]*instance{}}, nil
}

// Close stops watching. The VMMs keep running, and a later supervisor on
// the same run directory adopts them; exits that happen meanwhile are
// reported to that one.
func (s *Supervisor) Close() {
	s.cancel()
	s.wg.Wait()
}

// CgroupParents returns gureum's parent group directories (cpu, memory;
// equal under cgroup v2).
func (s *Supervisor) CgroupParents() (cpu, memory string) {
	return s.cg.cpuParent, s.cg.memParent
}

// Start launches the VMM for spec and returns once its API socket answers.
// If the VMM ends before that, Start returns an error that says how (and
// OnExit is not called for it); the cgroup and run directory are removed.
func (s *Supervisor) Start(ctx context.Context, spec Spec) (Info, error) {
	if err := spec.validate(); err != nil {
		return Info{}, err
	}
	if s.ctx.Err() != nil {
		return Info{}, ErrClosed
	}
	dir := filepath.Join(s.cfg.RunDir, spec.ID)
	// Reserve the ID first, so neither a concurrent Start nor Adopt
	// (which skips known IDs) touches the directory being set up.
	in := &instance{dir: dir, done: make(chan struct{}), rec: record{ID: spec.ID, Spec: spec},
		client: api.NewClient(filepath.Join(dir, apiSockName))}
	s.mu.Lock()
	if _, ok := s.insts[spec.ID]; ok {
		s.mu.Unlock()
		return Info{}, fmt.Errorf("start %s: %w", spec.ID, ErrExists)
	}
	s.insts[spec.ID] = in
	s.mu.Unlock()
	unreserve := func() {
		s.mu.Lock()
		delete(s.insts, spec.ID)
		s.mu.Unlock()
	}
	// A directory left from an earlier supervisor belongs to a VMM that
	// Adopt has not taken over yet.
	if err := os.Mkdir(dir, 0o700); err != nil {
		unreserve()
		if errors.Is(err, os.ErrExist) {
			return Info{}, fmt.Errorf("start %s: %w", spec.ID, ErrExists)
		}
		return Info{}, fmt.Errorf("start %s: %w", spec.ID, err)
	}
	rec := record{
		ID:          spec.ID,
		Spec:        spec,
		Limits:      spec.limits(),
		Cgroup:      s.cg.group(spec.ID),
		APISock:     filepath.Join(dir, apiSockName),
		ConsoleSock: filepath.Join(dir, consoleSockName),
		ConsoleLog:  filepath.Join(dir, consoleLogName),
		VMMLog:      filepath.Join(dir, vmmLogName),
		StartedAt:   time.Now().UTC(),
	}
	fail := func(err error) (Info, error) {
		rec.Cgroup.remove()
		os.RemoveAll(dir)
		unreserve()
		return Info{}, fmt.Errorf("start %s: %w", spec.ID, err)
	}
	// A unix socket path must fit sun_path (108 bytes with the NUL).
	if len(rec.ConsoleSock) >= 108 || len(rec.APISock) >= 108 {
		return fail(fmt.Errorf("run directory %s too long for a unix socket path", dir))
	}
	if err := rec.Cgroup.create(rec.Limits); err != nil {
		return fail(err)
	}
	// Record before the process exists: a supervisor that dies from here
	// on leaves a record its successor can clean up after.
	if err := writeRecord(dir, rec); err != nil {
		return fail(err)
	}
	logFile, err := os.OpenFile(rec.VMMLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fail(fmt.Errorf("vmm log: %w", err))
	}
	argv := wrapperCommand(spec.NetNS, filepath.Join(dir, vmmPIDName), filepath.Join(dir, exitFileName),
		rec.Cgroup.procsFiles(), append([]string{s.cfg.VMM}, spec.vmmArgs(rec)...))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile // stdin stays nil: /dev/null
	// Setsid: a new session and process group, with no controlling
	// terminal. Signals aimed at the daemon's group or terminal (Ctrl-C,
	// a hang-up, a service manager killing the daemon's process group)
	// do not reach the VMM.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	logFile.Close()
	if err != nil {
		return fail(fmt.Errorf("run wrapper: %w", err))
	}
	pid := cmd.Process.Pid
	// Not yet waited for, so even if it already exited the PID is still
	// this process (a zombie) and its start time is readable.
	st, err := readProcStat(pid)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return fail(fmt.Errorf("wrapper %d: %w", pid, err))
	}
	// From here the watcher owns the process: it waits through a pidfd
	// (which also serves adopted VMMs), so exec's own handle is released.
	cmd.Process.Release()
	rec.WrapperPID, rec.WrapperTime = pid, st.start
	in.mu.Lock()
	in.rec = rec
	in.mu.Unlock()
	s.wg.Add(1)
	go s.watch(in)

	if err := s.awaitReady(ctx, in); err != nil {
		// Make sure it ends, then report how.
		s.killInstance(in)
		select {
		case <-in.done:
		case <-s.ctx.Done():
			// Closed meanwhile: the watcher stopped and will not report.
			return Info{}, fmt.Errorf("start %s: %w (%w)", spec.ID, err, ErrClosed)
		}
		e := in.exit
		msg := fmt.Sprintf("%v (VMM ended: %s: %s)", err, e.Kind, e.Reason)
		if t := lastLine(e.LogTail); t != "" {
			msg += "; last output: " + t
		}
		return Info{}, fmt.Errorf("start %s: %s", spec.ID, msg)
	}
	return in.info(), nil
}

// awaitReady waits for the wrapper's VMM PID file, records the VMM's PID
// and start time, then waits for the API to answer. On success the
// instance is marked ready (its end will go to OnExit).
func (s *Supervisor) awaitReady(ctx context.Context, in *instance) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StartTimeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	wait := func() error {
		select {
		case <-in.done:
			return errors.New("VMM exited during start")
		case <-ctx.Done():
			return fmt.Errorf("VMM not ready: %w", ctx.Err())
		case <-tick.C:
			return nil
		}
	}
	for {
		if in.learnVMMPID() {
			break
		}
		if err := wait(); err != nil {
			return err
		}
	}
	in.mu.Lock()
	rec := in.rec
	in.mu.Unlock()
	if err := writeRecord(in.dir, rec); err != nil {
		return err
	}
	for {
		tctx, tcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		v, err := in.client.VM(tctx)
		tcancel()
		if err == nil {
			in.mu.Lock()
			defer in.mu.Unlock()
			if in.finished {
				return errors.New("VMM exited during start")
			}
			in.last, in.ready = &v, true
			return nil
		}
		if err := wait(); err != nil {
			return err
		}
	}
}

// learnVMMPID reads the PID the wrapper wrote and the VMM's start time.
// The PID is trusted only if that process is in the instance's cgroup,
// which only the wrapper's children can be.
func (in *instance) learnVMMPID() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.rec.VMMPID != 0 {
		return true
	}
	pid, ok := readIntFile(filepath.Join(in.dir, vmmPIDName))
	if !ok {
		return false
	}
	st, err := readProcStat(pid)
	if err != nil {
		return false
	}
	pids, _ := in.rec.Cgroup.pids()
	if !containsInt(pids, pid) {
		return false
	}
	in.rec.VMMPID, in.rec.VMMTime = pid, st.start
	return true
}

func containsInt(list []int, n int) bool {
	for _, x := range list {
		if x == n {
			return true
		}
	}
	return false
}

// info is the public description of in.
func (in *instance) info() Info {
	in.mu.Lock()
	defer in.mu.Unlock()
	r := in.rec
	return Info{
		ID: r.ID, Spec: r.Spec, Limits: r.Limits, PID: r.VMMPID, WrapperPID: r.WrapperPID,
		RunDir: in.dir, APISock: r.APISock, ConsoleSock: r.ConsoleSock, ConsoleLog: r.ConsoleLog,
		VMMLog: r.VMMLog, CgroupDirs: r.Cgroup.dirs(), StartedAt: r.StartedAt, Adopted: in.adopted,
	}
}

// lookup returns the instance with this ID.
func (s *Supervisor) lookup(id string) (*instance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.insts[id]
	if !ok {
		return nil, fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	return in, nil
}

// Get describes one supervised instance.
func (s *Supervisor) Get(id string) (Info, error) {
	in, err := s.lookup(id)
	if err != nil {
		return Info{}, err
	}
	return in.info(), nil
}

// List describes every supervised instance.
func (s *Supervisor) List() []Info {
	s.mu.Lock()
	ins := make([]*instance, 0, len(s.insts))
	for _, in := range s.insts {
		ins = append(ins, in)
	}
	s.mu.Unlock()
	out := make([]Info, 0, len(ins))
	for _, in := range ins {
		out = append(out, in.info())
	}
	return out
}

// Wait blocks until the instance's VMM has ended and been reported, and
// returns its Exit.
func (s *Supervisor) Wait(ctx context.Context, id string) (Exit, error) {
	in, err := s.lookup(id)
	if err != nil {
		return Exit{}, err
	}
	select {
	case <-in.done:
		return in.exit, nil
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
}
