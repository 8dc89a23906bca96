package vmm

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"gureum/storage"
	"gureum/storage/qcow2"
	"gureum/storage/raw"
	"gureum/vmm/api"
)

// These tests run the drive operations on a VM that is not booted (no
// KVM needed): changes go to the drives alone, as between two boots. The
// end-to-end tests in cmd/gureum-vmm run the same operations against a
// running guest.

func newDriveVM(t *testing.T, disks []DiskConfig, slots int) *VM {
	t.Helper()
	var open []storage.Disk
	for _, c := range disks {
		d, err := storage.Open(c.Path, storage.OpenOptions{ReadOnly: c.ReadOnly})
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, d)
	}
	cfg := Config{VCPUs: 1, MemoryMiB: 16, Disks: disks, DriveSlots: slots}
	v := &VM{cfg: cfg, state: StateCreated, console: NewConsole(), drives: newDriveSet(cfg, open)}
	t.Cleanup(v.drives.close)
	return v
}

func rawFile(t *testing.T, name string, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := raw.Create(p, size); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseDiskLimits(t *testing.T) {
	d, err := ParseDisk("/x.img,ro,iops=200,iops_burst=10,bps=8M,bps_burst=64K")
	if err != nil {
		t.Fatal(err)
	}
	if !d.ReadOnly || d.Limits.OpsPerSecond != 200 || d.Limits.OpsBurst != 10 ||
		d.Limits.BytesPerSecond != 8<<20 || d.Limits.BytesBurst != 64<<10 {
		t.Fatalf("parsed %+v", d)
	}
	for _, bad := range []string{"/x,iops=-1", "/x,iops=lots", "/x,bps=1T", "/x,fast", "/x,iops"} {
		if _, err := ParseDisk(bad); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("ParseDisk(%q) = %v, want an invalid-configuration error", bad, err)
		}
	}
}

func TestDriveSlotsLimit(t *testing.T) {
	c := Config{Kernel: "/dev/null", VCPUs: 1, MemoryMiB: 16, DriveSlots: MaxDrives + 1}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "drive slots") {
		t.Fatalf("Validate with %d slots: %v", c.DriveSlots, err)
	}
}

func TestDriveIDsAndInfo(t *testing.T) {
	p := rawFile(t, "a.raw", 1<<20)
	v := newDriveVM(t, []DiskConfig{{Path: p, ReadOnly: true}}, 2)
	got := v.Drives()
	if len(got) != 3 || got[0].ID != "vda" || got[1].ID != "vdb" || got[2].ID != "vdc" {
		t.Fatalf("drives %+v", got)
	}
	if got[0].Slot || !got[0].ReadOnly || got[0].SizeBytes != 1<<20 || got[0].Path != p {
		t.Fatalf("disk drive %+v", got[0])
	}
	if !got[1].Slot || got[1].SizeBytes != 0 || got[1].Path != "" {
		t.Fatalf("slot %+v", got[1])
	}
}

func TestAttachDetachSlot(t *testing.T) {
	v := newDriveVM(t, nil, 1)
	p := rawFile(t, "b.raw", 2<<20)
	info, err := v.AttachDrive("vda", api.DriveAttach{Path: p, Format: "raw", Limits: &api.DriveLimits{OpsPerSecond: 100}})
	if err != nil {
		t.Fatal(err)
	}
	if info.SizeBytes != 2<<20 || info.Path != p || info.Limits.OpsPerSecond != 100 {
		t.Fatalf("after attach %+v", info)
	}
	if _, err := v.AttachDrive("vda", api.DriveAttach{Path: p}); !errors.Is(err, ErrDriveState) {
		t.Fatalf("second attach: %v", err)
	}
	if err := v.DetachDrive("vda"); err != nil {
		t.Fatal(err)
	}
	if info, _ := v.Drive("vda"); info.SizeBytes != 0 || info.Path != "" {
		t.Fatalf("after detach %+v", info)
	}
	if err := v.DetachDrive("vda"); !errors.Is(err, ErrDriveState) {
		t.Fatalf("detach of an empty drive: %v", err)
	}
}

// TestBadDriveInputChangesNothing: every refused request leaves the drive
// exactly as it was.
func TestBadDriveInputChangesNothing(t *testing.T) {
	p := rawFile(t, "c.raw", 4<<20)
	v := newDriveVM(t, []DiskConfig{{Path: p}}, 1)
	before := v.Drives()
	other := rawFile(t, "other.raw", 4<<20)
	cases := []struct {
		name string
		do   func() error
		want error
	}{
		{"unknown drive", func() error { _, err := v.Drive("vdz"); return err }, ErrNoDrive},
		{"attach unknown", func() error { _, err := v.AttachDrive("sda", api.DriveAttach{Path: other}); return err }, ErrNoDrive},
		{"attach missing file", func() error {
			_, err := v.AttachDrive("vdb", api.DriveAttach{Path: "/nonexistent/disk.img"})
			return err
		}, ErrInvalidConfig},
		{"attach no path", func() error { _, err := v.AttachDrive("vdb", api.DriveAttach{}); return err }, ErrInvalidConfig},
		{"attach bad limits", func() error {
			_, err := v.AttachDrive("vdb", api.DriveAttach{Path: other, Limits: &api.DriveLimits{OpsPerSecond: -5}})
			return err
		}, ErrInvalidConfig},
		{"shrink", func() error { _, err := v.UpdateDrive("vda", api.DriveUpdate{SizeBytes: 1 << 20}); return err }, ErrInvalidConfig},
		{"nothing", func() error { _, err := v.UpdateDrive("vda", api.DriveUpdate{}); return err }, ErrInvalidConfig},
		{"grow empty", func() error { _, err := v.UpdateDrive("vdb", api.DriveUpdate{SizeBytes: 8 << 20}); return err }, ErrDriveState},
		{"top not qcow2", func() error { _, err := v.UpdateDrive("vda", api.DriveUpdate{Top: other}); return err }, ErrInvalidConfig},
		{"top missing", func() error {
			_, err := v.UpdateDrive("vda", api.DriveUpdate{Top: "/nonexistent/top.qcow2"})
			return err
		}, ErrInvalidConfig},
		{"shrink with limits", func() error {
			_, err := v.UpdateDrive("vda", api.DriveUpdate{SizeBytes: 1, Limits: &api.DriveLimits{OpsPerSecond: 5}})
			return err
		}, ErrInvalidConfig},
	}
	for _, c := range cases {
		if err := c.do(); !errors.Is(err, c.want) {
			t.Errorf("%s: error %v, want %v", c.name, err, c.want)
		}
	}
	// A top built on some other file is refused too.
	wrong := filepath.Join(t.TempDir(), "wrong.qcow2")
	if err := qcow2.Create(wrong, 4<<20, qcow2.CreateOptions{BackingFile: other, BackingFormat: "raw"}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.UpdateDrive("vda", api.DriveUpdate{Top: wrong}); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "backed by") {
		t.Errorf("top on another file: %v", err)
	}
	after := v.Drives()
	for i := range before {
		if before[i] != after[i] {
			t.Errorf("drive changed by refused requests: %+v -> %+v", before[i], after[i])
		}
	}
}

// TestSwitchTopAndGrow: the drive continues on a new top whose backing is
// its file, writes then land in the new top only, and grow enlarges the
// new top.
func TestSwitchTopAndGrow(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	if err := qcow2.Create(base, 4<<20, qcow2.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	v := newDriveVM(t, []DiskConfig{{Path: base}}, 0)
	d := v.drives.drives[0]
	if _, err := d.disk.WriteAt(bytes.Repeat([]byte{0x11}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	top := filepath.Join(dir, "top.qcow2")
	if err := qcow2.Create(top, 4<<20, qcow2.CreateOptions{BackingFile: "base.qcow2", BackingFormat: "qcow2"}); err != nil {
		t.Fatal(err)
	}
	info, err := v.UpdateDrive("vda", api.DriveUpdate{Top: top, SizeBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if info.Path != top || info.SizeBytes != 8<<20 {
		t.Fatalf("after switch and grow %+v", info)
	}
	if _, err := d.disk.WriteAt(bytes.Repeat([]byte{0x22}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if err := d.disk.Flush(); err != nil {
		t.Fatal(err)
	}
	frozen, err := storage.Open(base, storage.OpenOptions{ReadOnly: true, Format: "qcow2"})
	if err != nil {
		t.Fatal(err)
	}
	defer frozen.Close()
	buf := make([]byte, 4096)
	frozen.ReadAt(buf, 0)
	if !bytes.Equal(buf, bytes.Repeat([]byte{0x11}, 4096)) {
		t.Fatal("old top changed after the switch, or lost the write before it")
	}
	d.disk.ReadAt(buf, 0)
	if !bytes.Equal(buf, bytes.Repeat([]byte{0x22}, 4096)) {
		t.Fatal("new top does not hold the write after the switch")
	}
}

func TestDriveHTTPErrors(t *testing.T) {
	p := rawFile(t, "d.raw", 1<<20)
	v := newDriveVM(t, []DiskConfig{{Path: p}}, 1)
	h := httpHandler((&Server{vm: v}).Handler())
	for _, c := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"GET", "/drives/vdq", "", 404, api.CodeDriveNotFound},
		{"PUT", "/drives/vdb", `{"path":"/nonexistent"}`, 400, api.CodeInvalidParameter},
		{"PUT", "/drives/vda", `{"path":"` + p + `"}`, 409, api.CodeIncorrectState},
		{"PUT", "/drives/vdb", `{"path":"x","colour":"red"}`, 400, api.CodeInvalidParameter},
		{"PATCH", "/drives/vda", `{"size_bytes":512}`, 400, api.CodeInvalidParameter},
		{"DELETE", "/drives/vdb", "", 409, api.CodeIncorrectState},
		{"GET", "/drives/vda", "", 200, ""},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, strings.NewReader(c.body)))
		if rec.Code != c.status || (c.code != "" && !strings.Contains(rec.Body.String(), `"code":"`+c.code+`"`)) {
			t.Errorf("%s %s %s: %d %s, want %d %s", c.method, c.path, c.body, rec.Code, rec.Body, c.status, c.code)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/drives", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"id":"vdb"`) {
		t.Errorf("GET /drives: %d %s", rec.Code, rec.Body)
	}
}

// TestOpenBackendsFailureClosesWhatWasOpened gives a good disk and then a
// missing one: the error names the second, and nothing panics.
func TestOpenBackendsFailureClosesWhatWasOpened(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.img")
	if err := raw.Create(good, 1<<20); err != nil {
		t.Fatal(err)
	}
	b, err := openBackends(Config{Disks: []DiskConfig{{Path: good}, {Path: filepath.Join(dir, "missing.img")}}})
	if err == nil || b != nil || !strings.Contains(err.Error(), "disk 1") {
		t.Fatalf("openBackends = %v, %v; want an error for disk 1", b, err)
	}
}
