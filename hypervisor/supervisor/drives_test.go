package supervisor

import (
	"errors"
	"reflect"
	"testing"
)

// TestDriveSlotsAndDiskLimits: drive slots and per-disk I/O limits become
// gureum-vmm flags, zero limits add nothing, and negative slots are
// refused.
func TestDriveSlotsAndDiskLimits(t *testing.T) {
	s := Spec{ID: "i-1", Kernel: "/k", VCPUs: 1, MemoryMiB: 64, DriveSlots: 4, Disks: []Disk{
		{Path: "/v/root.qcow2", IOPS: 3000, BytesPerSecond: 125 << 20},
		{Path: "/v/st1.qcow2", BytesPerSecond: 40 << 20, BytesBurst: 400 << 20},
		{Path: "/v/plain.raw", ReadOnly: true},
	}}
	if err := s.validate(); err != nil {
		t.Fatal(err)
	}
	args := s.vmmArgs(record{APISock: "/r/api.sock", ConsoleLog: "/r/console.log", ConsoleSock: "/r/console.sock"})
	want := []string{
		"--disk", "/v/root.qcow2,iops=3000,bps=131072000",
		"--disk", "/v/st1.qcow2,bps=41943040,bps_burst=419430400",
		"--disk", "/v/plain.raw,ro",
		"--drive-slots", "4",
	}
	var got []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--disk" || args[i] == "--drive-slots" {
			got = append(got, args[i], args[i+1])
			i++
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("drive flags:\n got %q\nwant %q", got, want)
	}
	s.DriveSlots = -1
	if err := s.validate(); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("negative drive slots: %v, want ErrInvalidSpec", err)
	}
}
