// Package service is the control plane of one gureum host: the instances,
// volumes and snapshots that `gureum daemon` serves over its REST API.
//
// It ties the foundations together:
//
//   - hypervisor/store keeps every record (bbolt on disk);
//   - hypervisor/lifecycle decides every instance transition and records it
//     before anything is done ("persist, then act"); this package is its
//     Actuator, doing each step with the pieces below;
//   - hypervisor/supervisor runs one gureum-vmm per instance, detached, in a
//     cgroup, and re-adopts them after the daemon restarts;
//   - storage/volume holds the EBS volumes (root volumes are copy-on-write
//     children of an image's root disk), storage/instancestore the
//     ephemeral disks;
//   - hypervisor/instancetype, credits and billing account capacity, CPU
//     credits and usage.
//
// Concurrency: every exported method may be called from any goroutine (the
// HTTP handlers call them concurrently). Requests only record a transition
// and return; a reconciler goroutine per instance (started by kick) drives
// the recorded operation to its end through lifecycle.Driver, which
// serializes the work on one instance. VMM exits arrive on the supervisor's
// watcher goroutines (onExit) and are fed to the same state machine.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"gureum/api"
	"gureum/hypervisor/accounts"
	"gureum/hypervisor/billing"
	"gureum/hypervisor/instancetype"
	"gureum/hypervisor/lifecycle"
	"gureum/hypervisor/store"
	"gureum/hypervisor/supervisor"
	"gureum/images/ami"
	"gureum/storage/volume"
)

// AdminAccount is the account every request acts for until accounts
// exist: the owner of everything created through the unix socket.
const AdminAccount = "000000000001"

// Caller is who a request acts for. Resources of other accounts are
// invisible to it (NotFound, as EC2 answers).
type Caller struct {
	AccountID string
}

// Admin is the caller of requests that come through the unix socket.
var Admin = Caller{AccountID: AdminAccount}

// ResolvedImage is what an instance boots, as an ImageResolver finds it
// for an AMI id (or the request describes it directly).
type ResolvedImage struct {
	ImageID string
	Kernel  string
	Initrd  string
	Cmdline string
	// RootSnapshotID is a snapshot of the volume store that root volumes
	// are made from; RootDisk a file (raw or qcow2) imported once into
	// such a snapshot. At most one is set; neither means an empty root
	// volume.
	RootSnapshotID string
	RootDisk       string
	// Boot is the AMI's boot recipe, kept in the instance's record so
	// that an image can be made from the instance later; nil when the
	// request described the image directly.
	Boot *ami.Boot
}

// ImageResolver turns an AMI id into boot files, checking that caller may
// launch it. The AMI registry plugs in here; without one, AMI ids are
// InvalidAMIID.NotFound.
type ImageResolver interface {
	Resolve(ctx context.Context, caller Caller, imageID string) (ResolvedImage, error)
}

// Config configures a Service.
type Config struct {
	// DataDir holds the state file, volumes, instance stores, saved
	// console logs and (by default) the VMM run directories.
	DataDir string
	// RunDir holds one directory per running VMM (sockets, console log);
	// default DataDir/run. Unix socket paths must stay under 108 bytes.
	RunDir string
	// VMM is the gureum-vmm binary.
	VMM string
	// Host is the capacity offered to instances; zero VCPUs or MemoryGiB
	// are read from the machine.
	Host instancetype.Host
	// MaxGuestMemoryMiB and MaxGuestVCPUs, when set, cap what a guest is
	// really given (the instance still reports and is billed as its type):
	// for small hosts and tests that run many instances.
	MaxGuestMemoryMiB uint64
	MaxGuestVCPUs     int
	// StopTimeout is how long a graceful stop waits for the guest to
	// power off before the VMM stops it (default 30 s).
	StopTimeout time.Duration
	// ReconcileEvery is the period of the reconciler's sweep: retries of
	// failed steps, expiry of terminated instances (default 5 s).
	ReconcileEvery time.Duration
	// CreditEvery is the period of CPU credit sampling (default 10 s).
	CreditEvery time.Duration
	// PricesFile is the administrator's price list (default: built-in
	// prices when the file DataDir/prices.json does not exist).
	PricesFile string
	// Images resolves AMI ids; nil means none can be resolved.
	Images ImageResolver
	// CgroupName and CgroupNested are passed to the supervisor.
	CgroupName   string
	CgroupNested bool
	// Zones are the host's availability zones (default DefaultZones).
	// Subnets and volumes are in one; instances are in their subnet's.
	Zones []string
	// Network configures VPCs (network.go); off by default.
	Network NetworkConfig
	// Now is the clock of states and billing; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Service is one host's control plane.
type Service struct {
	cfg     Config
	log     *slog.Logger
	store   store.Store
	volumes *volume.Store
	sup     *supervisor.Supervisor
	cap     *instancetype.Capacity
	devices instancetype.Devices
	driver  *lifecycle.Driver
	prices  billing.Prices

	accounts *accounts.Service // tenants and API tokens (accounts.go)
	images   *ami.Registry     // AMIs (images.go)
	net      *networking       // VPCs, nil when networking is off (network.go)

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex      // guards inflight, again
	inflight map[string]bool // instances a drive goroutine works on
	again    map[string]bool // kicked while in flight: drive once more

	importMu sync.Mutex // one root-disk import at a time

	liveLocks instanceLocks // a VMM's start vs. volume work through it (volumes_live.go)
}

// Paths inside DataDir.
const (
	stateFile        = "state.db"
	volumesDir       = "volumes"
	instanceStoreDir = "instance-store"
	consoleDir       = "console"
	runDir           = "run"
	pricesFile       = "prices.json"
)

func (s *Service) now() time.Time {
	if s.cfg.Now != nil {
		return s.cfg.Now().UTC()
	}
	return time.Now().UTC()
}

// Open opens (or creates) the data directory, re-adopts the VMMs an
// earlier daemon left running, reconciles what changed while no daemon
// ran, and starts the reconciler. It fails if another daemon has the
// directory.
func Open(cfg Config) (*Service, error) {
	if cfg.DataDir == "" || cfg.VMM == "" {
		return nil, errors.New("service: DataDir and VMM are required")
	}
	if cfg.RunDir == "" {
		cfg.RunDir = filepath.Join(cfg.DataDir, runDir)
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 30 * time.Second
	}
	if cfg.ReconcileEvery <= 0 {
		cfg.ReconcileEvery = 5 * time.Second
	}
	if cfg.CreditEvery <= 0 {
		cfg.CreditEvery = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for _, d := range []string{cfg.DataDir, filepath.Join(cfg.DataDir, consoleDir), filepath.Join(cfg.DataDir, instanceStoreDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("service: %w", err)
		}
	}
	s := &Service{cfg: cfg, log: cfg.Logger, inflight: map[string]bool{}, again: map[string]bool{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	var err error
	if s.prices, err = loadPrices(cfg); err != nil {
		return nil, err
	}
	if s.devices, err = instancetype.DetectDevices("/"); err != nil {
		s.log.Warn("device detection failed; accelerated types unavailable", "err", err)
	}
	host := cfg.Host
	if host.VCPUs == 0 {
		host.VCPUs = runtime.NumCPU()
	}
	if host.MemoryGiB == 0 {
		host.MemoryGiB = hostMemoryGiB()
	}
	host.Devices = s.devices
	s.cap = instancetype.NewCapacity(host)

	bolt, err := store.OpenBolt(filepath.Join(cfg.DataDir, stateFile))
	if err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	s.store = bolt
	s.volumes, err = volume.Open(filepath.Join(cfg.DataDir, volumesDir), volume.Options{Now: s.now, Drives: (*liveDrives)(s)})
	if err != nil {
		bolt.Close()
		return nil, fmt.Errorf("service: %w", err)
	}
	// Accounts and images before the start-up sweep (recover): an image
	// interrupted while being made claims its snapshot first.
	if err = s.openAccounts(); err == nil {
		err = s.openImages()
	}
	if err != nil {
		s.volumes.Close()
		bolt.Close()
		return nil, err
	}
	s.driver = &lifecycle.Driver{Store: s.store, Actuator: (*actuator)(s), Now: s.now}
	s.sup, err = supervisor.New(supervisor.Config{
		RunDir: cfg.RunDir, VMM: cfg.VMM, CgroupName: cfg.CgroupName, CgroupNested: cfg.CgroupNested,
		OnExit: s.onExit, Logger: s.log,
	})
	if err != nil {
		s.volumes.Close()
		bolt.Close()
		return nil, fmt.Errorf("service: %w", err)
	}
	// The network before the sweep: VMMs that start again need their VPC.
	if err := s.openNetwork(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.recover(); err != nil {
		s.Close()
		return nil, err
	}
	s.wg.Add(1)
	go s.reconcileLoop()
	s.wg.Add(1)
	go s.creditLoop()
	return s, nil
}

// Close stops the reconciler and the supervisor's watchers and closes the
// store. VMMs keep running; the next Open re-adopts them. Operations under
// way stay recorded and are resumed by the next Open.
func (s *Service) Close() error {
	s.cancel()
	s.wg.Wait()
	s.closeNetwork()
	s.sup.Close()
	verr := s.volumes.Close()
	serr := s.store.Close()
	return errors.Join(verr, serr)
}

func loadPrices(cfg Config) (billing.Prices, error) {
	path := cfg.PricesFile
	if path == "" {
		path = filepath.Join(cfg.DataDir, pricesFile)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return billing.DefaultPrices(), nil
		}
	}
	p, err := billing.LoadPrices(path)
	if err != nil {
		return p, fmt.Errorf("service: %w", err)
	}
	return p, nil
}

// hostMemoryGiB reads MemTotal from /proc/meminfo (1 GiB if unreadable).
func hostMemoryGiB() float64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 1
	}
	var kb float64
	for _, line := range strings.Split(string(b), "\n") {
		if n, _ := fmt.Sscanf(line, "MemTotal: %f kB", &kb); n == 1 {
			return kb / (1 << 20)
		}
	}
	return 1
}

// kick makes sure a goroutine drives instance id's recorded operation.
// A kick while one is already driving it makes that one look again when
// it is done, so no request is left undriven.
func (s *Service) kick(id string) {
	s.mu.Lock()
	if s.inflight[id] {
		s.again[id] = true
		s.mu.Unlock()
		return
	}
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		return
	}
	s.inflight[id] = true
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		for {
			if err := s.driver.Drive(s.ctx, id); err != nil && s.ctx.Err() == nil {
				s.log.Warn("operation step failed; will retry", "instance", id, "err", err)
			}
			s.mu.Lock()
			if s.again[id] && s.ctx.Err() == nil {
				delete(s.again, id)
				s.mu.Unlock()
				continue
			}
			delete(s.inflight, id)
			s.mu.Unlock()
			return
		}
	}()
}

// reconcileLoop retries operations whose step failed and removes
// terminated instances whose hour of visibility is over.
func (s *Service) reconcileLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.ReconcileEvery)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.resumeOwed()
		if err := s.sweepTerminated(); err != nil {
			s.log.Warn("sweep of terminated instances failed", "err", err)
		}
	}
}

// resumeOwed kicks every instance with an unfinished operation.
func (s *Service) resumeOwed() {
	var owed []string
	err := s.store.View(func(tx store.Tx) error {
		all, err := lifecycle.List(tx)
		for _, st := range all {
			if st.Op != nil {
				owed = append(owed, st.ID)
			}
		}
		return err
	})
	if err != nil {
		s.log.Warn("list of owed operations failed", "err", err)
	}
	for _, id := range owed {
		s.kick(id)
	}
}

// sweepTerminated deletes instances terminated over lifecycle.Retention
// ago, with the rest of their records, in one transaction.
func (s *Service) sweepTerminated() error {
	var gone []string
	err := s.store.Update(func(tx store.Tx) error {
		var err error
		gone, err = lifecycle.Sweep(tx, s.now())
		if err != nil {
			return err
		}
		for _, id := range gone {
			if err := tx.Delete(kindInstance, id); err != nil {
				return err
			}
			if err := tx.Delete(kindDrives, id); err != nil {
				return err
			}
		}
		return nil
	})
	for _, id := range gone {
		os.Remove(s.consolePath(id))
	}
	return err
}

func (s *Service) consolePath(id string) string {
	return filepath.Join(s.cfg.DataDir, consoleDir, id+".log")
}

// InstanceTypes lists the catalog with this host's availability.
func (s *Service) InstanceTypes() []api.InstanceTypeInfo {
	all := instancetype.All()
	out := make([]api.InstanceTypeInfo, 0, len(all))
	for _, t := range all {
		out = append(out, t.Info(s.devices))
	}
	return out
}

// Capacity returns what instances hold of the host now.
func (s *Service) Capacity() instancetype.Usage {
	return s.cap.Usage()
}

// CgroupParents returns the directories of gureum's parent cgroup (cpu,
// memory; equal under cgroup v2), which the daemon leaves in place and
// tests remove.
func (s *Service) CgroupParents() (cpu, memory string) {
	return s.sup.CgroupParents()
}
