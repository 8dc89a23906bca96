package service

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	"gureum/api"
	"gureum/hypervisor/billing"
	"gureum/hypervisor/lifecycle"
	"gureum/hypervisor/store"
	"gureum/hypervisor/supervisor"
	"gureum/storage/volume"
	vmmapi "gureum/vmm/api"
)

// Volumes of running instances.
//
// gureum-vmm has no PCI hotplug; instead every VMM is started with
// driveSlots empty virtio-blk drives after its boot disks (--drive-slots).
// Attaching a volume to a running instance puts the volume's top file
// into a free drive (the guest sees the capacity go from 0 to the
// volume's size); detaching empties the drive again. A drive freed by a
// detach, a slot or a former boot disk alike, takes the next attach.
//
// The daemon must know which VMM drive holds which device of the
// instance, because the volume store asks for a volume's live drive by
// instance and device (volume.Drives) to snapshot, grow or re-limit it
// while the VMM has the file open. That map is a store record per
// instance (kindDrives), written before the VMM is started (boot disks
// get vda, vdb, ... in the order of the spec, as gureum-vmm names them)
// and changed in the same transaction that records an attach or detach.
// It is only believed while a VMM runs for the instance.

// A VMM that is starting has been given its volumes' top files but is not
// yet known to the supervisor, so liveDrives would send a snapshot or a
// growth to the closed files, and the new VMM would then write a frozen
// snapshot file. instanceLocks keeps the two apart: StartVMM holds the
// instance's lock from reading the volume paths until the VMM is
// registered, and volume work on an attached volume holds it around the
// volume store call.

// instanceLocks is a fixed set of mutexes picked by a hash of the
// instance ID: no map to grow or clean, at the price of two instances
// sometimes sharing one. The zero value is ready.
type instanceLocks struct {
	mu [64]sync.Mutex
}

// lock takes the lock of instance id and returns its unlock.
func (l *instanceLocks) lock(id string) func() {
	h := fnv.New32a()
	h.Write([]byte(id))
	m := &l.mu[h.Sum32()%uint32(len(l.mu))]
	m.Lock()
	return m.Unlock
}

// lockAttached takes the lock of the instance a volume is attached to
// (none when it is not attached) and returns the unlock.
func (s *Service) lockAttached(v volume.Volume) func() {
	if v.Attachment == nil {
		return func() {}
	}
	return s.liveLocks.lock(v.Attachment.InstanceID)
}

// driveSlots is how many empty drives each VMM gets for attaching
// volumes while it runs.
const driveSlots = 4

// maxVMMDrives is gureum-vmm's limit on disks plus slots (vmm.MaxDrives).
const maxVMMDrives = 16

// kindDrives maps an instance's device names to its VMM's drives.
const kindDrives = "drives"

// liveTimeout bounds one call to a VMM about a drive (a flush included).
const liveTimeout = 30 * time.Second

// driveMap is the kindDrives record of one instance.
type driveMap struct {
	// Devices maps a device name (/dev/vdc) to the VMM drive (vdc) that
	// holds the volume attached as that device.
	Devices map[string]string `json:"devices"`
}

func getDriveMap(tx store.Tx, instanceID string) (driveMap, error) {
	m := driveMap{Devices: map[string]string{}}
	err := store.GetJSON(tx, kindDrives, instanceID, &m)
	if errors.Is(err, store.ErrNotFound) {
		err = nil
	}
	if m.Devices == nil {
		m.Devices = map[string]string{}
	}
	return m, err
}

// vmmDriveID names the i-th drive of a VMM as gureum-vmm does (and as
// Linux names the i-th virtio disk).
func vmmDriveID(i int) string { return "vd" + string(rune('a'+i)) }

// volumeDisk is the VMM disk of an attached volume: its top file and the
// I/O limits of its type.
func (s *Service) volumeDisk(volumeID string) (supervisor.Disk, error) {
	v, err := s.volumes.Volume(volumeID)
	if err != nil {
		return supervisor.Disk{}, err
	}
	p, err := s.volumes.Path(volumeID)
	if err != nil {
		return supervisor.Disk{}, err
	}
	l := v.Spec.Limits()
	return supervisor.Disk{Path: p, IOPS: int64(l.OpsPerSecond), IOPSBurst: int64(l.OpsBurst),
		BytesPerSecond: int64(l.BytesPerSecond), BytesBurst: int64(l.BytesBurst)}, nil
}

// addDriveSlots gives the VMM its empty drives and records which boot
// drive holds which device. volumeDevices maps each volume disk's path in
// sp to its device name. Called by StartVMM before the VMM starts.
func (s *Service) addDriveSlots(sp *supervisor.Spec, volumeDevices map[string]string) error {
	sp.DriveSlots = max(0, min(driveSlots, maxVMMDrives-len(sp.Disks)))
	m := driveMap{Devices: map[string]string{}}
	for i, d := range sp.Disks {
		if dev, ok := volumeDevices[d.Path]; ok {
			m.Devices[dev] = vmmDriveID(i)
		}
	}
	return s.store.Update(func(tx store.Tx) error { return store.PutJSON(tx, kindDrives, sp.ID, m) })
}

// liveDrives is the Service seen as volume.Drives: the volume store asks
// it for the VMM drive of an attached volume.
type liveDrives Service

var _ volume.Drives = (*liveDrives)(nil)

// Drive returns the running drive holding device of instanceID, or
// (nil, nil) when no VMM runs for the instance or its VMM does not hold
// that device: then the file is closed and the store may work on it.
// The volume store calls it with its own lock held; it reads the state
// store and must not be called inside a state-store transaction.
func (d *liveDrives) Drive(instanceID, device string) (volume.LiveDrive, error) {
	s := (*Service)(d)
	if s.sup == nil {
		return nil, nil // still opening: no VMM has been adopted yet
	}
	if _, err := s.sup.Get(instanceID); err != nil {
		return nil, nil
	}
	var m driveMap
	err := s.store.View(func(tx store.Tx) error {
		var err error
		m, err = getDriveMap(tx, instanceID)
		return err
	})
	if err != nil {
		return nil, err
	}
	drive, ok := m.Devices[device]
	if !ok {
		return nil, nil
	}
	ld, err := s.sup.LiveDrive(instanceID, drive)
	if errors.Is(err, supervisor.ErrNotFound) {
		return nil, nil
	}
	return ld, err
}

// runningForVolumes reports whether volumes are attached and detached
// through the VMM (running, no operation under way), through the records
// only (stopped), or not at all (an error for any other state).
func runningForVolumes(r *instanceRecord, st *lifecycle.Status, what string) (bool, error) {
	switch {
	case st.State == lifecycle.Stopped && st.Op == nil:
		return false, nil
	case st.State == lifecycle.Running && st.Op == nil:
		return true, nil
	case st.State == lifecycle.Terminated && what == "detached from":
		return false, nil
	}
	return false, api.Errorf(api.CodeIncorrectInstanceState,
		"The instance '%s' is '%s'; volumes are %s running or stopped instances.", r.ID, st.State, what)
}

// freeDevice returns the next device name (/dev/vdb on) the instance does
// not use.
func freeDevice(r *instanceRecord) string {
	for c := byte(firstDataDev); c <= 'z'; c++ {
		d := fmt.Sprintf("/dev/vd%c", c)
		if !slices.ContainsFunc(r.BlockDevices, func(b api.BlockDevice) bool { return b.DeviceName == d }) {
			return d
		}
	}
	return ""
}

// attachRunning attaches a volume to a running instance: record the
// attachment and the drive it takes (one transaction, so two attaches
// cannot pick the same drive), then have the VMM open the volume's top
// in that drive with the limits of the volume's type. If the VMM refuses,
// the records are put back.
func (s *Service) attachRunning(caller Caller, id string, req api.AttachVolumeRequest) error {
	defer s.liveLocks.lock(req.InstanceID)()
	ctx, cancel := context.WithTimeout(s.ctx, liveTimeout)
	defer cancel()
	drives, err := s.sup.Drives(ctx, req.InstanceID)
	if err != nil {
		return fmt.Errorf("attach %s to %s: %w", id, req.InstanceID, err)
	}
	var dev, drive string
	err = s.store.Update(func(tx store.Tx) error {
		r, st, err := ownedInstance(tx, caller, req.InstanceID)
		if err != nil {
			return err
		}
		live, err := runningForVolumes(r, st, "attached to")
		if err != nil {
			return err
		}
		if !live {
			return api.Errorf(api.CodeIncorrectInstanceState, "The instance '%s' stopped meanwhile; try again.", r.ID)
		}
		if dev = req.Device; dev == "" {
			dev = freeDevice(r)
		}
		if err := checkDevice(r, dev); err != nil {
			return err
		}
		m, err := getDriveMap(tx, r.ID)
		if err != nil {
			return err
		}
		taken := map[string]bool{}
		for _, d := range m.Devices {
			taken[d] = true
		}
		for _, d := range drives {
			if d.Path == "" && !d.ReadOnly && !taken[d.ID] {
				drive = d.ID
				break
			}
		}
		if drive == "" {
			return api.Errorf(api.CodeInvalidParameterValue, "The instance '%s' has no free drive for another volume while it runs (%d slots); stop it to attach more.", r.ID, driveSlots)
		}
		if _, err := s.volumes.Attach(id, r.ID, dev); err != nil {
			return volumeError(err)
		}
		m.Devices[dev] = drive
		r.BlockDevices = append(r.BlockDevices, api.BlockDevice{DeviceName: dev, VolumeID: id})
		if err := store.PutJSON(tx, kindDrives, r.ID, m); err != nil {
			return err
		}
		return putInstance(tx, r)
	})
	if err != nil {
		return err
	}
	disk, err := s.volumeDisk(id)
	if err == nil {
		limits := vmmapi.DriveLimits{OpsPerSecond: float64(disk.IOPS), OpsBurst: float64(disk.IOPSBurst),
			BytesPerSecond: float64(disk.BytesPerSecond), BytesBurst: float64(disk.BytesBurst)}
		_, err = s.sup.AttachDrive(ctx, req.InstanceID, drive, vmmapi.DriveAttach{Path: disk.Path, Format: "qcow2", Limits: &limits})
	}
	if err != nil {
		if uerr := s.forgetAttachment(req.InstanceID, id, dev); uerr != nil {
			s.log.Error("attachment the VMM refused stays recorded", "volume", id, "instance", req.InstanceID, "err", uerr)
		}
		return fmt.Errorf("attach %s to %s: %w", id, req.InstanceID, err)
	}
	return nil
}

// checkDevice refuses a malformed device name or one the instance uses.
func checkDevice(r *instanceRecord, dev string) error {
	if slices.ContainsFunc(r.BlockDevices, func(b api.BlockDevice) bool { return b.DeviceName == dev }) || len(dev) < 6 || dev[:5] != "/dev/" {
		return api.Errorf(api.CodeInvalidParameterValue, "Invalid or taken device name '%s'.", dev)
	}
	return nil
}

// detachRunning detaches a volume from a running instance: the VMM
// flushes and closes the drive first (after that no process writes the
// volume's files), then the records drop the attachment.
func (s *Service) detachRunning(instanceID, id, dev string) error {
	defer s.liveLocks.lock(instanceID)()
	var m driveMap
	err := s.store.View(func(tx store.Tx) error {
		var err error
		m, err = getDriveMap(tx, instanceID)
		return err
	})
	if err != nil {
		return err
	}
	if drive, ok := m.Devices[dev]; ok {
		ctx, cancel := context.WithTimeout(s.ctx, liveTimeout)
		defer cancel()
		err := s.sup.DetachDrive(ctx, instanceID, drive)
		var ae *vmmapi.APIError
		if errors.As(err, &ae) && ae.Error_.Code == vmmapi.CodeIncorrectState {
			err = nil // the drive is empty already (an earlier detach that was cut short)
		}
		if err != nil && !errors.Is(err, supervisor.ErrNotFound) {
			return fmt.Errorf("detach %s from %s: %w", id, instanceID, err)
		}
	}
	return s.forgetAttachment(instanceID, id, dev)
}

// forgetAttachment removes an attachment from the instance, its drive map
// and the volume store, in one transaction.
func (s *Service) forgetAttachment(instanceID, id, dev string) error {
	return s.store.Update(func(tx store.Tx) error {
		r, err := getInstance(tx, instanceID)
		if err != nil {
			return err
		}
		m, err := getDriveMap(tx, instanceID)
		if err != nil {
			return err
		}
		delete(m.Devices, dev)
		if err := store.PutJSON(tx, kindDrives, instanceID, m); err != nil {
			return err
		}
		r.BlockDevices = slices.DeleteFunc(r.BlockDevices, func(b api.BlockDevice) bool { return b.VolumeID == id })
		if v, err := s.volumes.Volume(id); err == nil && v.Attachment != nil {
			if _, err := s.volumes.Detach(id); err != nil {
				return volumeError(err)
			}
		}
		return putInstance(tx, r)
	})
}

// ModifyVolume grows a volume of caller's or changes its type, IOPS or
// throughput. On a running instance the VMM grows the drive (the guest
// sees a configuration change with the new capacity) and takes the new
// I/O limits at once (volume.Store.Modify, through liveDrives).
func (s *Service) ModifyVolume(caller Caller, id string, req api.ModifyVolumeRequest) (api.Volume, error) {
	if req.SizeGiB < 0 || req.IOPS < 0 || req.ThroughputMiBps < 0 {
		return api.Volume{}, api.Errorf(api.CodeInvalidParameterValue, "Sizes, IOPS and throughput must not be negative.")
	}
	v, err := s.ownedVolume(caller, id)
	if err != nil {
		return api.Volume{}, err
	}
	unlock := s.lockAttached(v)
	v, err = s.volumes.Modify(id, volume.ModifyRequest{SizeGiB: req.SizeGiB, Type: volume.Type(req.VolumeType),
		IOPS: req.IOPS, Throughput: req.ThroughputMiBps})
	unlock()
	if err != nil {
		return api.Volume{}, volumeError(err)
	}
	err = s.store.Update(func(tx store.Tx) error {
		var o volumeOwner
		if err := store.GetJSON(tx, kindVolumeOwner, id, &o); err != nil {
			return err
		}
		return billing.VolumeSized(tx, v.ID, o.Owner, string(v.Type), v.SizeGiB, s.now())
	})
	if err != nil {
		return api.Volume{}, err
	}
	return s.Volume(caller, id)
}
