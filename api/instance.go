package api

import "time"

// Instance state codes and names, exactly EC2's. The code's high byte is
// reserved by EC2 for internal use; only the low byte (these values) is
// meaningful.
const (
	StateCodePending      = 0
	StateCodeRunning      = 16
	StateCodeShuttingDown = 32
	StateCodeTerminated   = 48
	StateCodeStopping     = 64
	StateCodeStopped      = 80

	StateNamePending      = "pending"
	StateNameRunning      = "running"
	StateNameShuttingDown = "shutting-down"
	StateNameTerminated   = "terminated"
	StateNameStopping     = "stopping"
	StateNameStopped      = "stopped"
)

// InstanceState is an instance's lifecycle state as EC2 reports it: a
// numeric code and its name (both, because EC2 clients use either).
type InstanceState struct {
	Code int    `json:"code"`
	Name string `json:"name"`
}

// StateReason says why an instance made its last transition, with EC2's
// codes: "Client.UserInitiatedShutdown", "Client.InstanceInitiatedShutdown",
// "Server.InternalError", "Server.InsufficientInstanceCapacity" ...
type StateReason struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Root device types: an EBS-backed instance keeps its root volume across
// stop and start; an instance-store-backed one cannot be stopped.
const (
	RootDeviceEBS           = "ebs"
	RootDeviceInstanceStore = "instance-store"
)

// Values of Instance.ShutdownBehavior: what a poweroff from inside the
// guest does (EC2's InstanceInitiatedShutdownBehavior).
const (
	ShutdownStop      = "stop"
	ShutdownTerminate = "terminate"
)

// CPU credit modes of burstable (T family) instances.
const (
	CreditsStandard  = "standard"
	CreditsUnlimited = "unlimited"
)

// Tag is a key/value label on a resource.
type Tag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// BlockDevice is a volume attached to an instance.
type BlockDevice struct {
	DeviceName          string `json:"device_name"` // e.g. /dev/vda
	VolumeID            string `json:"volume_id"`
	DeleteOnTermination bool   `json:"delete_on_termination"`
}

// CreditSpecification is a burstable instance's CPU credit state, shown in
// describe. Credits are vCPU-minutes at 100% (see docs/instances.md).
type CreditSpecification struct {
	Mode string `json:"mode"` // standard or unlimited
	// Balance is the earned credits available to spend.
	Balance float64 `json:"balance"`
	// LaunchBalance is what is left of the launch credits (spent first,
	// not counted against the maximum balance).
	LaunchBalance float64 `json:"launch_balance,omitempty"`
	// SurplusBalance is credits spent beyond the balance in unlimited
	// mode and not yet paid back; SurplusCharged is surplus already billed.
	SurplusBalance float64 `json:"surplus_balance,omitempty"`
	SurplusCharged float64 `json:"surplus_charged,omitempty"`
	// Throttled is true while a standard instance is held at its baseline.
	Throttled bool `json:"throttled"`
}

// Instance is one virtual machine as describe shows it.
type Instance struct {
	InstanceID   string        `json:"instance_id"`
	OwnerID      string        `json:"owner_id"`
	ImageID      string        `json:"image_id"`
	InstanceType string        `json:"instance_type"`
	State        InstanceState `json:"state"`
	StateReason  *StateReason  `json:"state_reason,omitempty"`
	// StateTransitionReason is EC2's free-text companion of StateReason,
	// e.g. "User initiated (2024-05-01 10:00:00 GMT)".
	StateTransitionReason string        `json:"state_transition_reason,omitempty"`
	LaunchTime            time.Time     `json:"launch_time"`
	RootDeviceType        string        `json:"root_device_type"`
	RootDeviceName        string        `json:"root_device_name,omitempty"`
	BlockDevices          []BlockDevice `json:"block_devices,omitempty"`
	// InstanceStoreGB is the size of the ephemeral disk in GB (0: none).
	InstanceStoreGB  int    `json:"instance_store_gb,omitempty"`
	ShutdownBehavior string `json:"shutdown_behavior"`
	PrivateIP        string `json:"private_ip,omitempty"`
	// Network placement (empty when the daemon runs without networking):
	// the instance's VPC, subnet and so zone, its interface's MAC and
	// security groups, and whether its metadata needs IMDSv2 tokens.
	VpcID              string   `json:"vpc_id,omitempty"`
	SubnetID           string   `json:"subnet_id,omitempty"`
	AvailabilityZone   string   `json:"availability_zone,omitempty"`
	MACAddress         string   `json:"mac_address,omitempty"`
	SecurityGroupIDs   []string `json:"security_group_ids,omitempty"`
	MetadataHTTPTokens string   `json:"metadata_http_tokens,omitempty"`
	Tags               []Tag    `json:"tags,omitempty"`
	// Credits is set for burstable types only.
	Credits *CreditSpecification `json:"credits,omitempty"`
}

// StateChange answers start, stop, reboot and terminate, one per instance,
// as EC2's InstanceStateChange: the state before and after the request.
// Long operations answer at once with the transitional state.
type StateChange struct {
	InstanceID    string        `json:"instance_id"`
	PreviousState InstanceState `json:"previous_state"`
	CurrentState  InstanceState `json:"current_state"`
}
