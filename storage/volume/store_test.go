package volume

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestSpecLimits(t *testing.T) {
	for _, c := range []struct {
		in   Spec
		want Spec // zero: must be refused
	}{
		{Spec{SizeGiB: 8}, Spec{GP3, 8, 3000, 125}},
		{Spec{Type: GP3, SizeGiB: 1}, Spec{GP3, 1, 3000, 125}},
		{Spec{Type: GP3, SizeGiB: 0}, Spec{}},
		{Spec{Type: GP3, SizeGiB: MaxSizeGiB + 1}, Spec{}},
		{Spec{Type: GP3, SizeGiB: 32, IOPS: 16000, Throughput: 1000}, Spec{GP3, 32, 16000, 1000}},
		{Spec{Type: GP3, SizeGiB: 31, IOPS: 16000}, Spec{}},       // over 500 IOPS/GiB
		{Spec{Type: GP3, SizeGiB: 100, IOPS: 16001}, Spec{}},      // over the gp3 cap
		{Spec{Type: GP3, SizeGiB: 100, IOPS: 2999}, Spec{}},       // under the baseline
		{Spec{Type: GP3, SizeGiB: 100, Throughput: 1001}, Spec{}}, // over the cap
		{Spec{Type: GP3, SizeGiB: 100, Throughput: 751}, Spec{}},  // over IOPS/4
		{Spec{Type: GP3, SizeGiB: 100, Throughput: 750}, Spec{GP3, 100, 3000, 750}},
		{Spec{Type: IO2, SizeGiB: 4, IOPS: 2000}, Spec{IO2, 4, 2000, 500}},
		{Spec{Type: IO2, SizeGiB: 3, IOPS: 100}, Spec{}},  // under 4 GiB
		{Spec{Type: IO2, SizeGiB: 100}, Spec{}},           // IOPS required
		{Spec{Type: IO2, SizeGiB: 4, IOPS: 2001}, Spec{}}, // over 500 IOPS/GiB
		{Spec{Type: IO2, SizeGiB: 200, IOPS: 64000}, Spec{IO2, 200, 64000, 1000}},
		{Spec{Type: IO2, SizeGiB: 200, IOPS: 64001}, Spec{}},
		{Spec{Type: IO2, SizeGiB: 20, IOPS: 99}, Spec{}},
		{Spec{Type: ST1, SizeGiB: 124}, Spec{}},
		{Spec{Type: ST1, SizeGiB: 1024}, Spec{ST1, 1024, 500, 40}},
		{Spec{Type: ST1, SizeGiB: 16384}, Spec{ST1, 16384, 500, 500}},
		{Spec{Type: ST1, SizeGiB: 1024, IOPS: 1000}, Spec{}},
		{Spec{Type: SC1, SizeGiB: 2048}, Spec{SC1, 2048, 250, 24}},
		{Spec{Type: SC1, SizeGiB: 16384}, Spec{SC1, 16384, 250, 192}},
		{Spec{Type: "gp2", SizeGiB: 8}, Spec{}},
	} {
		got, err := c.in.Normalize()
		if c.want == (Spec{}) {
			if err == nil || Code(err) != InvalidParameterValue {
				t.Errorf("%+v: got %v, %v; want InvalidParameterValue", c.in, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%+v: got %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	l := Spec{ST1, 1024, 500, 40}.Limits()
	if l.OpsPerSecond != 500 || l.BytesPerSecond != 40<<20 || l.BytesBurst != 210*10<<20 {
		t.Errorf("st1 1 TiB limits %+v", l)
	}
}

// TestTransitions checks every state against every action.
func TestTransitions(t *testing.T) {
	want := map[VolumeState]map[Action]string{ // resulting state or error code
		StateCreating:  {ActAttach: IncorrectState, ActDetach: IncorrectState, ActModify: IncorrectState, ActSnapshot: IncorrectState, ActDelete: IncorrectState},
		StateAvailable: {ActAttach: "in-use", ActDetach: IncorrectState, ActModify: "available", ActSnapshot: "available", ActDelete: "deleting"},
		StateInUse:     {ActAttach: VolumeInUse, ActDetach: "available", ActModify: "in-use", ActSnapshot: "in-use", ActDelete: VolumeInUse},
		StateDeleting:  {ActAttach: IncorrectState, ActDetach: IncorrectState, ActModify: IncorrectState, ActSnapshot: IncorrectState, ActDelete: IncorrectState},
	}
	for state, actions := range want {
		for a, w := range actions {
			v := &Volume{ID: "vol-1", State: state, Attachment: &Attachment{InstanceID: "i-1"}}
			to, err := nextState(v, a)
			got := string(to)
			if err != nil {
				got = Code(err)
			}
			if got != w {
				t.Errorf("%s on a %s volume: %s, want %s", a, state, got, w)
			}
		}
	}
}

func TestVolumeLifecycle(t *testing.T) {
	needQemu(t)
	s, dir := openTestStore(t, nil, testImages)
	v, err := s.CreateVolume(CreateVolumeRequest{Spec: Spec{Type: IO2, SizeGiB: 8, IOPS: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	if v.State != StateAvailable || v.Throughput != 250 || !validID("vol", v.ID) {
		t.Fatalf("new volume %+v", v)
	}
	if _, err := s.Attach(v.ID, "i-1", "/dev/vdb"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(v.ID); Code(err) != VolumeInUse {
		t.Fatalf("delete of an attached volume: %v", err)
	}
	if _, err := s.Attach(v.ID, "i-2", "/dev/vdb"); Code(err) != VolumeInUse {
		t.Fatalf("second attach: %v", err)
	}
	w, _ := s.CreateVolume(CreateVolumeRequest{Spec: Spec{SizeGiB: 1}})
	if _, err := s.Attach(w.ID, "i-1", "/dev/vdb"); Code(err) != InvalidParameterValue {
		t.Fatalf("attach to a taken device: %v", err)
	}
	got, _ := s.Volume(v.ID)
	if got.State != StateInUse || got.Attachment.InstanceID != "i-1" || got.Attachment.Device != "/dev/vdb" {
		t.Fatalf("attached volume %+v", got)
	}
	if _, err := s.Modify(v.ID, ModifyRequest{SizeGiB: 4}); Code(err) != InvalidParameterValue {
		t.Fatalf("shrink: %v", err)
	}
	if _, err := s.Modify(v.ID, ModifyRequest{Type: GP3}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Volume(v.ID); got.Spec != (Spec{GP3, 8, 3000, 125}) {
		t.Fatalf("io2 → gp3 gave %v", got.Spec)
	}
	if _, err := s.Detach(v.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Detach(v.ID); Code(err) != IncorrectState {
		t.Fatalf("second detach: %v", err)
	}
	// Offline grow goes to the file.
	if _, err := s.Modify(v.ID, ModifyRequest{SizeGiB: 16}); err != nil {
		t.Fatal(err)
	}
	m := newModel(t, 16<<30)
	m.sameAs("grown volume", mustPath(t, s, v.ID))

	// The records survive a restart; the lock keeps a second owner out.
	if _, err := Open(dir, Options{Images: testImages}); err == nil {
		t.Fatal("a second Open of a locked store succeeded")
	}
	s.Close()
	s2, err := Open(dir, Options{Images: testImages})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got, err := s2.Volume(v.ID); err != nil || got.SizeGiB != 16 || got.Type != GP3 {
		t.Fatalf("after reopen: %+v, %v", got, err)
	}
	if err := s2.Delete(v.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Volume(v.ID); Code(err) != VolumeNotFound {
		t.Fatalf("deleted volume: %v", err)
	}
	for _, id := range []string{"vol-nope", "../x", ""} {
		if err := s2.Delete(id); Code(err) != VolumeNotFound {
			t.Errorf("delete %q: %v", id, err)
		}
	}
	if _, err := s2.CreateVolume(CreateVolumeRequest{SnapshotID: "snap-0"}); Code(err) != SnapshotNotFound {
		t.Errorf("create from a missing snapshot: %v", err)
	}
}

// TestRecovery fakes a crash in the middle of a snapshot and of a create.
func TestRecovery(t *testing.T) {
	needQemu(t)
	s, dir := openTestStore(t, nil, testImages)
	v, err := s.CreateVolume(CreateVolumeRequest{Spec: Spec{SizeGiB: 1}})
	if err != nil {
		t.Fatal(err)
	}
	// A snapshot recorded pending, its volume not yet moved: dropped.
	pending := &Snapshot{ID: newID("snap"), VolumeID: v.ID, State: SnapshotPending, File: v.Top}
	if err := s.saveSnapshot(pending); err != nil {
		t.Fatal(err)
	}
	// A layer no record names: an interrupted create.
	stray := filepath.Join(dir, "layers", newLayerName())
	if err := os.WriteFile(stray, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(dir, Options{Images: testImages})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Snapshot(pending.ID); Code(err) != SnapshotNotFound {
		t.Errorf("pending snapshot survived recovery: %v", err)
	}
	if _, err := os.Stat(stray); !os.IsNotExist(err) {
		t.Errorf("stray layer survived recovery: %v", err)
	}
	if _, err := os.Stat(mustPath(t, s, v.ID)); err != nil {
		t.Errorf("volume file lost in recovery: %v", err)
	}
	// Records are whole JSON documents.
	data, err := os.ReadFile(filepath.Join(dir, "volumes", v.ID+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Volume
	if err := json.Unmarshal(data, &back); err != nil || back.ID != v.ID {
		t.Fatalf("volume record: %v, %+v", err, back)
	}
}
