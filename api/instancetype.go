package api

// InstanceTypeInfo describes one instance type as `gureum type ls` shows it.
type InstanceTypeInfo struct {
	Name      string  `json:"name"`   // e.g. m5.large
	Family    string  `json:"family"` // e.g. M
	VCPUs     int     `json:"vcpus"`
	MemoryGiB float64 `json:"memory_gib"`
	// InstanceStoreGB is the total ephemeral disk the type comes with, in
	// GB as AWS counts it (0: EBS only); InstanceStore describes it.
	InstanceStoreGB int    `json:"instance_store_gb,omitempty"`
	InstanceStore   string `json:"instance_store,omitempty"` // e.g. "2 x 1900 NVMe SSD"
	// Accelerators counts GPUs or FPGAs (AcceleratorKind says which).
	Accelerators    int    `json:"accelerators,omitempty"`
	AcceleratorKind string `json:"accelerator_kind,omitempty"`
	// Burstable types carry their CPU credit parameters.
	Burstable *BurstableInfo `json:"burstable,omitempty"`
	// Available is false when this host cannot run the type at all (a
	// GPU or FPGA type without such a device); Reason says why.
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"`
}

// BurstableInfo is the CPU credit parameters of a T type.
type BurstableInfo struct {
	BaselinePercent   float64 `json:"baseline_percent"` // per vCPU
	CreditsPerHour    float64 `json:"credits_per_hour"`
	MaxCreditBalance  float64 `json:"max_credit_balance"`
	LaunchCredits     float64 `json:"launch_credits"`
	DefaultCreditMode string  `json:"default_credit_mode"`
}
