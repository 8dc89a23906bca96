package api

import (
	"context"
	"fmt"
	"math"
	"net/url"

	"gureum/storage/ratelimit"
)

// PathDrives lists the VM's virtio-blk drives (GET). One drive is
// PathDrives + "/" + id: GET describes it, PUT attaches a disk to an empty
// drive, PATCH switches its top file, grows it or changes its limits,
// DELETE detaches its disk (docs/vmm-api.md, "Drives").
const PathDrives = "/drives"

// DriveLimits are a drive's I/O caps (storage/ratelimit): sustained
// operations and bytes per second, and how many of each an idle drive may
// save up. Zero rates mean unlimited; a zero burst means a tenth of a
// second at the rate.
type DriveLimits struct {
	OpsPerSecond   float64 `json:"ops_per_second,omitempty"`
	OpsBurst       float64 `json:"ops_burst,omitempty"`
	BytesPerSecond float64 `json:"bytes_per_second,omitempty"`
	BytesBurst     float64 `json:"bytes_burst,omitempty"`
}

// LimitsFrom converts ratelimit.Limits to the wire form.
func LimitsFrom(l ratelimit.Limits) DriveLimits {
	return DriveLimits{OpsPerSecond: l.OpsPerSecond, OpsBurst: l.OpsBurst, BytesPerSecond: l.BytesPerSecond, BytesBurst: l.BytesBurst}
}

// Limits converts the wire form to ratelimit.Limits.
func (l DriveLimits) Limits() ratelimit.Limits {
	return ratelimit.Limits{OpsPerSecond: l.OpsPerSecond, OpsBurst: l.OpsBurst, BytesPerSecond: l.BytesPerSecond, BytesBurst: l.BytesBurst}
}

// Check refuses negative, NaN and infinite values.
func (l DriveLimits) Check() error {
	for _, v := range []float64{l.OpsPerSecond, l.OpsBurst, l.BytesPerSecond, l.BytesBurst} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("limits must be finite and not negative")
		}
	}
	return nil
}

// DriveInfo describes one drive.
type DriveInfo struct {
	// ID names the drive in the API: vda, vdb, ... in PCI order, which is
	// the order Linux names virtio disks in.
	ID string `json:"id"`
	// Slot is true for drives made empty at boot by --drive-slots.
	Slot bool `json:"slot"`
	// Path is the attached file (the current top for a volume), empty
	// when nothing is attached.
	Path      string      `json:"path,omitempty"`
	ReadOnly  bool        `json:"read_only"`
	SizeBytes int64       `json:"size_bytes"`
	Limits    DriveLimits `json:"limits"`
}

// DriveAttach is the body of PUT /drives/{id}: a disk for an empty drive.
type DriveAttach struct {
	Path string `json:"path"`
	// Format is raw or qcow2; empty probes the header (give it whenever it
	// is known: see storage.OpenOptions.Format).
	Format   string       `json:"format,omitempty"`
	ReadOnly bool         `json:"read_only,omitempty"`
	Limits   *DriveLimits `json:"limits,omitempty"`
}

// DriveUpdate is the body of PATCH /drives/{id}. Fields left out are not
// changed; those given are applied in the order top, size, limits.
type DriveUpdate struct {
	// Top is a new qcow2 file whose backing file is the drive's current
	// file. The VMM flushes the current file and continues on Top; the old
	// file is never written again (a volume snapshot).
	Top string `json:"top,omitempty"`
	// SizeBytes grows the drive's file to this size (shrinking is refused)
	// and tells the guest with a configuration change.
	SizeBytes int64 `json:"size_bytes,omitempty"`
	// Limits replace the drive's I/O limits.
	Limits *DriveLimits `json:"limits,omitempty"`
}

// Drive-specific error code, besides NotFound (no such drive),
// IncorrectState (attach to a full drive, change an empty one) and
// InvalidParameterValue (bad path, shrink, bad limits).
const CodeDriveNotFound = "InvalidDrive.NotFound"

func drivePath(id string) string { return PathDrives + "/" + url.PathEscape(id) }

// Drives lists the VM's drives.
func (c *Client) Drives(ctx context.Context) ([]DriveInfo, error) {
	var out []DriveInfo
	err := c.do(ctx, "GET", PathDrives, nil, &out)
	return out, err
}

// Drive describes one drive.
func (c *Client) Drive(ctx context.Context, id string) (DriveInfo, error) {
	var out DriveInfo
	err := c.do(ctx, "GET", drivePath(id), nil, &out)
	return out, err
}

// AttachDrive puts a disk into an empty drive.
func (c *Client) AttachDrive(ctx context.Context, id string, req DriveAttach) (DriveInfo, error) {
	var out DriveInfo
	err := c.do(ctx, "PUT", drivePath(id), req, &out)
	return out, err
}

// UpdateDrive switches a drive's top, grows it or changes its limits.
func (c *Client) UpdateDrive(ctx context.Context, id string, req DriveUpdate) (DriveInfo, error) {
	var out DriveInfo
	err := c.do(ctx, "PATCH", drivePath(id), req, &out)
	return out, err
}

// DetachDrive flushes a drive's disk, closes it, and leaves the drive
// empty (capacity 0 for the guest).
func (c *Client) DetachDrive(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", drivePath(id), nil, nil)
}

// LiveDrive is one drive of a running VMM seen through its socket. It has
// the methods storage/volume.LiveDrive asks for, so the daemon hands it
// to the volume store for an attached volume.
type LiveDrive struct {
	Client *Client
	ID     string
}

// LiveDrive returns the drive id of this VMM as a volume.LiveDrive.
func (c *Client) LiveDrive(id string) *LiveDrive { return &LiveDrive{Client: c, ID: id} }

// SwitchTop makes the VMM flush the current top and continue on newTop,
// whose backing file is the current top.
func (d *LiveDrive) SwitchTop(newTop string) error {
	_, err := d.Client.UpdateDrive(context.Background(), d.ID, DriveUpdate{Top: newTop})
	return err
}

// Resize grows the drive's top file and tells the guest.
func (d *LiveDrive) Resize(newSize int64) error {
	if newSize <= 0 {
		return fmt.Errorf("resize drive %s to %d bytes: size must be positive", d.ID, newSize)
	}
	_, err := d.Client.UpdateDrive(context.Background(), d.ID, DriveUpdate{SizeBytes: newSize})
	return err
}

// SetLimits changes the drive's I/O limits. ratelimit.Unlimited lifts them.
func (d *LiveDrive) SetLimits(l ratelimit.Limits) error {
	wire := LimitsFrom(l)
	_, err := d.Client.UpdateDrive(context.Background(), d.ID, DriveUpdate{Limits: &wire})
	return err
}
