package service

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"gureum/api"
	"gureum/hypervisor/credits"
	"gureum/hypervisor/ids"
	"gureum/hypervisor/instancetype"
	"gureum/hypervisor/lifecycle"
	"gureum/hypervisor/store"
	"gureum/images/ami"
)

// Store kinds of this package's records. The lifecycle half of an
// instance lives under lifecycle.Kind with the same key, written in the
// same transactions.
const (
	kindInstance = "instance"
	// kindVolumeOwner and kindSnapshotOwner say who owns each volume and
	// snapshot of the volume store. A volume or snapshot without one is
	// the leftover of a creation the daemon did not finish recording,
	// and is deleted when the daemon starts.
	kindVolumeOwner   = "volume-owner"
	kindSnapshotOwner = "snapshot-owner"
	// kindImageImport maps an imported root disk to its snapshot.
	kindImageImport = "image-import"
)

// systemOwner owns snapshots made by the daemon itself (imported root
// disks); no caller sees them.
const systemOwner = "system"

// instanceRecord is everything about an instance but its lifecycle.
type instanceRecord struct {
	ID            string    `json:"id"`
	Owner         string    `json:"owner"`
	ReservationID string    `json:"reservation_id"`
	ImageID       string    `json:"image_id,omitempty"`
	Type          string    `json:"type"`
	Kernel        string    `json:"kernel"`
	Initrd        string    `json:"initrd,omitempty"`
	Cmdline       string    `json:"cmdline,omitempty"`
	UserData      string    `json:"user_data,omitempty"`
	Tags          []api.Tag `json:"tags,omitempty"`
	// RootDeviceName is the root volume's device (EBS-backed), and
	// BlockDevices every attached volume, the root first.
	RootDeviceName string            `json:"root_device_name,omitempty"`
	BlockDevices   []api.BlockDevice `json:"block_devices,omitempty"`
	// ReadOnlyRootDisk is the image's root disk of an instance-store
	// backed instance, attached read-only.
	ReadOnlyRootDisk string `json:"read_only_root_disk,omitempty"`
	// StopDeadlineSeconds is the graceful-stop deadline of the stop
	// under way (0: the daemon's default).
	StopDeadlineSeconds int `json:"stop_deadline_seconds,omitempty"`
	// Credits is the CPU credit account of a burstable instance.
	Credits *credits.Account `json:"credits,omitempty"`
	// Boot is the recipe of the AMI the instance was launched from (nil
	// for boot files given directly); CreateImage copies it.
	Boot *ami.Boot `json:"boot,omitempty"`
	// Network is the instance's interface (nil without networking).
	Network *instanceNetwork `json:"network,omitempty"`
}

// volumeOwner is the daemon's side of a volume-store volume.
type volumeOwner struct {
	Owner string    `json:"owner"`
	Tags  []api.Tag `json:"tags,omitempty"`
	// Zone is the availability zone CreateVolume placed the volume in;
	// empty for root volumes and older records (volumeZone derives it).
	Zone string `json:"zone,omitempty"`
}

// snapshotOwner is the daemon's side of a volume-store snapshot.
type snapshotOwner struct {
	Owner string `json:"owner"`
}

func getInstance(tx store.Tx, id string) (*instanceRecord, error) {
	var r instanceRecord
	err := store.GetJSON(tx, kindInstance, id, &r)
	if errors.Is(err, store.ErrNotFound) {
		return nil, instanceNotFound(id)
	}
	if err != nil {
		return nil, fmt.Errorf("load instance %s: %w", id, err)
	}
	return &r, nil
}

func putInstance(tx store.Tx, r *instanceRecord) error {
	return store.PutJSON(tx, kindInstance, r.ID, r)
}

func instanceNotFound(id string) error {
	return api.Errorf(api.CodeInvalidInstanceIDNotFound, "The instance ID '%s' does not exist", id)
}

// checkInstanceID refuses an id that is not of the i-… shape.
func checkInstanceID(id string) error {
	if !ids.Valid(ids.Instance, id) {
		return api.Errorf(api.CodeInvalidInstanceIDMalformed, "Invalid id: \"%s\"", id)
	}
	return nil
}

// ownedInstance loads an instance caller may see: another account's
// instance is NotFound, as EC2 answers, so ids reveal nothing.
func ownedInstance(tx store.Tx, caller Caller, id string) (*instanceRecord, *lifecycle.Status, error) {
	if err := checkInstanceID(id); err != nil {
		return nil, nil, err
	}
	r, err := getInstance(tx, id)
	if err != nil {
		return nil, nil, err
	}
	if r.Owner != caller.AccountID {
		return nil, nil, instanceNotFound(id)
	}
	st, err := lifecycle.Get(tx, id)
	if err != nil {
		return nil, nil, err
	}
	return r, st, nil
}

// toAPI is the instance as describe shows it.
func toAPI(r *instanceRecord, st *lifecycle.Status) api.Instance {
	in := api.Instance{
		InstanceID: r.ID, OwnerID: r.Owner, ImageID: r.ImageID, InstanceType: r.Type,
		State: st.State.API(), StateReason: st.Reason, StateTransitionReason: st.TransitionReason,
		LaunchTime: st.LaunchTime, RootDeviceType: st.RootDeviceType, RootDeviceName: r.RootDeviceName,
		BlockDevices: slices.Clone(r.BlockDevices), ShutdownBehavior: st.ShutdownBehavior,
		Tags: slices.Clone(r.Tags),
	}
	if t, err := instancetype.Lookup(r.Type); err == nil {
		in.InstanceStoreGB = t.InstanceStoreGB()
	}
	if r.Credits != nil {
		in.Credits = r.Credits.API()
	}
	if st.State != lifecycle.Terminated {
		r.Network.describe(&in)
	} else if r.Network != nil {
		// As in EC2, a terminated instance has no interface (its address
		// may be another's now), but keeps its placement.
		in.AvailabilityZone = r.Network.Zone
	}
	return in
}

// Filter selects instances in Describe. Empty fields select everything.
type Filter struct {
	// IDs are instance ids; an unknown (or foreign) one is NotFound.
	IDs []string
	// States are state names (running, stopped ...).
	States []string
	// Tags are "key=value" (that value) or "key" (any value).
	Tags []string
}

func (f Filter) validate() error {
	for _, id := range f.IDs {
		if err := checkInstanceID(id); err != nil {
			return err
		}
	}
	for _, name := range f.States {
		if !slices.Contains(lifecycle.States, lifecycle.State(name)) {
			return api.Errorf(api.CodeInvalidParameterValue, "The filter 'instance-state-name' has an invalid value '%s'.", name)
		}
	}
	return nil
}

func (f Filter) match(in api.Instance) bool {
	if len(f.States) > 0 && !slices.Contains(f.States, in.State.Name) {
		return false
	}
	for _, want := range f.Tags {
		k, v, hasValue := strings.Cut(want, "=")
		if !slices.ContainsFunc(in.Tags, func(t api.Tag) bool { return t.Key == k && (!hasValue || t.Value == v) }) {
			return false
		}
	}
	return true
}

// Describe returns caller's instances that match f, sorted by id.
func (s *Service) Describe(caller Caller, f Filter) ([]api.Instance, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	out := []api.Instance{}
	err := s.store.View(func(tx store.Tx) error {
		if len(f.IDs) > 0 {
			for _, id := range f.IDs {
				r, st, err := ownedInstance(tx, caller, id)
				if err != nil {
					return err
				}
				if in := toAPI(r, st); f.match(in) {
					out = append(out, in)
				}
			}
			return nil
		}
		all, err := lifecycle.List(tx)
		if err != nil {
			return err
		}
		for _, st := range all {
			r, err := getInstance(tx, st.ID)
			if err != nil {
				continue // a record half removed by an older daemon
			}
			if r.Owner != caller.AccountID {
				continue
			}
			if in := toAPI(r, st); f.match(in) {
				out = append(out, in)
			}
		}
		return nil
	})
	return out, err
}

// Instance describes one instance.
func (s *Service) Instance(caller Caller, id string) (api.Instance, error) {
	out, err := s.Describe(caller, Filter{IDs: []string{id}})
	if err != nil {
		return api.Instance{}, err
	}
	return out[0], nil
}
