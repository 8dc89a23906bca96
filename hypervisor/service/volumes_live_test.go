package service

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gureum/api"
	"gureum/hypervisor/lifecycle"
	"gureum/storage"
)

// The live-volume test runs the test guest in "blkcmd" mode on its second
// disk (blk.disk=1: vda is the root volume, vdb the first empty drive
// slot): it takes disk commands typed on its console and prints a line
// when that disk's capacity changes (docs/testguest.md).

// liveGuest types commands into an instance's console and reads the
// answers from its console log.
type liveGuest struct {
	t    *testing.T
	s    *Service
	id   string
	conn net.Conn
}

// lines returns the whole console lines that start with prefix.
func (g *liveGuest) lines(prefix string) []string {
	out, err := g.s.ConsoleOutput(Admin, g.id)
	if err != nil {
		g.t.Fatal(err)
	}
	text := out.Output[:strings.LastIndexByte(out.Output, '\n')+1]
	var l []string
	for _, line := range strings.Split(text, "\n") {
		if line = strings.TrimRight(line, "\r"); strings.HasPrefix(line, prefix) {
			l = append(l, line)
		}
	}
	return l
}

// run types cmd and returns the next new line starting with prefix.
func (g *liveGuest) run(cmd, prefix string, timeout time.Duration) string {
	g.t.Helper()
	before := len(g.lines(prefix))
	if _, err := fmt.Fprintf(g.conn, "%s\n", cmd); err != nil {
		g.t.Fatalf("type %q: %v", cmd, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		if l := g.lines(prefix); len(l) > before {
			return l[before]
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("%q: no line starting with %q within %v", cmd, prefix, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitCapacity waits until the guest's latest capacity report is sectors.
func (g *liveGuest) waitCapacity(sectors int64) {
	g.t.Helper()
	want := fmt.Sprintf("blk: capacity %d sectors", sectors)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if l := g.lines("blk: capacity "); len(l) > 0 && l[len(l)-1] == want {
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("guest did not report %q within 30 s", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// guestPattern is the guest's write pattern: each 64-bit word holds its
// disk byte offset XOR seed × 0x9e3779b97f4a7c15.
func guestPattern(off, n int64, seed uint64) []byte {
	b := make([]byte, n)
	key := seed * 0x9e3779b97f4a7c15
	for i := int64(0); i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], uint64(off+i)^key)
	}
	return b
}

// expectVolumeBytes reads a volume's top file (read-only, beside a VMM
// that may hold it open: the guest flushed after writing) and compares.
func expectVolumeBytes(t *testing.T, s *Service, what, volumeID string, want []byte) {
	t.Helper()
	path, err := s.volumes.Path(volumeID)
	if err != nil {
		t.Fatal(err)
	}
	d, err := storage.Open(path, storage.OpenOptions{ReadOnly: true, Format: "qcow2"})
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	defer d.Close()
	got := make([]byte, len(want))
	if _, err := d.ReadAt(got, 0); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for got[i] == want[i] {
			i++
		}
		t.Fatalf("%s: first difference at byte %d", what, i)
	}
}

var liveOpsRe = regexp.MustCompile(`ops=(\d+)`)

// TestVolumeOnRunningInstance takes an EBS volume through its life on a
// running instance with the real daemon service, VMM and test guest:
// attach (the guest sees the disk), writes, a snapshot while it runs,
// more writes, a volume from the snapshot holding exactly the bytes of
// the snapshot moment, delete refused while attached, online growth seen
// by the guest, new IOPS limits applied at once, detach, and a volume
// that stays attached across a stop and start.
func TestVolumeOnRunningInstance(t *testing.T) {
	s := openTest(t, nil)
	ctx := context.Background()
	res, err := s.RunInstances(ctx, Admin, api.RunInstancesRequest{Image: testImage(t, "blkcmd blk.disk=1"), InstanceType: "t3.nano"})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Instances[0].InstanceID
	waitState(t, s, id, lifecycle.Running)
	waitConsole(t, s, id, "blk cmd: ready")
	conn, err := s.AttachConsole(Admin, id)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	g := &liveGuest{t: t, s: s, id: id, conn: conn}

	vol, err := s.CreateVolume(Admin, api.CreateVolumeRequest{VolumeType: "gp3", SizeGiB: 1})
	if err != nil {
		t.Fatal(err)
	}

	// Attach to the running instance: the first free slot, vdb.
	v, err := s.AttachVolume(Admin, vol.VolumeID, api.AttachVolumeRequest{InstanceID: id})
	if err != nil {
		t.Fatal(err)
	}
	if v.Attachment == nil || v.Attachment.InstanceID != id || v.Attachment.Device != "/dev/vdb" {
		t.Fatalf("attachment %+v", v.Attachment)
	}
	g.waitCapacity(1 << 30 / 512)
	drives, err := s.sup.Drives(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(drives) != 1+driveSlots || drives[1].Limits.OpsPerSecond != 3000 || drives[1].Limits.BytesPerSecond != 125<<20 {
		t.Fatalf("drives after attach: %+v (want the root, %d slots, vdb limited like gp3)", drives, driveSlots)
	}

	// Delete is refused while attached.
	wantCode(t, s.DeleteVolume(Admin, vol.VolumeID), api.CodeVolumeInUse)

	// Snapshot while running: 128 KiB of seed 1 at 0, snapshot, 128 KiB
	// of seed 2 at 64 KiB.
	if l := g.run("write 0 256 1", "blk write:", 30*time.Second); l != "blk write: ok sector=0 count=256 seed=1" {
		t.Fatal(l)
	}
	snap, err := s.CreateSnapshot(Admin, api.CreateSnapshotRequest{VolumeID: vol.VolumeID})
	if err != nil {
		t.Fatal(err)
	}
	if l := g.run("write 128 256 2", "blk write:", 30*time.Second); l != "blk write: ok sector=128 count=256 seed=2" {
		t.Fatal(l)
	}
	fromSnap, err := s.CreateVolume(Admin, api.CreateVolumeRequest{SnapshotID: snap.SnapshotID})
	if err != nil {
		t.Fatal(err)
	}
	expectVolumeBytes(t, s, "volume from the snapshot", fromSnap.VolumeID, append(guestPattern(0, 128<<10, 1), make([]byte, 64<<10)...))
	expectVolumeBytes(t, s, "live volume", vol.VolumeID, append(guestPattern(0, 64<<10, 1), guestPattern(64<<10, 128<<10, 2)...))

	// Grow to 4 GiB (io2's smallest size, for the next step): the guest
	// sees the new capacity.
	if v, err = s.ModifyVolume(Admin, vol.VolumeID, api.ModifyVolumeRequest{SizeGiB: 4}); err != nil || v.SizeGiB != 4 {
		t.Fatalf("grow: %+v, %v", v, err)
	}
	g.waitCapacity(4 << 30 / 512)

	// io2 at 500 IOPS: the guest (several thousand IOPS unlimited)
	// completes 500/s ± 10% over 3 s.
	const iops, seconds = 500, 3
	if _, err := s.ModifyVolume(Admin, vol.VolumeID, api.ModifyVolumeRequest{VolumeType: "io2", IOPS: iops}); err != nil {
		t.Fatal(err)
	}
	l := g.run(fmt.Sprintf("iops %d", seconds), "blk iops:", (seconds+30)*time.Second)
	m := liveOpsRe.FindStringSubmatch(l)
	if m == nil {
		t.Fatal(l)
	}
	ops, _ := strconv.Atoi(m[1])
	if rate := float64(ops) / seconds; rate > iops*1.1 || rate < iops*0.9 {
		t.Fatalf("%d ops in %d s = %.0f/s after a change to %d IOPS (want ±10%%)", ops, seconds, rate, iops)
	}

	// Detach: the guest sees capacity 0; the volume is available and can
	// be deleted; the slot takes the next attach.
	if v, err = s.DetachVolume(Admin, vol.VolumeID); err != nil || v.Attachment != nil || v.State != "available" {
		t.Fatalf("detach: %+v, %v", v, err)
	}
	g.waitCapacity(0)
	if in, err := s.Instance(Admin, id); err != nil || len(in.BlockDevices) != 1 {
		t.Fatalf("instance after detach: %+v, %v", in.BlockDevices, err)
	}
	if v, err = s.AttachVolume(Admin, fromSnap.VolumeID, api.AttachVolumeRequest{InstanceID: id}); err != nil || v.Attachment.Device != "/dev/vdb" {
		t.Fatalf("attach again: %+v, %v", v, err)
	}
	g.waitCapacity(1 << 30 / 512)
	if l := g.run("write 0 8 3", "blk write:", 30*time.Second); l != "blk write: ok sector=0 count=8 seed=3" {
		t.Fatal(l)
	}
	if err := s.DeleteVolume(Admin, vol.VolumeID); err != nil {
		t.Fatal(err)
	}

	// Across a stop and start the attached volume is a boot disk of the
	// new VMM (vdb again; the new VMM's console log is fresh, so the
	// capacity line below is the guest's report at boot) and still
	// detaches live.
	if _, err := s.Stop(Admin, id, api.StopRequest{Force: true}); err != nil {
		t.Fatal(err)
	}
	waitState(t, s, id, lifecycle.Stopped)
	if _, err := s.Start(Admin, id); err != nil {
		t.Fatal(err)
	}
	waitState(t, s, id, lifecycle.Running)
	waitConsole(t, s, id, "blk cmd: ready")
	conn.Close()
	if g.conn, err = s.AttachConsole(Admin, id); err != nil {
		t.Fatal(err)
	}
	defer g.conn.Close()
	g.waitCapacity(1 << 30 / 512)
	if _, err := s.DetachVolume(Admin, fromSnap.VolumeID); err != nil {
		t.Fatal(err)
	}
	g.waitCapacity(0)
	expectVolumeBytes(t, s, "volume from the snapshot after its own writes", fromSnap.VolumeID,
		append(guestPattern(0, 4096, 3), guestPattern(4096, 128<<10-4096, 1)...))
}
