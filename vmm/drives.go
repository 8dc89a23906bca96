package vmm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"gureum/storage"
	"gureum/storage/ratelimit"
	"gureum/vmm/api"
	"gureum/vmm/virtio"
	"gureum/vmm/virtio/blk"
)

// Drives: the VMM side of block storage (docs/storage.md, "The VMM side").
//
// A drive is one virtio-blk device slot of the VM. It outlives a boot: its
// open disk, its path and its I/O limiter stay across guest reboots, and
// each boot builds a fresh blk.Device over them. Drives come from --disk
// (with a disk) and --drive-slots (empty: capacity 0), and the API changes
// them while the guest runs: attach a disk to an empty drive, detach it,
// grow it, switch it to a new top file for a snapshot, change its limits.
//
// Why slots and not PCI hotplug: hotplug needs a hotplug controller the
// guest knows about (ACPI PCI hotplug or a PCIe root port with hotplug
// slots), which this machine does not have. A virtio-blk device whose
// capacity goes from 0 to N and back is enough: Linux re-reads capacity on
// a configuration-change interrupt and resizes the block device.
//
// Locking: driveSet.mu serialises every change and is held while a change
// runs on the event loop, so two API calls never interleave on one drive.
// The device itself is touched only on the event loop.

// Errors of the drive operations (the API maps them to HTTP statuses).
var (
	// ErrNoDrive: no drive has that ID.
	ErrNoDrive = errors.New("no such drive")
	// ErrDriveState: attach to a drive that has a disk, or change or
	// detach a drive that has none.
	ErrDriveState = errors.New("drive not in the right state")
)

// drive is one virtio-blk slot. Fields are guarded by driveSet.mu.
type drive struct {
	id       string
	slot     bool // made empty at boot by --drive-slots
	serial   string
	path     string
	readOnly bool
	disk     storage.Disk // nil: empty
	limiter  *ratelimit.Limiter

	// This boot's device and event loop; nil between boots.
	dev  *blk.Device
	loop *eventLoop
}

// driveSet is the VM's drives, in PCI order.
type driveSet struct {
	mu     sync.Mutex
	drives []*drive
}

// driveSet returns the VM's drives; a VM not made by New has none.
func (v *VM) driveSet() *driveSet {
	if v.drives == nil {
		return &driveSet{}
	}
	return v.drives
}

// driveID names drive i like Linux names the i-th virtio disk.
func driveID(i int) string { return "vd" + string(rune('a'+i)) }

// newDriveSet takes ownership of the disks opened for cfg.Disks (same
// order) and adds cfg.DriveSlots empty drives.
func newDriveSet(cfg Config, disks []storage.Disk) *driveSet {
	s := &driveSet{}
	now := time.Now()
	for i, disk := range disks {
		c := cfg.Disks[i]
		s.drives = append(s.drives, &drive{
			id: driveID(i), serial: fmt.Sprintf("gureum-disk%d", i),
			path: c.Path, readOnly: c.ReadOnly, disk: disk, limiter: ratelimit.New(c.Limits, now),
		})
	}
	for j := range cfg.DriveSlots {
		i := len(disks) + j
		s.drives = append(s.drives, &drive{
			id: driveID(i), slot: true, serial: fmt.Sprintf("gureum-disk%d", i),
			limiter: ratelimit.New(ratelimit.Unlimited, now),
		})
	}
	return s
}

// close closes every attached disk (each flushes). Call after Run.
func (s *driveSet) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.drives {
		if d.disk != nil {
			d.disk.Close()
			d.disk = nil
		}
	}
}

// addDrives builds this boot's virtio-blk devices, one per drive, with
// add (which puts a device on the PCI bus).
func (v *VM) addDrives(m *machine, add func(name string, dev virtio.Device) (*virtio.PCITransport, error)) error {
	s := v.driveSet()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, d := range s.drives {
		name := fmt.Sprintf("block%d", i)
		dev := blk.New(d.disk, d.serial)
		dev.SetLimiter(d.limiter)
		if _, err := add(name, dev); err != nil {
			return err
		}
		m.addMetrics(name, func() any { return dev.Metrics() })
		d.dev, d.loop = dev, m.loop
		// Runs before the loop stops (cleanups run in reverse order).
		m.onCleanup(func() {
			s.mu.Lock()
			if d.dev == dev {
				d.dev, d.loop = nil, nil
			}
			s.mu.Unlock()
		})
	}
	return nil
}

// onLoop runs fn with the drive's device on its event loop and waits. It
// returns false, without running fn, if there is no device (between
// boots) or the loop has ended; the caller then changes the drive alone
// and the next boot's device picks the change up. Caller holds s.mu.
func (d *drive) onLoop(fn func(dev *blk.Device)) bool {
	dev, l := d.dev, d.loop
	if dev == nil {
		return false
	}
	return l.call(func() { fn(dev) })
}

func (s *driveSet) find(id string) (*drive, error) {
	for _, d := range s.drives {
		if d.id == id {
			return d, nil
		}
	}
	return nil, fmt.Errorf("%w %q", ErrNoDrive, id)
}

func (d *drive) info() api.DriveInfo {
	i := api.DriveInfo{ID: d.id, Slot: d.slot, Path: d.path, ReadOnly: d.readOnly, Limits: api.LimitsFrom(d.limiter.Limits())}
	if d.disk != nil {
		i.SizeBytes = d.disk.Size()
	}
	return i
}

// Drives describes every drive, in PCI order.
func (v *VM) Drives() []api.DriveInfo {
	s := v.driveSet()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []api.DriveInfo{}
	for _, d := range s.drives {
		out = append(out, d.info())
	}
	return out
}

// Drive describes one drive.
func (v *VM) Drive(id string) (api.DriveInfo, error) {
	s := v.driveSet()
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.find(id)
	if err != nil {
		return api.DriveInfo{}, err
	}
	return d.info(), nil
}

// AttachDrive opens req.Path and puts it into the empty drive id. The
// guest sees the capacity change from 0.
func (v *VM) AttachDrive(id string, req api.DriveAttach) (api.DriveInfo, error) {
	s := v.driveSet()
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.find(id)
	if err != nil {
		return api.DriveInfo{}, err
	}
	if d.disk != nil {
		return api.DriveInfo{}, fmt.Errorf("%w: drive %s already has %s attached", ErrDriveState, id, d.path)
	}
	if req.Path == "" {
		return api.DriveInfo{}, invalid("attach drive %s: path is required", id)
	}
	if req.Limits != nil {
		if err := req.Limits.Check(); err != nil {
			return api.DriveInfo{}, invalid("attach drive %s: %v", id, err)
		}
	}
	disk, err := storage.Open(req.Path, storage.OpenOptions{ReadOnly: req.ReadOnly, Format: req.Format})
	if err != nil {
		return api.DriveInfo{}, invalid("attach drive %s: %v", id, err)
	}
	if req.Limits != nil {
		d.limiter.SetLimits(req.Limits.Limits(), time.Now())
	}
	d.onLoop(func(dev *blk.Device) { dev.SetDisk(disk) })
	d.disk, d.path, d.readOnly = disk, req.Path, req.ReadOnly
	return d.info(), nil
}

// DetachDrive flushes the drive's disk, takes it from the device (the
// guest sees capacity 0) and closes it. A failed flush detaches nothing.
func (v *VM) DetachDrive(id string) error {
	s := v.driveSet()
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.find(id)
	if err != nil {
		return err
	}
	if d.disk == nil {
		return fmt.Errorf("%w: drive %s has nothing attached", ErrDriveState, id)
	}
	old := d.disk
	var flushErr error
	detach := func() {
		if flushErr = old.Flush(); flushErr == nil && d.dev != nil {
			d.dev.SetDisk(nil)
		}
	}
	if !d.onLoop(func(*blk.Device) { detach() }) {
		detach()
	}
	if flushErr != nil {
		return fmt.Errorf("detach drive %s: flush: %w", id, flushErr)
	}
	d.disk, d.path, d.readOnly = nil, "", false
	if err := old.Close(); err != nil {
		return fmt.Errorf("detach drive %s: close: %w", id, err)
	}
	return nil
}

// UpdateDrive applies req to drive id: switch to a new top, grow, change
// limits, in that order. Everything that can be checked before a change
// is checked first, so bad input changes nothing.
func (v *VM) UpdateDrive(id string, req api.DriveUpdate) (api.DriveInfo, error) {
	s := v.driveSet()
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.find(id)
	if err != nil {
		return api.DriveInfo{}, err
	}
	if req.Top == "" && req.SizeBytes == 0 && req.Limits == nil {
		return api.DriveInfo{}, invalid("update drive %s: nothing to change (give top, size_bytes or limits)", id)
	}
	if (req.Top != "" || req.SizeBytes != 0) && d.disk == nil {
		return api.DriveInfo{}, fmt.Errorf("%w: drive %s has nothing attached", ErrDriveState, id)
	}
	if req.SizeBytes < 0 || (req.SizeBytes != 0 && req.SizeBytes < d.disk.Size()) {
		return api.DriveInfo{}, invalid("update drive %s: cannot shrink from %d to %d bytes: %v", id, d.disk.Size(), req.SizeBytes, storage.ErrShrink)
	}
	if req.SizeBytes != 0 && d.readOnly {
		return api.DriveInfo{}, invalid("update drive %s: cannot grow a read-only drive", id)
	}
	if req.Limits != nil {
		if err := req.Limits.Check(); err != nil {
			return api.DriveInfo{}, invalid("update drive %s: %v", id, err)
		}
	}
	if req.Top != "" {
		if err := d.switchTop(req.Top); err != nil {
			return api.DriveInfo{}, fmt.Errorf("update drive %s: %w", id, err)
		}
	}
	if req.SizeBytes != 0 && req.SizeBytes != d.disk.Size() {
		if err := d.grow(req.SizeBytes); err != nil {
			return api.DriveInfo{}, fmt.Errorf("update drive %s: %w", id, err)
		}
	}
	if req.Limits != nil {
		d.limiter.SetLimits(req.Limits.Limits(), time.Now())
		d.onLoop(func(dev *blk.Device) { dev.Retry() })
	}
	return d.info(), nil
}

// switchTop continues the drive on newTop, a qcow2 file whose backing file
// is the current one. On the event loop, between two guest requests:
// flush the current file (so its metadata on disk is complete), open the
// new top (which opens the current file again, read-only, as its backing
// and therefore sees everything written so far), check it is built on the
// current file, and swap. The old handle is closed afterwards; from then
// on only the new top is written. On error the drive is unchanged.
func (d *drive) switchTop(newTop string) error {
	old, oldPath := d.disk, d.path
	var next storage.Disk
	var err error
	swap := func(dev *blk.Device) {
		if err = old.Flush(); err != nil {
			err = fmt.Errorf("flush %s: %w", d.path, err)
			return
		}
		next, err = openTopOf(newTop, d.path, d.readOnly)
		if err == nil && dev != nil {
			dev.SetDisk(next)
		}
	}
	if !d.onLoop(swap) {
		swap(nil)
	}
	if err != nil {
		return err
	}
	d.disk, d.path = next, newTop
	if err := old.Close(); err != nil {
		return fmt.Errorf("close old top %s: %w", oldPath, err)
	}
	return nil
}

// openTopOf opens newTop as qcow2 and checks that its backing file is the
// file at current. The error wraps ErrInvalidConfig for bad input.
func openTopOf(newTop, current string, readOnly bool) (storage.Disk, error) {
	disk, err := storage.Open(newTop, storage.OpenOptions{Format: "qcow2", ReadOnly: readOnly})
	if err != nil {
		return nil, invalid("open new top: %v", err)
	}
	b, ok := disk.(interface{ BackingFile() string })
	backing := ""
	if ok {
		backing = b.BackingFile()
	}
	if backing != "" && !filepath.IsAbs(backing) {
		backing = filepath.Join(filepath.Dir(newTop), backing)
	}
	if !sameFile(backing, current) {
		disk.Close()
		return nil, invalid("new top %s is backed by %q, not by the drive's file %s", newTop, backing, current)
	}
	return disk, nil
}

func sameFile(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	sa, err := os.Stat(a)
	if err != nil {
		return false
	}
	sb, err := os.Stat(b)
	return err == nil && os.SameFile(sa, sb)
}

// grow resizes the drive's disk to n bytes and tells the guest. On the
// event loop, so no request runs against a half-grown disk.
func (d *drive) grow(n int64) error {
	r, ok := d.disk.(storage.Resizer)
	if !ok {
		return invalid("the %s disk format cannot grow", d.path)
	}
	var err error
	resize := func(dev *blk.Device) {
		if err = r.Resize(n); err == nil && dev != nil {
			dev.Resize(d.disk.Size())
		}
	}
	if !d.onLoop(resize) {
		resize(nil)
	}
	if err != nil {
		if errors.Is(err, storage.ErrShrink) {
			return invalid("grow to %d bytes: %v", n, err)
		}
		return fmt.Errorf("grow to %d bytes: %w", n, err)
	}
	return nil
}
