package api

// ModifyVolumeRequest is the body of POST /v1/volumes/{id}/modify (EC2's
// ModifyVolume). Zero fields keep their value; a new type re-derives what
// the type derives (IOPS, throughput). Sizes only grow. A volume attached
// to a running instance changes at once: the guest sees the new capacity
// (a virtio configuration change) and the VMM enforces the new limits.
// Volumes attach to running instances as well as to stopped ones (POST
// /v1/volumes/{id}/attach).
type ModifyVolumeRequest struct {
	VolumeType      string `json:"volume_type,omitempty"`
	SizeGiB         int64  `json:"size_gib,omitempty"`
	IOPS            int64  `json:"iops,omitempty"`
	ThroughputMiBps int64  `json:"throughput_mibps,omitempty"`
}
