package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gureum/storage"
	"gureum/storage/raw"
	"gureum/storage/volume"
	"gureum/vmm/api"
	"gureum/vmm/vmmtest"
)

// The drive tests run the test guest in "blkcmd" mode: it takes disk
// commands typed on its serial console (through --console-sock) and
// prints a line when its disk's capacity changes. See
// images/testguest/src/blkcmd.c.

// guestConsole types commands into a running test guest.
type guestConsole struct {
	t    *testing.T
	v    *vmmtest.VMM
	conn net.Conn
}

func dialConsole(t *testing.T, v *vmmtest.VMM, path string) *guestConsole {
	t.Helper()
	var conn net.Conn
	var err error
	for i := 0; i < 100; i++ {
		if conn, err = net.Dial("unix", path); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("console socket: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return &guestConsole{t: t, v: v, conn: conn}
}

// run types cmd and waits for the next line starting with prefix (one
// more than there were before), returning it.
func (g *guestConsole) run(cmd, prefix string, timeout time.Duration) string {
	g.t.Helper()
	before := len(g.lines(prefix))
	if _, err := fmt.Fprintf(g.conn, "%s\n", cmd); err != nil {
		g.t.Fatalf("type %q: %v", cmd, err)
	}
	return g.waitNth(prefix, before+1, timeout)
}

// lines returns the whole output lines (ended by a newline: the console
// arrives in pieces) that start with prefix.
func (g *guestConsole) lines(prefix string) []string {
	out := g.v.Output()
	out = out[:strings.LastIndexByte(out, '\n')+1]
	var l []string
	for _, line := range strings.Split(out, "\n") {
		if line = strings.TrimRight(line, "\r"); strings.HasPrefix(line, prefix) {
			l = append(l, line)
		}
	}
	return l
}

// waitNth waits until n lines start with prefix and returns the n-th.
func (g *guestConsole) waitNth(prefix string, n int, timeout time.Duration) string {
	g.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if l := g.lines(prefix); len(l) >= n {
			return l[n-1]
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("no line %d starting with %q within %v", n, prefix, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitCapacity waits until the guest's latest capacity report is sectors
// (each step of the test changes it, so the latest report is the news).
func (g *guestConsole) waitCapacity(sectors int64) {
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

// pattern is the guest's write pattern: each 64-bit word holds its disk
// byte offset XOR seed × 0x9e3779b97f4a7c15 (blk_write_pattern).
func pattern(off, n int64, seed uint64) []byte {
	b := make([]byte, n)
	key := seed * 0x9e3779b97f4a7c15
	for i := int64(0); i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], uint64(off+i)^key)
	}
	return b
}

// expectBytes opens path read-only and compares [off, off+len(want)).
func expectBytes(t *testing.T, what, path string, off int64, want []byte) {
	t.Helper()
	d, err := storage.Open(path, storage.OpenOptions{ReadOnly: true, Format: "qcow2"})
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	defer d.Close()
	got := make([]byte, len(want))
	if _, err := d.ReadAt(got, off); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && got[i] == want[i] {
			i++
		}
		t.Fatalf("%s: bytes differ from offset %d (first difference at +%d)", what, off, i)
	}
}

// vmmDrives finds the one running test VM's drive for the volume store,
// as the daemon would.
type vmmDrives struct{ client *api.Client }

func (d vmmDrives) Drive(instanceID, device string) (volume.LiveDrive, error) {
	if instanceID != "i-test" || device != "/dev/vda" {
		return nil, nil
	}
	return d.client.LiveDrive("vda"), nil
}

var opsRe = regexp.MustCompile(`ops=(\d+)`)

// TestE2EDrives runs one guest through a volume's life on a drive slot:
// attach, writes, a snapshot taken while it runs, online growth, an IOPS
// limit set at run time, refused bad requests, and detach.
func TestE2EDrives(t *testing.T) {
	vmmtest.RequireKVM(t)
	dir := t.TempDir()
	consoleSock := filepath.Join(dir, "console.sock")
	v := vmmtest.StartVMM(t, vmmtest.Options{API: true, Args: []string{
		"--cmdline", "blkcmd", "--cpus", "1", "--drive-slots", "2", "--console-sock", consoleSock,
	}})
	v.WaitFor(`blk cmd: ready`, bootTimeout)
	g := dialConsole(t, v, consoleSock)
	client := api.NewClient(v.APISock)
	ctx := context.Background()

	store, err := volume.Open(filepath.Join(dir, "volumes"), volume.Options{Drives: vmmDrives{client}})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	vol, err := store.CreateVolume(volume.CreateVolumeRequest{Spec: volume.Spec{SizeGiB: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Attach(vol.ID, "i-test", "/dev/vda"); err != nil {
		t.Fatal(err)
	}
	top, err := store.Path(vol.ID)
	if err != nil {
		t.Fatal(err)
	}

	// (d) attach: the guest sees the capacity go from 0 to 1 GiB.
	if _, err := client.AttachDrive(ctx, "vda", api.DriveAttach{Path: top, Format: "qcow2"}); err != nil {
		t.Fatal(err)
	}
	g.waitCapacity(1 << 30 / 512)

	// (a) a snapshot of the running volume holds exactly the bytes of its
	// moment. 128 KiB of seed 1 at 0, snapshot, 128 KiB of seed 2 at 64 KiB.
	if l := g.run("write 0 256 1", "blk write:", 30*time.Second); l != "blk write: ok sector=0 count=256 seed=1" {
		t.Fatal(l)
	}
	snap, err := store.CreateSnapshot(vol.ID, "while running")
	if err != nil {
		t.Fatal(err)
	}
	if l := g.run("write 128 256 2", "blk write:", 30*time.Second); l != "blk write: ok sector=128 count=256 seed=2" {
		t.Fatal(l)
	}
	newTop, _ := store.Path(vol.ID)
	if info, err := client.Drive(ctx, "vda"); err != nil || info.Path != newTop || newTop == top {
		t.Fatalf("drive after snapshot %+v (%v); volume top %s, old top %s", info, err, newTop, top)
	}
	fromSnap, err := store.CreateVolume(volume.CreateVolumeRequest{SnapshotID: snap.ID})
	if err != nil {
		t.Fatal(err)
	}
	fromSnapPath, _ := store.Path(fromSnap.ID)
	expectBytes(t, "volume from the snapshot", fromSnapPath, 0, append(pattern(0, 128<<10, 1), make([]byte, 64<<10)...))
	expectBytes(t, "live volume", newTop, 0, append(pattern(0, 64<<10, 1), pattern(64<<10, 128<<10, 2)...))

	// (b) online growth through the store: the guest sees 2 GiB.
	if _, err := store.Modify(vol.ID, volume.ModifyRequest{SizeGiB: 2}); err != nil {
		t.Fatal(err)
	}
	g.waitCapacity(2 << 30 / 512)

	// (c) 200 IOPS for 10 s: the guest completes 200/s ± 10%. Unlimited,
	// the emulated guest does several thousand.
	const iops, seconds = 200, 10
	if _, err := client.UpdateDrive(ctx, "vda", api.DriveUpdate{Limits: &api.DriveLimits{OpsPerSecond: iops}}); err != nil {
		t.Fatal(err)
	}
	l := g.run(fmt.Sprintf("iops %d", seconds), "blk iops:", (seconds+30)*time.Second)
	m := opsRe.FindStringSubmatch(l)
	if m == nil {
		t.Fatal(l)
	}
	ops, _ := strconv.Atoi(m[1])
	if rate := float64(ops) / seconds; rate > iops*1.1 || rate < iops*0.9 {
		t.Fatalf("%d ops in %d s = %.0f/s under a %d IOPS limit (want ±10%%)", ops, seconds, rate, iops)
	}
	t.Logf("limited to %d IOPS: %d ops in %d s", iops, ops, seconds)
	if _, err := client.UpdateDrive(ctx, "vda", api.DriveUpdate{Limits: &api.DriveLimits{}}); err != nil {
		t.Fatal(err)
	}

	// (e) bad requests: a clear error, and nothing changes.
	before, err := client.Drives(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		do     func() error
		status int
		code   string
	}{
		{"unknown drive", func() error { _, err := client.Drive(ctx, "vdz"); return err }, 404, api.CodeDriveNotFound},
		{"bad path", func() error {
			_, err := client.AttachDrive(ctx, "vdb", api.DriveAttach{Path: filepath.Join(dir, "missing.qcow2")})
			return err
		}, 400, api.CodeInvalidParameter},
		{"attach to a full drive", func() error { _, err := client.AttachDrive(ctx, "vda", api.DriveAttach{Path: top}); return err }, 409, api.CodeIncorrectState},
		{"shrink", func() error {
			_, err := client.UpdateDrive(ctx, "vda", api.DriveUpdate{SizeBytes: 1 << 30})
			return err
		}, 400, api.CodeInvalidParameter},
		{"top not on the current file", func() error {
			_, err := client.UpdateDrive(ctx, "vda", api.DriveUpdate{Top: fromSnapPath})
			return err
		}, 400, api.CodeInvalidParameter},
	} {
		var ae *api.APIError
		if err := c.do(); !errors.As(err, &ae) || ae.Status != c.status || ae.Error_.Code != c.code || ae.Error_.Message == "" {
			t.Errorf("%s: %v, want HTTP %d %s with a message", c.name, err, c.status, c.code)
		}
	}
	after, _ := client.Drives(ctx)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("refused requests changed the drives:\n%+v\n%+v", before, after)
	}
	if l := g.run("write 1024 8 3", "blk write:", 30*time.Second); l != "blk write: ok sector=1024 count=8 seed=3" {
		t.Fatalf("guest I/O after refused requests: %s", l)
	}

	// (d) detach: capacity 0, and the guest's I/O now fails.
	if err := client.DetachDrive(ctx, "vda"); err != nil {
		t.Fatal(err)
	}
	g.waitCapacity(0)
	if l := g.run("write 0 8 4", "blk write:", 30*time.Second); l != "blk write: fail I/O error" {
		t.Fatalf("write after detach: %s", l)
	}
	if _, err := store.Detach(vol.ID); err != nil {
		t.Fatal(err)
	}
	expectBytes(t, "volume after detach", newTop, 512*1024, pattern(512*1024, 4096, 3))
}

// TestE2EDiskLimitFlag: --disk PATH,iops=N caps the guest from boot on.
func TestE2EDiskLimitFlag(t *testing.T) {
	vmmtest.RequireKVM(t)
	img := filepath.Join(t.TempDir(), "disk.raw")
	if err := rawDisk(img, 16<<20); err != nil {
		t.Fatal(err)
	}
	const iops, seconds = 100, 3
	v := vmmtest.StartVMM(t, vmmtest.Options{Args: []string{
		"--cmdline", fmt.Sprintf("selftest blk.mib=1 blkiops=0:%d", seconds),
		"--disk", fmt.Sprintf("%s,iops=%d,iops_burst=10", img, iops),
	}})
	m := v.WaitFor(`selftest blkiops: (ok|fail)[^\n]*\n`, bootTimeout)
	f := opsRe.FindStringSubmatch(m[0])
	if m[1] != "ok" || f == nil {
		t.Fatal(m[0])
	}
	ops, _ := strconv.Atoi(f[1])
	// At most the burst, the rate over the window, and the 4 requests in
	// flight; at least 90% of the rate.
	if ops > 10+iops*seconds+4 || ops < iops*seconds*9/10 {
		t.Fatalf("%d ops in %d s under --disk ...,iops=%d", ops, seconds, iops)
	}
	if code := v.Wait(30 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

func rawDisk(path string, size int64) error { return raw.Create(path, size) }
