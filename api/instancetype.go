package api

// InstanceTypeInfo describes one instance type as `gureum type ls` shows it.
type InstanceTypeInfo struct {
	Name      string  `json:"name"`   // e.g. m5.large
	Family    string  `json:"family"` // e.g. M
	VCPUs     int     `json:"vcpus"`
	MemoryGiB float64 `json:"memory_gib"`
	// InstanceStoreGiB is the total ephemeral disk the type comes with
	// (0: EBS only).
	InstanceStoreGiB int `json:"instance_store_gib,omitempty"`
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
