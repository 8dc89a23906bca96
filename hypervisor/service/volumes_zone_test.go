package service

import (
	"context"
	"testing"

	"gureum/api"
	"gureum/hypervisor/ids"
	"gureum/hypervisor/lifecycle"
	"gureum/hypervisor/store"
	"gureum/storage/volume"
)

// TestZoneOfVolumesAndInstances checks where the records place volumes
// and instances, without a VMM: an instance is in its subnet's zone (the
// first zone without an interface), a volume in the zone it was created
// in, a root volume (no zone recorded) in its instance's, an old record
// in the first zone; and attaching across zones is refused.
func TestZoneOfVolumesAndInstances(t *testing.T) {
	s := &Service{cfg: Config{Zones: []string{"z-a", "z-b"}}, store: store.NewMemory()}
	inB := &instanceRecord{ID: ids.New(ids.Instance), Owner: AdminAccount, Network: &instanceNetwork{Zone: "z-b"}}
	plain := &instanceRecord{ID: ids.New(ids.Instance), Owner: AdminAccount}
	created := volume.Volume{ID: ids.New(ids.Volume)}
	root := volume.Volume{ID: ids.New(ids.Volume), Attachment: &volume.Attachment{InstanceID: inB.ID, Device: rootDevice}}
	old := volume.Volume{ID: ids.New(ids.Volume)}
	err := s.store.Update(func(tx store.Tx) error {
		for _, r := range []*instanceRecord{inB, plain} {
			if err := putInstance(tx, r); err != nil {
				return err
			}
		}
		for id, o := range map[string]volumeOwner{
			created.ID: {Owner: AdminAccount, Zone: "z-a"},
			root.ID:    {Owner: AdminAccount},
			old.ID:     {Owner: AdminAccount},
		} {
			if err := store.PutJSON(tx, kindVolumeOwner, id, o); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if z := s.instanceZone(inB); z != "z-b" {
		t.Errorf("instance in a z-b subnet: zone %q", z)
	}
	if z := s.instanceZone(plain); z != "z-a" {
		t.Errorf("instance without an interface: zone %q, want the first", z)
	}
	s.store.View(func(tx store.Tx) error {
		for _, c := range []struct {
			what string
			v    volume.Volume
			o    volumeOwner
			want string
		}{
			{"created in z-a", created, volumeOwner{Zone: "z-a"}, "z-a"},
			{"root volume of the z-b instance", root, volumeOwner{}, "z-b"},
			{"record without a zone, detached", old, volumeOwner{}, "z-a"},
		} {
			if got := s.volumeZone(tx, c.v, c.o); got != c.want {
				t.Errorf("%s: zone %q, want %q", c.what, got, c.want)
			}
		}
		if err := s.checkSameZone(tx, created, inB); api.CodeOf(err) != api.CodeInvalidVolumeZoneMismatch {
			t.Errorf("z-a volume to z-b instance: %v, want %s", err, api.CodeInvalidVolumeZoneMismatch)
		}
		if err := s.checkSameZone(tx, created, plain); err != nil {
			t.Errorf("z-a volume to an instance of the first zone: %v", err)
		}
		if err := s.checkSameZone(tx, old, inB); api.CodeOf(err) != api.CodeInvalidVolumeZoneMismatch {
			t.Errorf("old (first-zone) volume to z-b instance: %v, want %s", err, api.CodeInvalidVolumeZoneMismatch)
		}
		return nil
	})
}

// TestVolumeZonesThroughService runs the zone rules on the real service:
// volumes are created in the first zone or the one asked for (an unknown
// zone is refused and creates nothing), describe shows the zone, an
// attach across zones is InvalidVolume.ZoneMismatch and changes nothing,
// and a volume made from a snapshot of the other zone's volume attaches.
// The instance has no interface (networking off), so it is in the first
// zone. About 3 s.
func TestVolumeZonesThroughService(t *testing.T) {
	s := openTest(t, nil)
	ctx := context.Background()
	res, err := s.RunInstances(ctx, Admin, api.RunInstancesRequest{Image: testImage(t, ""), InstanceType: "t3.nano"})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Instances[0].InstanceID

	first, err := s.CreateVolume(Admin, api.CreateVolumeRequest{SizeGiB: 1})
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.CreateVolume(Admin, api.CreateVolumeRequest{SizeGiB: 1, AvailabilityZone: "local-1b"})
	if err != nil {
		t.Fatal(err)
	}
	if first.AvailabilityZone != "local-1a" || other.AvailabilityZone != "local-1b" {
		t.Fatalf("zones at create: %q and %q, want local-1a and local-1b", first.AvailabilityZone, other.AvailabilityZone)
	}
	_, err = s.CreateVolume(Admin, api.CreateVolumeRequest{SizeGiB: 1, AvailabilityZone: "local-9z"})
	wantCode(t, err, api.CodeInvalidParameterValue)
	vols, err := s.Volumes(Admin)
	if err != nil {
		t.Fatal(err)
	}
	zones := map[string]string{}
	for _, v := range vols {
		zones[v.VolumeID] = v.AvailabilityZone
	}
	if len(vols) != 3 || zones[first.VolumeID] != "local-1a" || zones[other.VolumeID] != "local-1b" {
		t.Fatalf("volumes listed: %+v (want the root volume and the two made, in their zones)", zones)
	}
	in := waitState(t, s, id, lifecycle.Running)
	if root := zones[in.BlockDevices[0].VolumeID]; root != "local-1a" {
		t.Errorf("root volume's zone %q, want the instance's (local-1a)", root)
	}

	// Across zones: refused, and the volume and instance are as before.
	_, err = s.AttachVolume(Admin, other.VolumeID, api.AttachVolumeRequest{InstanceID: id})
	wantCode(t, err, api.CodeInvalidVolumeZoneMismatch)
	if v, err := s.Volume(Admin, other.VolumeID); err != nil || v.State != "available" || v.Attachment != nil {
		t.Errorf("volume after a refused attach: %+v, %v", v, err)
	}
	if in, err := s.Instance(Admin, id); err != nil || len(in.BlockDevices) != 1 {
		t.Errorf("instance after a refused attach: %+v, %v", in.BlockDevices, err)
	}

	// Snapshots are regional: the other zone's data comes over through one.
	snap, err := s.CreateSnapshot(Admin, api.CreateSnapshotRequest{VolumeID: other.VolumeID})
	if err != nil {
		t.Fatal(err)
	}
	copied, err := s.CreateVolume(Admin, api.CreateVolumeRequest{SnapshotID: snap.SnapshotID, AvailabilityZone: "local-1a"})
	if err != nil || copied.AvailabilityZone != "local-1a" {
		t.Fatalf("volume from the snapshot in local-1a: %+v, %v", copied, err)
	}
	v, err := s.AttachVolume(Admin, copied.VolumeID, api.AttachVolumeRequest{InstanceID: id})
	if err != nil || v.Attachment == nil || v.Attachment.InstanceID != id || v.AvailabilityZone != "local-1a" {
		t.Fatalf("attach in the same zone: %+v, %v", v, err)
	}
	if _, err := s.Terminate(Admin, id, api.StopRequest{Force: true}); err != nil {
		t.Fatal(err)
	}
	waitState(t, s, id, lifecycle.Terminated)
}
