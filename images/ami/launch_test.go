package ami

import (
	"bytes"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"gureum/api"
	"gureum/storage/volume"
)

// TestLaunchTwentyIsCopyOnWrite launches 20 root volumes from a 1 GiB and
// from a 10 GiB image. Each volume is a new empty top on the image's
// snapshot, so the time must not grow with the image's size, no volume
// may copy the image's data, and each must diverge on its own.
func TestLaunchTwentyIsCopyOnWrite(t *testing.T) {
	const count = 20
	c := newCloud(t)
	data := bytes.Repeat([]byte("image data "), 1<<16) // about 700 KiB
	elapsed := map[int64]time.Duration{}
	for _, sizeGiB := range []int64{1, 10} {
		// The image's data ends near the end of the disk too, so a copy
		// would have to walk the whole size.
		snapVol, err := c.vols.CreateVolume(volume.CreateVolumeRequest{Spec: volume.Spec{SizeGiB: sizeGiB}})
		if err != nil {
			t.Fatal(err)
		}
		c.writeVolume(snapVol.ID, 0, data)
		c.writeVolume(snapVol.ID, sizeGiB<<30-int64(len(data)), data)
		sn, err := c.vols.CreateSnapshot(snapVol.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		c.owners.SetOwner(sn.ID, c.alice)
		im, err := c.reg.Register(c.alice, api.RegisterImageRequest{
			Name: fmt.Sprintf("image-%dg", sizeGiB), KernelPath: c.kernelFile(api.BootModePVH, 5), RootSnapshotID: sn.ID})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.reg.ModifyLaunchPermission(c.alice, im.ID, api.ModifyLaunchPermissionRequest{
			Add: []api.LaunchPermission{{UserID: c.bob}}}); err != nil {
			t.Fatal(err)
		}

		start := time.Now()
		img, err := c.reg.Launchable(c.bob, im.ID)
		if err != nil {
			t.Fatal(err)
		}
		vols, err := c.reg.CreateRootVolumes(img, c.bob, count, volume.Spec{})
		if err != nil {
			t.Fatal(err)
		}
		elapsed[sizeGiB] = time.Since(start)
		t.Logf("%d root volumes from a %d GiB image: %v", count, sizeGiB, elapsed[sizeGiB])

		for i, v := range vols {
			if v.SizeGiB != sizeGiB || v.SnapshotID != sn.ID {
				t.Fatalf("volume %d: %+v", i, v)
			}
			if owner, _ := c.owners.Owner(v.ID); owner != c.bob {
				t.Fatalf("volume %s owned by %q", v.ID, owner)
			}
			p, _ := c.vols.Path(v.ID)
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if used := allocated(st); used > 1<<20 {
				t.Fatalf("volume %d's top takes %d bytes on the host: the image was copied", i, used)
			}
		}
		// Each guest writes its own bytes over the image's; each reads
		// back its own, and a fresh launch still reads the image.
		for i, v := range vols {
			c.writeVolume(v.ID, 0, []byte(fmt.Sprintf("instance %02d", i)))
		}
		for i, v := range vols {
			if got := string(c.readVolume(v.ID, 0, 11)); got != fmt.Sprintf("instance %02d", i) {
				t.Fatalf("volume %d reads %q", i, got)
			}
			if got := c.readVolume(v.ID, sizeGiB<<30-int64(len(data)), 11); string(got) != "image data " {
				t.Fatalf("volume %d's untouched end reads %q", i, got)
			}
		}
		fresh, err := c.reg.CreateRootVolumes(img, c.bob, 1, volume.Spec{})
		if err != nil {
			t.Fatal(err)
		}
		if got := string(c.readVolume(fresh[0].ID, 0, 11)); got != "image data " {
			t.Fatalf("the image changed under its instances: %q", got)
		}
	}
	// Launch time must not follow the size (10x). The bound is loose
	// because the machine is shared; a copy of even one GiB would take
	// seconds.
	if elapsed[10] > 3*elapsed[1]+500*time.Millisecond {
		t.Errorf("20 launches took %v from 10 GiB but %v from 1 GiB", elapsed[10], elapsed[1])
	}
	if elapsed[10] > 5*time.Second {
		t.Errorf("20 launches took %v", elapsed[10])
	}
}

func TestCreateRootVolumesIsAllOrNothing(t *testing.T) {
	c := newCloud(t)
	im := c.register(c.alice, "base")
	for _, n := range []int{0, -1, MaxLaunchCount + 1} {
		_, err := c.reg.CreateRootVolumes(im, c.alice, n, volume.Spec{})
		wantCode(t, fmt.Sprintf("count %d", n), err, api.CodeInvalidParameterValue)
	}
	_, err := c.reg.CreateRootVolumes(im, c.alice, 3, volume.Spec{Type: volume.IO2, SizeGiB: 4})
	wantCode(t, "io2 without IOPS", err, api.CodeInvalidParameterValue)

	// The third of five creations fails: the two made are deleted.
	before := len(c.vols.Volumes())
	failing := &failingVolumes{Store: c.vols, failAt: 3}
	reg := *c.reg
	reg.vols = failing
	_, err = reg.CreateRootVolumes(im, c.alice, 5, volume.Spec{})
	wantCode(t, "failure midway", err, api.CodeInternalError)
	if got := len(c.vols.Volumes()); got != before || failing.calls != 3 {
		t.Fatalf("after a failed launch: %d volumes (want %d), %d creations", got, before, failing.calls)
	}
	vols, err := c.reg.CreateRootVolumes(im, c.alice, 3, volume.Spec{SizeGiB: 5})
	if err != nil || len(vols) != 3 || vols[0].SizeGiB != 5 {
		t.Fatalf("grown roots: %+v %v", vols, err)
	}
	if got := len(c.vols.Volumes()); got != before+3 {
		t.Fatalf("%d volumes, want %d", got, before+3)
	}
	pending := im
	pending.State = api.ImageStatePending
	_, err = c.reg.CreateRootVolumes(pending, c.alice, 1, volume.Spec{})
	wantCode(t, "pending image", err, api.CodeInvalidAMIIDUnavailable)
}

// allocated is what a file takes on the host disk (holes do not count).
func allocated(st os.FileInfo) int64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Blocks * 512
	}
	return st.Size()
}

// failingVolumes fails its failAt-th CreateVolume with a host error.
type failingVolumes struct {
	*volume.Store
	failAt, calls int
}

func (f *failingVolumes) CreateVolume(req volume.CreateVolumeRequest) (volume.Volume, error) {
	f.calls++
	if f.calls == f.failAt {
		return volume.Volume{}, &volume.Error{Code: volume.InternalError, Message: "disk full"}
	}
	return f.Store.CreateVolume(req)
}
