package api_test

import (
	"testing"

	"gureum/storage/ratelimit"
	"gureum/storage/volume"
	"gureum/vmm/api"
)

// The daemon hands a VMM's drive to the volume store as a LiveDrive.
var _ volume.LiveDrive = (*api.LiveDrive)(nil)

func TestLimitsRoundTrip(t *testing.T) {
	l := ratelimit.Limits{OpsPerSecond: 3000, OpsBurst: 300, BytesPerSecond: 125 << 20, BytesBurst: 1 << 20}
	if got := api.LimitsFrom(l).Limits(); got != l {
		t.Fatalf("round trip %+v -> %+v", l, got)
	}
	if err := (api.DriveLimits{BytesBurst: -1}).Check(); err == nil {
		t.Fatal("negative burst accepted")
	}
}
