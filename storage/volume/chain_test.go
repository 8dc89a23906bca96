package volume

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gureum/storage/ratelimit"
)

// These tests write into volumes with qemu-io, the way a guest would, and
// keep a plain sparse file per volume ("the model") with the same writes.
// A volume or snapshot is right when qemu-img compare finds its chain
// equal to the model.

func needQemu(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"qemu-img", "qemu-io"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (Debian package qemu-utils)", bin)
		}
	}
}

// model is the expected contents of a disk, as a sparse raw file.
type model struct {
	t    testing.TB
	path string
}

func newModel(t testing.TB, size int64) *model {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "model-*.raw")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return &model{t: t, path: f.Name()}
}

// fork returns a copy of the model (the contents at a snapshot).
func (m *model) fork() *model {
	m.t.Helper()
	f, err := os.CreateTemp(filepath.Dir(m.path), "fork-*.raw")
	if err != nil {
		m.t.Fatal(err)
	}
	f.Close()
	dst := f.Name()
	if out, err := exec.Command("cp", "--sparse=always", m.path, dst).CombinedOutput(); err != nil {
		m.t.Fatalf("cp: %v: %s", err, out)
	}
	return &model{t: m.t, path: dst}
}

func (m *model) grow(size int64) {
	if err := os.Truncate(m.path, size); err != nil {
		m.t.Fatal(err)
	}
}

// write puts n bytes of pattern at off into both the model and the
// qcow2 file image.
func (m *model) write(image string, pattern byte, off, n int64) {
	m.t.Helper()
	qemuIOWrite(m.t, image, pattern, off, n)
	f, err := os.OpenFile(m.path, os.O_WRONLY, 0)
	if err != nil {
		m.t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = pattern
	}
	if _, err := f.WriteAt(buf, off); err != nil {
		m.t.Fatal(err)
	}
}

func qemuIOWrite(t testing.TB, image string, pattern byte, off, n int64) {
	t.Helper()
	cmd := fmt.Sprintf("write -P 0x%02x %d %d", pattern, off, n)
	if out, err := exec.Command("qemu-io", "-f", "qcow2", "-c", cmd, image).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io %s on %s: %v: %s", cmd, image, err, out)
	}
}

// sameAs checks that the chain topped by image reads exactly as the model.
func (m *model) sameAs(what, image string) {
	m.t.Helper()
	out, err := exec.Command("qemu-img", "compare", "-q", "-f", "qcow2", "-F", "raw", image, m.path).CombinedOutput()
	if err != nil {
		m.t.Errorf("%s differs from what it must hold: %v %s", what, err, out)
	}
}

// chainOf lists the files of image's backing chain, top first.
func chainOf(t testing.TB, image string) []string {
	t.Helper()
	out, err := exec.Command("qemu-img", "info", "--backing-chain", "-f", "qcow2", image).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", image, err)
	}
	var files []string
	for _, line := range strings.Split(string(out), "\n") {
		if name, ok := strings.CutPrefix(line, "image: "); ok {
			files = append(files, filepath.Base(name))
		}
	}
	return files
}

func openTestStore(t testing.TB, drives Drives, images Images) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(dir, Options{Images: images, Drives: drives})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

func mustPath(t testing.TB, s *Store, id string) string {
	t.Helper()
	p, err := s.Path(id)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func snapFile(t testing.TB, s *Store, id string) string {
	t.Helper()
	sn, err := s.Snapshot(id)
	if err != nil {
		t.Fatal(err)
	}
	return s.layerPath(sn.File)
}

const mib = 1 << 20

// TestSnapshotChainsStayByteIdentical builds three snapshots, a volume on
// the middle one that diverges, and a copy, then deletes the middle
// snapshot and then the first: after each step every remaining volume and
// snapshot still reads exactly what it did.
func TestSnapshotChainsStayByteIdentical(t *testing.T) {
	needQemu(t)
	forEachBackend(t, testSnapshotChains)
}

func testSnapshotChains(t *testing.T, images Images) {
	s, _ := openTestStore(t, nil, images)
	v, err := s.CreateVolume(CreateVolumeRequest{Spec: Spec{SizeGiB: 1}})
	if err != nil {
		t.Fatal(err)
	}
	m := newModel(t, v.SizeBytes())
	m.write(mustPath(t, s, v.ID), 0xa1, 0, 4*mib)
	m.write(mustPath(t, s, v.ID), 0xa2, 512*mib+4096, 1000) // partial cluster
	s1, err := s.CreateSnapshot(v.ID, "one")
	if err != nil {
		t.Fatal(err)
	}
	m1 := m.fork()
	m.write(mustPath(t, s, v.ID), 0xb1, 2*mib, 4*mib) // overlaps s1's data
	m.write(mustPath(t, s, v.ID), 0xb2, 100*mib, 64*1024)
	s2, err := s.CreateSnapshot(v.ID, "two")
	if err != nil {
		t.Fatal(err)
	}
	m2 := m.fork()
	m.write(mustPath(t, s, v.ID), 0xc1, 3*mib, 100)
	s3, err := s.CreateSnapshot(v.ID, "three")
	if err != nil {
		t.Fatal(err)
	}
	m3 := m.fork()
	m.write(mustPath(t, s, v.ID), 0xd1, 0, 1*mib)

	// Incremental: the third snapshot holds one cluster of data.
	if sn, _ := s.Snapshot(s3.ID); sn.DataBytes > 1*mib {
		t.Errorf("snapshot three holds 100 new bytes but takes %d bytes", sn.DataBytes)
	}
	if sn, _ := s.Snapshot(s2.ID); sn.DataBytes < 4*mib {
		t.Errorf("snapshot two holds 4 MiB of new data but reports %d bytes", sn.DataBytes)
	}

	// A volume from the middle snapshot, which diverges from the original.
	w, err := s.CreateVolume(CreateVolumeRequest{SnapshotID: s2.ID, Spec: Spec{SizeGiB: 2}})
	if err != nil {
		t.Fatal(err)
	}
	mw := m2.fork()
	mw.grow(w.SizeBytes())
	mw.write(mustPath(t, s, w.ID), 0xe1, 2*mib, 8192)
	mw.write(mustPath(t, s, w.ID), 0xe2, 1536*mib, 8192) // past the snapshot's end
	cp, err := s.CopySnapshot(s2.ID, "copy of two")
	if err != nil {
		t.Fatal(err)
	}

	checkAll := func(step string) {
		t.Helper()
		m.sameAs(step+": volume", mustPath(t, s, v.ID))
		mw.sameAs(step+": volume from snapshot two", mustPath(t, s, w.ID))
		m2.sameAs(step+": copy of snapshot two", snapFile(t, s, cp.ID))
		for _, c := range []struct {
			id string
			m  *model
		}{{s1.ID, m1}, {s2.ID, m2}, {s3.ID, m3}} {
			if _, err := s.Snapshot(c.id); err == nil {
				c.m.sameAs(step+": snapshot "+c.id, snapFile(t, s, c.id))
			}
		}
	}
	checkAll("before deletes")
	if got := len(chainOf(t, snapFile(t, s, cp.ID))); got != 1 {
		t.Errorf("the copy has a chain of %d files, want a standalone file", got)
	}

	if err := s.DeleteSnapshot(s2.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshot(s2.ID); Code(err) != SnapshotNotFound {
		t.Fatalf("deleted snapshot: %v, want %s", err, SnapshotNotFound)
	}
	checkAll("after deleting the middle snapshot")
	if chain := chainOf(t, mustPath(t, s, v.ID)); len(chain) != 3 {
		t.Errorf("volume chain after deleting the middle snapshot: %v, want top, three, one", chain)
	}
	if _, err := os.Stat(s.layerPath(s2.File)); !os.IsNotExist(err) {
		t.Errorf("the middle snapshot's file is still there: %v", err)
	}

	if err := s.DeleteSnapshot(s1.ID); err != nil {
		t.Fatal(err)
	}
	checkAll("after deleting the first snapshot")
	if err := s.DeleteSnapshot(s3.ID); err != nil {
		t.Fatal(err)
	}
	checkAll("after deleting the last snapshot")
	if chain := chainOf(t, mustPath(t, s, v.ID)); len(chain) != 1 {
		t.Errorf("volume chain with no snapshots left: %v", chain)
	}
	if n := len(s.Snapshots()); n != 1 {
		t.Errorf("%d snapshots listed, want only the copy", n)
	}

	// The original volume's deletion leaves the other volume intact.
	if err := s.Delete(v.ID); err != nil {
		t.Fatal(err)
	}
	mw.sameAs("volume from snapshot two after the original's deletion", mustPath(t, s, w.ID))
}

// fakeDrive stands in for a VMM running a volume: it writes to whatever
// file is its top, and records what the store asked of it.
type fakeDrive struct {
	t        testing.TB
	top      string
	switches int
	size     int64
	limits   ratelimit.Limits
}

func (d *fakeDrive) SwitchTop(newTop string) error {
	chain := chainOf(d.t, newTop)
	if len(chain) < 2 || chain[1] != filepath.Base(d.top) {
		return fmt.Errorf("new top %s is not backed by the current top %s: %v", newTop, d.top, chain)
	}
	d.top, d.switches = newTop, d.switches+1
	return nil
}

func (d *fakeDrive) Resize(n int64) error {
	d.size = n
	return exec.Command("qemu-img", "resize", "-q", "-f", "qcow2", d.top, fmt.Sprint(n)).Run()
}

func (d *fakeDrive) SetLimits(l ratelimit.Limits) error { d.limits = l; return nil }

type fakeDrives map[string]*fakeDrive

func (f fakeDrives) Drive(instanceID, device string) (LiveDrive, error) {
	if d := f[instanceID+"/"+device]; d != nil {
		return d, nil
	}
	return nil, nil
}

// TestLiveVolume snapshots, grows and retypes an attached volume through
// its drive, and deletes a snapshot whose child is the running top.
func TestLiveVolume(t *testing.T) {
	needQemu(t)
	forEachBackend(t, testLiveVolume)
}

func testLiveVolume(t *testing.T, images Images) {
	drives := fakeDrives{}
	s, _ := openTestStore(t, drives, images)
	v, err := s.CreateVolume(CreateVolumeRequest{Spec: Spec{SizeGiB: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Attach(v.ID, "i-1", "/dev/vdb"); err != nil {
		t.Fatal(err)
	}
	d := &fakeDrive{t: t, top: mustPath(t, s, v.ID)}
	drives["i-1//dev/vdb"] = d
	m := newModel(t, v.SizeBytes())
	m.write(d.top, 0x11, 0, 2*mib)

	sn, err := s.CreateSnapshot(v.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if d.switches != 1 || d.top != mustPath(t, s, v.ID) {
		t.Fatalf("drive top %s after %d switches, store says %s", d.top, d.switches, mustPath(t, s, v.ID))
	}
	ms := m.fork()
	m.write(d.top, 0x22, mib, 2*mib) // the guest goes on writing
	ms.sameAs("snapshot of a running volume", snapFile(t, s, sn.ID))

	// From the snapshot: exactly the moment of the snapshot.
	w, err := s.CreateVolume(CreateVolumeRequest{SnapshotID: sn.ID})
	if err != nil {
		t.Fatal(err)
	}
	ms.sameAs("volume from a running volume's snapshot", mustPath(t, s, w.ID))

	// Grow and retype while attached: the drive does it.
	if _, err := s.Modify(v.ID, ModifyRequest{SizeGiB: 8, IOPS: 4000, Throughput: 200}); err != nil {
		t.Fatal(err)
	}
	if d.size != 8<<30 || d.limits.OpsPerSecond != 4000 || d.limits.BytesPerSecond != 200*mib {
		t.Fatalf("drive saw size %d, limits %+v", d.size, d.limits)
	}
	m.grow(8 << 30)

	// Deleting the snapshot must wait: its child is the running top,
	// which only the VMM may write.
	if err := s.DeleteSnapshot(sn.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.layerPath(sn.File)); err != nil {
		t.Fatalf("snapshot file removed under a running volume: %v", err)
	}
	if _, err := s.Snapshot(sn.ID); Code(err) != SnapshotNotFound {
		t.Fatalf("deleted snapshot still listed: %v", err)
	}
	ms.sameAs("volume from the deleted snapshot", mustPath(t, s, w.ID))
	m.write(d.top, 0x33, 5*mib, 4096)

	// Detach: the merge happens and the chain shortens.
	delete(drives, "i-1//dev/vdb")
	if _, err := s.Detach(v.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.layerPath(sn.File)); !os.IsNotExist(err) {
		t.Fatalf("snapshot file still there after detach: %v", err)
	}
	m.sameAs("volume after the deferred merge", mustPath(t, s, v.ID))
	ms.sameAs("volume from the snapshot after the deferred merge", mustPath(t, s, w.ID))
	if chain := chainOf(t, mustPath(t, s, v.ID)); len(chain) != 1 {
		t.Errorf("chain after the merge: %v", chain)
	}
}
