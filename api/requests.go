package api

import "time"

// The request and answer bodies of the daemon's REST API (api/openapi.json
// lists the routes). Every route answers JSON; errors are *Error.

// ImageSpec describes what an instance boots when no AMI registry is
// involved: a kernel (PVH ELF or bzImage), an optional initrd and command
// line, and an optional root disk (raw or qcow2) that the instance's root
// volume is made from, copy-on-write.
type ImageSpec struct {
	Kernel   string `json:"kernel"`
	Initrd   string `json:"initrd,omitempty"`
	Cmdline  string `json:"cmdline,omitempty"`
	RootDisk string `json:"root_disk,omitempty"`
}

// RunInstancesRequest launches Count instances of one configuration, as
// EC2's RunInstances with MinCount = MaxCount = Count.
type RunInstancesRequest struct {
	// ImageID is an AMI id (ami-…); Image describes the boot files
	// directly. Exactly one of the two is given.
	ImageID      string     `json:"image_id,omitempty"`
	Image        *ImageSpec `json:"image,omitempty"`
	InstanceType string     `json:"instance_type"`
	// Count defaults to 1.
	Count int `json:"count,omitempty"`
	// Name becomes the tag "Name", as in the EC2 console.
	Name string `json:"name,omitempty"`
	Tags []Tag  `json:"tags,omitempty"`
	// UserData is handed to the guest (base64 in EC2; any text here).
	UserData string `json:"user_data,omitempty"`
	// RootDeviceType is "ebs" (default) or "instance-store".
	RootDeviceType string `json:"root_device_type,omitempty"`
	// RootVolumeGiB sizes the root volume (default: the root disk's size,
	// at least 1 GiB).
	RootVolumeGiB int64 `json:"root_volume_gib,omitempty"`
	// RootVolumeType is the root volume's EBS type (default gp3).
	RootVolumeType string `json:"root_volume_type,omitempty"`
	// Volumes are extra existing volumes, attached in order after the
	// root device (only with Count 1).
	Volumes []string `json:"volumes,omitempty"`
	// ShutdownBehavior is what a guest poweroff does: stop (default) or
	// terminate.
	ShutdownBehavior string `json:"shutdown_behavior,omitempty"`
	// CreditMode is standard or unlimited, for burstable types.
	CreditMode string `json:"credit_mode,omitempty"`
	// SubnetID places the instances (default: the default VPC's subnet of
	// the first zone); SecurityGroupIDs are groups of the subnet's VPC
	// (default: its default group); PrivateIP asks for an address (only
	// with Count 1); MetadataHTTPTokens is optional (default) or required.
	SubnetID           string   `json:"subnet_id,omitempty"`
	SecurityGroupIDs   []string `json:"security_group_ids,omitempty"`
	PrivateIP          string   `json:"private_ip,omitempty"`
	MetadataHTTPTokens string   `json:"metadata_http_tokens,omitempty"`
}

// Reservation answers RunInstances: the instances launched, in pending.
type Reservation struct {
	ReservationID string     `json:"reservation_id"`
	OwnerID       string     `json:"owner_id"`
	Instances     []Instance `json:"instances"`
}

// DescribeInstancesResponse answers GET /v1/instances.
type DescribeInstancesResponse struct {
	Instances []Instance `json:"instances"`
}

// StopRequest is the body of POST /v1/instances/{id}/stop and of
// terminate: Force kills the VMM instead of asking the guest to power off;
// DeadlineSeconds bounds the graceful shutdown (0: the daemon's default).
type StopRequest struct {
	Force           bool `json:"force,omitempty"`
	DeadlineSeconds int  `json:"deadline_seconds,omitempty"`
}

// ConsoleOutput answers GET /v1/instances/{id}/console: the tail of the
// serial console log (the last 64 KiB).
type ConsoleOutput struct {
	InstanceID string    `json:"instance_id"`
	Timestamp  time.Time `json:"timestamp"`
	Output     string    `json:"output"`
}

// ConsoleUpgrade is the Upgrade header value of a console attach: the
// daemon answers 101 Switching Protocols and then relays raw bytes between
// the connection and the instance's serial console.
const ConsoleUpgrade = "gureum-console"

// InstanceTypesResponse answers GET /v1/instance-types.
type InstanceTypesResponse struct {
	InstanceTypes []InstanceTypeInfo `json:"instance_types"`
}

// VolumeAttachment is where an in-use volume is attached.
type VolumeAttachment struct {
	InstanceID string    `json:"instance_id"`
	Device     string    `json:"device"`
	AttachTime time.Time `json:"attach_time"`
}

// Volume is one EBS volume as describe shows it.
type Volume struct {
	VolumeID            string            `json:"volume_id"`
	OwnerID             string            `json:"owner_id"`
	State               string            `json:"state"` // creating, available, in-use, deleting
	VolumeType          string            `json:"volume_type"`
	SizeGiB             int64             `json:"size_gib"`
	IOPS                int64             `json:"iops"`
	ThroughputMiBps     int64             `json:"throughput_mibps"`
	SnapshotID          string            `json:"snapshot_id,omitempty"`
	CreateTime          time.Time         `json:"create_time"`
	Attachment          *VolumeAttachment `json:"attachment,omitempty"`
	DeleteOnTermination bool              `json:"delete_on_termination,omitempty"`
	Tags                []Tag             `json:"tags,omitempty"`
	AvailabilityZone    string            `json:"availability_zone,omitempty"`
}

// CreateVolumeRequest is the body of POST /v1/volumes.
type CreateVolumeRequest struct {
	VolumeType      string `json:"volume_type,omitempty"` // gp3 (default), io2, st1, sc1
	SizeGiB         int64  `json:"size_gib,omitempty"`
	IOPS            int64  `json:"iops,omitempty"`
	ThroughputMiBps int64  `json:"throughput_mibps,omitempty"`
	SnapshotID      string `json:"snapshot_id,omitempty"`
	Tags            []Tag  `json:"tags,omitempty"`
	// AvailabilityZone is the volume's zone (default: the first zone); it
	// attaches only to instances in that zone.
	AvailabilityZone string `json:"availability_zone,omitempty"`
}

// AttachVolumeRequest is the body of POST /v1/volumes/{id}/attach. The
// instance must be running (the guest sees a new disk at once, in one of
// its VMM's empty drive slots) or stopped (the volume joins its VMM at the
// next start).
type AttachVolumeRequest struct {
	InstanceID string `json:"instance_id"`
	Device     string `json:"device,omitempty"` // default: the next free /dev/vdX
}

// DescribeVolumesResponse answers GET /v1/volumes.
type DescribeVolumesResponse struct {
	Volumes []Volume `json:"volumes"`
}

// Snapshot is one EBS snapshot as describe shows it.
type Snapshot struct {
	SnapshotID  string    `json:"snapshot_id"`
	OwnerID     string    `json:"owner_id"`
	VolumeID    string    `json:"volume_id"`
	State       string    `json:"state"` // pending, completed, error
	Progress    string    `json:"progress"`
	StartTime   time.Time `json:"start_time"`
	Description string    `json:"description,omitempty"`
	VolumeSize  int64     `json:"volume_size_gib"`
	DataBytes   int64     `json:"data_bytes"`
}

// CreateSnapshotRequest is the body of POST /v1/snapshots.
type CreateSnapshotRequest struct {
	VolumeID    string `json:"volume_id"`
	Description string `json:"description,omitempty"`
}

// DescribeSnapshotsResponse answers GET /v1/snapshots.
type DescribeSnapshotsResponse struct {
	Snapshots []Snapshot `json:"snapshots"`
}
