package billing

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"gureum/hypervisor/store"
)

// Store kinds of the meter's records, one record per resource.
const (
	KindInstanceUsage = "meter-instance"
	KindVolumeUsage   = "meter-volume"
	KindSnapshotUsage = "meter-snapshot"
	KindCreditUsage   = "meter-credits"
)

// Run is one stretch of an instance running: from a start to the stop
// that followed. To is zero while it still runs.
type Run struct {
	Type string    `json:"type"`
	From time.Time `json:"from"`
	To   time.Time `json:"to,omitzero"`
}

// InstanceUsage is an instance's runs, oldest first.
type InstanceUsage struct {
	ID    string `json:"id"`
	Owner string `json:"owner"`
	Runs  []Run  `json:"runs"`
}

// Segment is a stretch of time at one size: GiB for volumes, bytes for
// snapshots. To is zero while it lasts.
type Segment struct {
	Type string    `json:"type,omitempty"` // volume type
	Size int64     `json:"size"`
	From time.Time `json:"from"`
	To   time.Time `json:"to,omitzero"`
}

// StorageUsage is a volume's or snapshot's size over time.
type StorageUsage struct {
	ID       string    `json:"id"`
	Owner    string    `json:"owner"`
	Segments []Segment `json:"segments"`
}

// CreditCharge is surplus CPU credits charged at a moment.
type CreditCharge struct {
	Type    string    `json:"type"`
	VCPUs   int       `json:"vcpus"`
	At      time.Time `json:"at"`
	Credits float64   `json:"credits"`
}

// CreditUsage is an instance's surplus credit charges.
type CreditUsage struct {
	ID      string         `json:"id"`
	Owner   string         `json:"owner"`
	Charges []CreditCharge `json:"charges"`
}

// Usage is everything metered, as Compute takes it.
type Usage struct {
	Instances []InstanceUsage
	Volumes   []StorageUsage
	Snapshots []StorageUsage
	Credits   []CreditUsage
}

// The recording functions below run inside the caller's transaction,
// next to the state change they meter, and are idempotent: a start of an
// instance already running or a stop of one already stopped records
// nothing, so a daemon that replays a step after a crash does not bill
// twice.

// InstanceStarted opens a run of instance id, of type typ, at at.
func InstanceStarted(tx store.Tx, id, owner, typ string, at time.Time) error {
	var u InstanceUsage
	if err := load(tx, KindInstanceUsage, id, &u); err != nil {
		return err
	}
	if n := len(u.Runs); n > 0 && u.Runs[n-1].To.IsZero() {
		return nil
	}
	u.ID, u.Owner = id, owner
	u.Runs = append(u.Runs, Run{Type: typ, From: at})
	return store.PutJSON(tx, KindInstanceUsage, id, u)
}

// InstanceStopped closes the open run of instance id at at.
func InstanceStopped(tx store.Tx, id string, at time.Time) error {
	var u InstanceUsage
	if err := load(tx, KindInstanceUsage, id, &u); err != nil {
		return err
	}
	n := len(u.Runs)
	if n == 0 || !u.Runs[n-1].To.IsZero() {
		return nil
	}
	u.Runs[n-1].To = at
	return store.PutJSON(tx, KindInstanceUsage, id, u)
}

// VolumeSized records that volume id has sizeGiB of type volType from at
// on (creation or resize).
func VolumeSized(tx store.Tx, id, owner, volType string, sizeGiB int64, at time.Time) error {
	return sized(tx, KindVolumeUsage, id, owner, volType, sizeGiB, at)
}

// VolumeDeleted ends volume id's metering at at.
func VolumeDeleted(tx store.Tx, id string, at time.Time) error {
	return ended(tx, KindVolumeUsage, id, at)
}

// SnapshotSized records that snapshot id stores bytes from at on.
func SnapshotSized(tx store.Tx, id, owner string, bytes int64, at time.Time) error {
	return sized(tx, KindSnapshotUsage, id, owner, "", bytes, at)
}

// SnapshotDeleted ends snapshot id's metering at at.
func SnapshotDeleted(tx store.Tx, id string, at time.Time) error {
	return ended(tx, KindSnapshotUsage, id, at)
}

// CreditsCharged records surplus credits charged to instance id (the
// increase of credits.Account.SurplusCharged).
func CreditsCharged(tx store.Tx, id, owner, typ string, vcpus int, credits float64, at time.Time) error {
	if credits <= 0 {
		return nil
	}
	var u CreditUsage
	if err := load(tx, KindCreditUsage, id, &u); err != nil {
		return err
	}
	u.ID, u.Owner = id, owner
	u.Charges = append(u.Charges, CreditCharge{Type: typ, VCPUs: vcpus, At: at, Credits: credits})
	return store.PutJSON(tx, KindCreditUsage, id, u)
}

func sized(tx store.Tx, kind, id, owner, typ string, size int64, at time.Time) error {
	if size < 0 {
		return fmt.Errorf("negative size %d for %s", size, id)
	}
	var u StorageUsage
	if err := load(tx, kind, id, &u); err != nil {
		return err
	}
	if n := len(u.Segments); n > 0 && u.Segments[n-1].To.IsZero() {
		last := u.Segments[n-1]
		if last.Size == size && last.Type == typ {
			return nil
		}
		u.Segments[n-1].To = at
	}
	u.ID, u.Owner = id, owner
	u.Segments = append(u.Segments, Segment{Type: typ, Size: size, From: at})
	return store.PutJSON(tx, kind, id, u)
}

func ended(tx store.Tx, kind, id string, at time.Time) error {
	var u StorageUsage
	if err := load(tx, kind, id, &u); err != nil {
		return err
	}
	n := len(u.Segments)
	if n == 0 || !u.Segments[n-1].To.IsZero() {
		return nil
	}
	u.Segments[n-1].To = at
	return store.PutJSON(tx, kind, id, u)
}

// load reads a record, leaving v zero if there is none.
func load(tx store.Tx, kind, id string, v any) error {
	err := store.GetJSON(tx, kind, id, v)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

// Collect reads all usage of owner ("" for every owner).
func Collect(tx store.Tx, owner string) (Usage, error) {
	var u Usage
	if err := collect(tx, KindInstanceUsage, owner, &u.Instances, func(r InstanceUsage) string { return r.Owner }); err != nil {
		return Usage{}, err
	}
	if err := collect(tx, KindVolumeUsage, owner, &u.Volumes, func(r StorageUsage) string { return r.Owner }); err != nil {
		return Usage{}, err
	}
	if err := collect(tx, KindSnapshotUsage, owner, &u.Snapshots, func(r StorageUsage) string { return r.Owner }); err != nil {
		return Usage{}, err
	}
	if err := collect(tx, KindCreditUsage, owner, &u.Credits, func(r CreditUsage) string { return r.Owner }); err != nil {
		return Usage{}, err
	}
	return u, nil
}

func collect[T any](tx store.Tx, kind, owner string, out *[]T, ownerOf func(T) string) error {
	entries, err := tx.List(kind)
	if err != nil {
		return fmt.Errorf("list %s: %w", kind, err)
	}
	for _, e := range entries {
		var r T
		if err := json.Unmarshal(e.Value, &r); err != nil {
			return fmt.Errorf("decode %s/%s: %w", kind, e.Key, err)
		}
		if owner == "" || ownerOf(r) == owner {
			*out = append(*out, r)
		}
	}
	return nil
}
