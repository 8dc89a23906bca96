package ami

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"gureum/api"
	"gureum/hypervisor/accounts"
	"gureum/hypervisor/store"
	"gureum/storage"
	"gureum/storage/volume"
)

// cloud is a registry over a memory store and a real volume store in a
// temporary directory, with an admin and three accounts.
type cloud struct {
	t                        *testing.T
	reg                      *Registry
	vols                     *volume.Store
	owners                   *accounts.Owners
	dir                      string
	admin, alice, bob, carol string
}

func newCloud(t *testing.T) *cloud {
	t.Helper()
	st := store.NewMemory()
	accts := accounts.New(st, accounts.Options{})
	admin, _, err := accts.Init()
	if err != nil {
		t.Fatal(err)
	}
	c := &cloud{t: t, dir: t.TempDir(), owners: accounts.NewOwners(st), admin: admin.ID}
	for name, p := range map[string]*string{"alice": &c.alice, "bob": &c.bob, "carol": &c.carol} {
		a, _, err := accts.Create(admin.ID, name)
		if err != nil {
			t.Fatal(err)
		}
		*p = a.ID
	}
	c.vols, err = volume.Open(filepath.Join(c.dir, "volumes"), volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.vols.Close() })
	c.reg, err = New(Options{Store: st, Volumes: c.vols, Owners: c.owners, Accounts: accts, DataDir: c.dir})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// kernelFile writes a file that looks like a kernel of the given boot
// mode (an ELF header, or a bzImage setup header's magic).
func (c *cloud) kernelFile(mode string, seed byte) string {
	b := bytes.Repeat([]byte{seed}, 4096)
	if mode == api.BootModePVH {
		copy(b, "\x7fELF")
	} else {
		copy(b[0x202:], "HdrS")
	}
	p := filepath.Join(c.dir, "kernel-"+mode+"-"+string(rune('a'+seed%26)))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// snapshot makes a snapshot owned by owner of a sizeGiB volume holding
// data at offset 0.
func (c *cloud) snapshot(owner string, sizeGiB int64, data []byte) string {
	c.t.Helper()
	v, err := c.vols.CreateVolume(volume.CreateVolumeRequest{Spec: volume.Spec{SizeGiB: sizeGiB}})
	if err != nil {
		c.t.Fatal(err)
	}
	if data != nil {
		c.writeVolume(v.ID, 0, data)
	}
	sn, err := c.vols.CreateSnapshot(v.ID, "")
	if err != nil {
		c.t.Fatal(err)
	}
	for _, id := range []string{v.ID, sn.ID} {
		if err := c.owners.SetOwner(id, owner); err != nil {
			c.t.Fatal(err)
		}
	}
	return sn.ID
}

func (c *cloud) openVolume(id string) storage.Disk {
	c.t.Helper()
	p, err := c.vols.Path(id)
	if err != nil {
		c.t.Fatal(err)
	}
	d, err := storage.Open(p, storage.OpenOptions{Format: "qcow2"})
	if err != nil {
		c.t.Fatal(err)
	}
	return d
}

func (c *cloud) writeVolume(id string, off int64, data []byte) {
	c.t.Helper()
	d := c.openVolume(id)
	if _, err := d.WriteAt(data, off); err != nil {
		c.t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cloud) readVolume(id string, off int64, n int) []byte {
	c.t.Helper()
	d := c.openVolume(id)
	defer d.Close()
	b := make([]byte, n)
	if _, err := d.ReadAt(b, off); err != nil {
		c.t.Fatal(err)
	}
	return b
}

func (c *cloud) register(owner, name string) Image {
	c.t.Helper()
	im, err := c.reg.Register(owner, api.RegisterImageRequest{
		Name: name, KernelPath: c.kernelFile(api.BootModePVH, 1), RootSnapshotID: c.snapshot(owner, 1, []byte("root")),
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return im
}

func wantCode(t *testing.T, what string, err error, code api.Code) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want %s", what, code)
		return
	}
	if got := api.CodeOf(err); got != code {
		t.Errorf("%s: %v (code %s), want %s", what, err, got, code)
	}
}

func TestRegister(t *testing.T) {
	c := newCloud(t)
	kernel := c.kernelFile(api.BootModeBzImage, 7)
	initrd := filepath.Join(c.dir, "initrd")
	os.WriteFile(initrd, []byte("initramfs bytes"), 0o644)
	snap := c.snapshot(c.alice, 2, []byte("hello"))

	im, err := c.reg.Register(c.alice, api.RegisterImageRequest{
		Name: "web (v1)", Description: "a web server", KernelPath: kernel, InitramfsPath: initrd,
		RootSnapshotID: snap, KernelCmdline: "console=ttyS0",
	})
	if err != nil {
		t.Fatal(err)
	}
	if im.State != api.ImageStateAvailable || im.BootMode != api.BootModeBzImage || im.RootSizeGiB != 2 ||
		im.RootDeviceName != DefaultRootDevice || im.Architecture != api.ArchitectureX86_64 || im.Public || im.OwnerID != c.alice {
		t.Fatalf("registered %+v", im)
	}
	a := im.API()
	if a.RootDeviceType != api.RootDeviceEBS || a.RootSnapshotID != snap || a.KernelSHA256 != im.Kernel {
		t.Fatalf("API view %+v", a)
	}

	// The kernel is kept by content: changing the source changes nothing.
	orig, _ := os.ReadFile(kernel)
	sum := sha256.Sum256(orig)
	if im.Kernel != hex.EncodeToString(sum[:]) {
		t.Fatalf("kernel digest %s", im.Kernel)
	}
	os.WriteFile(kernel, []byte("rebuilt"), 0o644)
	kpath, ipath := c.reg.BootFiles(im.Boot())
	if got, _ := os.ReadFile(kpath); !bytes.Equal(got, orig) {
		t.Fatal("the registered kernel changed with its source file")
	}
	if got, _ := os.ReadFile(ipath); string(got) != "initramfs bytes" {
		t.Fatalf("initramfs blob: %q", got)
	}

	good := func() api.RegisterImageRequest {
		return api.RegisterImageRequest{Name: "other", KernelPath: c.kernelFile(api.BootModePVH, 2), RootSnapshotID: snap}
	}
	bad := []struct {
		what string
		edit func(*api.RegisterImageRequest)
		code api.Code
	}{
		{"duplicate name", func(r *api.RegisterImageRequest) { r.Name = "web (v1)" }, api.CodeInvalidAMINameDuplicate},
		{"short name", func(r *api.RegisterImageRequest) { r.Name = "ab" }, api.CodeInvalidAMINameMalformed},
		{"name with a colon", func(r *api.RegisterImageRequest) { r.Name = "web:1" }, api.CodeInvalidAMINameMalformed},
		{"arm64", func(r *api.RegisterImageRequest) { r.Architecture = "arm64" }, api.CodeInvalidParameterValue},
		{"root device", func(r *api.RegisterImageRequest) { r.RootDeviceName = "/dev/sda1" }, api.CodeInvalidParameterValue},
		{"no kernel", func(r *api.RegisterImageRequest) { r.KernelPath = "" }, api.CodeMissingParameter},
		{"missing kernel file", func(r *api.RegisterImageRequest) { r.KernelPath = "/nonexistent" }, api.CodeInvalidParameterValue},
		{"not a kernel", func(r *api.RegisterImageRequest) { r.KernelPath = initrd }, api.CodeInvalidParameterValue},
		{"wrong boot mode", func(r *api.RegisterImageRequest) { r.BootMode = api.BootModeBzImage }, api.CodeInvalidParameterValue},
		{"no snapshot", func(r *api.RegisterImageRequest) { r.RootSnapshotID = "" }, api.CodeMissingParameter},
		{"malformed snapshot", func(r *api.RegisterImageRequest) { r.RootSnapshotID = "snap-xyz" }, api.CodeInvalidSnapshotIDMalformed},
		{"unknown snapshot", func(r *api.RegisterImageRequest) { r.RootSnapshotID = "snap-0123456789abcdef0" }, api.CodeInvalidSnapshotNotFound},
		{"another's snapshot", func(r *api.RegisterImageRequest) { r.RootSnapshotID = c.snapshot(c.bob, 1, nil) }, api.CodeInvalidSnapshotNotFound},
		{"long description", func(r *api.RegisterImageRequest) { r.Description = string(bytes.Repeat([]byte("x"), 256)) }, api.CodeInvalidParameterValue},
	}
	for _, b := range bad {
		req := good()
		b.edit(&req)
		_, err := c.reg.Register(c.alice, req)
		wantCode(t, b.what, err, b.code)
	}
	if all, _ := c.reg.Describe(c.alice, Filter{}); len(all) != 1 {
		t.Fatalf("failed registrations left images: %+v", all)
	}

	// Names are unique per owner, not globally.
	if _, err := c.reg.Register(c.bob, api.RegisterImageRequest{Name: "web (v1)", KernelPath: c.kernelFile(api.BootModeBzImage, 8),
		RootSnapshotID: c.snapshot(c.bob, 1, nil)}); err != nil {
		t.Fatalf("bob's image of the same name: %v", err)
	}
}

func TestPermissions(t *testing.T) {
	c := newCloud(t)
	im := c.register(c.alice, "private")
	id := im.ID

	// Private: bob sees nothing, can do nothing.
	for what, err := range map[string]error{
		"get":         func() error { _, err := c.reg.Get(c.bob, id); return err }(),
		"launchable":  func() error { _, err := c.reg.Launchable(c.bob, id); return err }(),
		"describe id": func() error { _, err := c.reg.Describe(c.bob, Filter{ImageIDs: []string{id}}); return err }(),
		"deregister":  c.reg.Deregister(c.bob, id),
		"permissions": func() error { _, err := c.reg.LaunchPermissions(c.bob, id); return err }(),
		"modify": c.reg.ModifyLaunchPermission(c.bob, id, api.ModifyLaunchPermissionRequest{
			Add: []api.LaunchPermission{{Group: "all"}}}),
	} {
		wantCode(t, "bob "+what+" of a private image", err, api.CodeInvalidAMIIDNotFound)
	}
	if l, err := c.reg.Describe(c.bob, Filter{}); err != nil || len(l) != 0 {
		t.Fatalf("bob describes %+v %v", l, err)
	}
	if _, err := c.reg.Launchable(c.alice, id); err != nil {
		t.Fatalf("the owner cannot launch: %v", err)
	}

	// Bad grants change nothing.
	for what, p := range map[string]struct {
		p    api.LaunchPermission
		code api.Code
	}{
		"malformed user": {api.LaunchPermission{UserID: "12"}, api.CodeInvalidUserIDMalformed},
		"unknown user":   {api.LaunchPermission{UserID: "000000000001"}, api.CodeInvalidAMIAttributeItemValue},
		"unknown group":  {api.LaunchPermission{Group: "friends"}, api.CodeInvalidAMIAttributeItemValue},
		"both":           {api.LaunchPermission{UserID: c.bob, Group: "all"}, api.CodeInvalidParameterValue},
	} {
		err := c.reg.ModifyLaunchPermission(c.alice, id, api.ModifyLaunchPermissionRequest{
			Add: []api.LaunchPermission{{UserID: c.bob}, p.p}})
		wantCode(t, what, err, p.code)
	}
	wantCode(t, "empty modify", c.reg.ModifyLaunchPermission(c.alice, id, api.ModifyLaunchPermissionRequest{}), api.CodeMissingParameter)
	if _, err := c.reg.Launchable(c.bob, id); api.CodeOf(err) != api.CodeInvalidAMIIDNotFound {
		t.Fatalf("a failed modify shared the image: %v", err)
	}

	// Shared with bob: bob launches it but cannot change it; carol still
	// sees nothing.
	if err := c.reg.ModifyLaunchPermission(c.alice, id, api.ModifyLaunchPermissionRequest{
		Add: []api.LaunchPermission{{UserID: c.bob}, {UserID: c.bob}, {UserID: c.alice}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.reg.Launchable(c.bob, id); err != nil {
		t.Fatalf("bob cannot launch a shared image: %v", err)
	}
	if l, _ := c.reg.Describe(c.bob, Filter{ExecutableBy: []string{"self"}}); len(l) != 1 || l[0].ID != id {
		t.Fatalf("bob's executable-by self: %+v", l)
	}
	wantCode(t, "bob deregisters a shared image", c.reg.Deregister(c.bob, id), api.CodeUnauthorizedOperation)
	wantCode(t, "bob modifies a shared image", c.reg.ModifyLaunchPermission(c.bob, id, api.ModifyLaunchPermissionRequest{
		Add: []api.LaunchPermission{{UserID: c.carol}}}), api.CodeUnauthorizedOperation)
	_, err := c.reg.LaunchPermissions(c.bob, id)
	wantCode(t, "bob reads permissions of a shared image", err, api.CodeUnauthorizedOperation)
	_, err = c.reg.Launchable(c.carol, id)
	wantCode(t, "carol launches an image shared with bob", err, api.CodeInvalidAMIIDNotFound)
	perms, err := c.reg.LaunchPermissions(c.alice, id)
	if err != nil || len(perms.LaunchPermissions) != 1 || perms.LaunchPermissions[0].UserID != c.bob {
		t.Fatalf("permissions %+v %v", perms, err)
	}

	// Public: everyone launches it; owner-only actions stay the owner's.
	if err := c.reg.ModifyLaunchPermission(c.alice, id, api.ModifyLaunchPermissionRequest{
		Add: []api.LaunchPermission{{Group: "all"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.reg.Launchable(c.carol, id); err != nil {
		t.Fatalf("carol cannot launch a public image: %v", err)
	}
	wantCode(t, "carol deregisters a public image", c.reg.Deregister(c.carol, id), api.CodeUnauthorizedOperation)

	// Removing both grants makes it private again.
	if err := c.reg.ModifyLaunchPermission(c.alice, id, api.ModifyLaunchPermissionRequest{
		Remove: []api.LaunchPermission{{Group: "all"}, {UserID: c.bob}}}); err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{c.bob, c.carol} {
		_, err := c.reg.Launchable(who, id)
		wantCode(t, "launch after unsharing", err, api.CodeInvalidAMIIDNotFound)
	}

	_, err = c.reg.Launchable(c.alice, "ami-123")
	wantCode(t, "malformed id", err, api.CodeInvalidAMIIDMalformed)
	_, err = c.reg.Launchable(c.alice, "ami-0123456789abcdef0")
	wantCode(t, "unknown id", err, api.CodeInvalidAMIIDNotFound)
}

func TestDescribeFilters(t *testing.T) {
	c := newCloud(t)
	a1 := c.register(c.alice, "web-1")
	a2 := c.register(c.alice, "db-1")
	b1 := c.register(c.bob, "web-bob")
	b2 := c.register(c.bob, "hidden-bob")
	if err := c.reg.ModifyLaunchPermission(c.bob, b1.ID, api.ModifyLaunchPermissionRequest{
		Add: []api.LaunchPermission{{Group: "all"}}}); err != nil {
		t.Fatal(err)
	}
	yes, no := true, false
	ids := func(l []Image) []string {
		var out []string
		for _, im := range l {
			out = append(out, im.ID)
		}
		return out
	}
	set := func(s ...string) map[string]bool {
		m := map[string]bool{}
		for _, x := range s {
			m[x] = true
		}
		return m
	}
	cases := []struct {
		what string
		f    Filter
		want map[string]bool
	}{
		{"all visible", Filter{}, set(a1.ID, a2.ID, b1.ID)},
		{"owner self", Filter{Owners: []string{"self"}}, set(a1.ID, a2.ID)},
		{"owner bob", Filter{Owners: []string{c.bob}}, set(b1.ID)},
		{"name wildcard", Filter{Name: "web*"}, set(a1.ID, b1.ID)},
		{"public", Filter{IsPublic: &yes}, set(b1.ID)},
		{"not public", Filter{IsPublic: &no}, set(a1.ID, a2.ID)},
		{"executable by all", Filter{ExecutableBy: []string{"all"}}, set(b1.ID)},
		{"ids", Filter{ImageIDs: []string{a2.ID, b1.ID}}, set(a2.ID, b1.ID)},
		{"ids and name", Filter{ImageIDs: []string{a2.ID, b1.ID}, Name: "web-?ob"}, set(b1.ID)},
	}
	for _, tc := range cases {
		l, err := c.reg.Describe(c.alice, tc.f)
		if err != nil {
			t.Errorf("%s: %v", tc.what, err)
			continue
		}
		got := ids(l)
		if len(got) != len(tc.want) {
			t.Errorf("%s: got %v, want %v", tc.what, got, tc.want)
			continue
		}
		for _, id := range got {
			if !tc.want[id] {
				t.Errorf("%s: got %v, want %v", tc.what, got, tc.want)
			}
		}
	}
	_, err := c.reg.Describe(c.alice, Filter{ImageIDs: []string{b2.ID}})
	wantCode(t, "describe another's private id", err, api.CodeInvalidAMIIDNotFound)
	_, err = c.reg.Describe(c.alice, Filter{ImageIDs: []string{"ami-nope"}})
	wantCode(t, "describe a malformed id", err, api.CodeInvalidAMIIDMalformed)
	_, err = c.reg.Describe(c.alice, Filter{Name: "[bad"})
	wantCode(t, "bad pattern", err, api.CodeInvalidParameterValue)
}

func TestDeregisterKeepsSnapshot(t *testing.T) {
	c := newCloud(t)
	im := c.register(c.alice, "short-lived")
	if id, ok, err := c.reg.SnapshotInUse(im.RootSnapshotID); err != nil || !ok || id != im.ID {
		t.Fatalf("SnapshotInUse: %s %v %v", id, ok, err)
	}
	if err := c.reg.Deregister(c.alice, im.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.reg.Get(c.alice, im.ID); api.CodeOf(err) != api.CodeInvalidAMIIDNotFound {
		t.Fatalf("deregistered image still there: %v", err)
	}
	if sn, err := c.vols.Snapshot(im.RootSnapshotID); err != nil || sn.State != volume.SnapshotCompleted {
		t.Fatalf("the root snapshot went with the image: %+v %v", sn, err)
	}
	if _, ok, _ := c.reg.SnapshotInUse(im.RootSnapshotID); ok {
		t.Fatal("snapshot still in use after deregister")
	}
	// The name is free again.
	c.register(c.alice, "short-lived")
}

func TestCreateImageFromVolume(t *testing.T) {
	c := newCloud(t)
	base := c.register(c.alice, "base")
	vols, err := c.reg.CreateRootVolumes(base, c.alice, 1, volume.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	root := vols[0].ID
	c.writeVolume(root, 1<<20, []byte("configured"))

	_, err = c.reg.CreateImage(c.bob, CreateImageRequest{VolumeID: root, Boot: base.Boot(), Name: "stolen"})
	wantCode(t, "image of another's volume", err, api.CodeInvalidVolumeNotFound)
	_, err = c.reg.CreateImage(c.alice, CreateImageRequest{VolumeID: "vol-1", Boot: base.Boot(), Name: "x-1"})
	wantCode(t, "malformed volume", err, api.CodeInvalidVolumeIDMalformed)

	im, err := c.reg.CreateImage(c.alice, CreateImageRequest{VolumeID: root, Boot: base.Boot(), Name: "configured", Description: "base + config"})
	if err != nil {
		t.Fatal(err)
	}
	if im.State != api.ImageStateAvailable || im.RootSnapshotID == "" || im.Kernel != base.Kernel || im.RootSizeGiB != base.RootSizeGiB {
		t.Fatalf("created %+v", im)
	}
	if owner, err := c.owners.Owner(im.RootSnapshotID); err != nil || owner != c.alice {
		t.Fatalf("snapshot owner %q %v", owner, err)
	}
	// Writes after the image do not reach it.
	c.writeVolume(root, 1<<20, []byte("changed!!!"))
	got, err := c.reg.CreateRootVolumes(im, c.alice, 1, volume.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	if b := c.readVolume(got[0].ID, 1<<20, 10); string(b) != "configured" {
		t.Fatalf("an instance of the new image reads %q", b)
	}
	if b := c.readVolume(got[0].ID, 0, 4); string(b) != "root" {
		t.Fatalf("the base image's data is gone: %q", b)
	}
	_, err = c.reg.CreateImage(c.alice, CreateImageRequest{VolumeID: root, Boot: base.Boot(), Name: "configured"})
	wantCode(t, "duplicate name", err, api.CodeInvalidAMINameDuplicate)
}

func TestRecover(t *testing.T) {
	c := newCloud(t)
	base := c.register(c.alice, "base")
	vols, err := c.reg.CreateRootVolumes(base, c.alice, 1, volume.Spec{})
	if err != nil {
		t.Fatal(err)
	}

	// A CreateImage that crashed after its snapshot, before the record
	// said so.
	made, err := c.reg.newImage(c.alice, "crashed-after", "", "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	made.State, made.SourceVolumeID, made.Kernel, made.BootMode = api.ImageStatePending, vols[0].ID, base.Kernel, base.BootMode
	if err := c.reg.insert(made); err != nil {
		t.Fatal(err)
	}
	sn, err := c.vols.CreateSnapshot(vols[0].ID, snapshotDescription(made.ID))
	if err != nil {
		t.Fatal(err)
	}

	// An import that crashed with its scratch volume made.
	imp, _ := c.reg.newImage(c.admin, DefaultTestGuestName, "", "", "", "")
	scratch, err := c.vols.CreateVolume(volume.CreateVolumeRequest{Spec: volume.Spec{SizeGiB: 1}})
	if err != nil {
		t.Fatal(err)
	}
	imp.State, imp.ImportVolumeID = api.ImageStatePending, scratch.ID
	if err := c.reg.insert(imp); err != nil {
		t.Fatal(err)
	}

	if err := c.reg.Recover(); err != nil {
		t.Fatal(err)
	}
	got, err := c.reg.Get(c.alice, made.ID)
	if err != nil || got.State != api.ImageStateAvailable || got.RootSnapshotID != sn.ID {
		t.Fatalf("recovered create-image: %+v %v", got, err)
	}
	if owner, _ := c.owners.Owner(sn.ID); owner != c.alice {
		t.Fatalf("recovered snapshot owner %q", owner)
	}
	got, err = c.reg.Get(c.admin, imp.ID)
	if err != nil || got.State != api.ImageStateFailed || got.API().StateReason == nil {
		t.Fatalf("recovered import: %+v %v", got, err)
	}
	if _, err := c.vols.Volume(scratch.ID); volume.Code(err) != volume.VolumeNotFound {
		t.Fatalf("scratch volume left: %v", err)
	}
	_, err = c.reg.Launchable(c.admin, imp.ID)
	wantCode(t, "launch a failed image", err, api.CodeInvalidAMIIDUnavailable)
}

func TestRegisterDefault(t *testing.T) {
	c := newCloud(t)
	// A sparse 3 MiB root disk with data in two places.
	disk := filepath.Join(c.dir, "root.img")
	f, err := os.Create(disk)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("superblock"), 1024)
	f.WriteAt([]byte("last block"), 3<<20-10)
	f.Close()
	d := DefaultImage{Name: DefaultLinuxName, OwnerID: c.admin, Kernel: c.kernelFile(api.BootModeBzImage, 3),
		RootDisk: disk, KernelCmdline: "quiet"}

	im, err := c.reg.RegisterDefault(d)
	if err != nil {
		t.Fatal(err)
	}
	if im.State != api.ImageStateAvailable || !im.Public || im.OwnerAlias != DefaultOwnerAlias || im.RootSizeGiB != 1 {
		t.Fatalf("default image %+v", im)
	}
	snaps := len(c.vols.Snapshots())
	again, err := c.reg.RegisterDefault(d)
	if err != nil || again.ID != im.ID {
		t.Fatalf("second RegisterDefault: %+v %v", again, err)
	}
	if len(c.vols.Snapshots()) != snaps || len(c.vols.Volumes()) != 0 {
		t.Fatalf("second RegisterDefault made storage: %d snapshots, %d volumes", len(c.vols.Snapshots()), len(c.vols.Volumes()))
	}
	if l, _ := c.reg.Describe(c.carol, Filter{Owners: []string{DefaultOwnerAlias}}); len(l) != 1 {
		t.Fatalf("carol's describe of gureum images: %+v", l)
	}

	img, err := c.reg.Launchable(c.carol, im.ID)
	if err != nil {
		t.Fatal(err)
	}
	vols, err := c.reg.CreateRootVolumes(img, c.carol, 1, volume.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	if b := c.readVolume(vols[0].ID, 1024, 10); string(b) != "superblock" {
		t.Fatalf("root reads %q", b)
	}
	if b := c.readVolume(vols[0].ID, 3<<20-10, 10); string(b) != "last block" {
		t.Fatalf("root reads %q", b)
	}
	if b := c.readVolume(vols[0].ID, 2<<20, 4); !bytes.Equal(b, make([]byte, 4)) {
		t.Fatalf("a hole reads %q", b)
	}
	// Only the written chunks were copied.
	sn, _ := c.vols.Snapshot(im.RootSnapshotID)
	if sn.DataBytes > 1<<20 {
		t.Fatalf("the import allocated %d bytes for 20 bytes of data", sn.DataBytes)
	}

	// The test guest: no root disk, an empty root.
	tg, err := c.reg.RegisterDefault(DefaultImage{Name: DefaultTestGuestName, OwnerID: c.admin,
		Kernel: c.kernelFile(api.BootModePVH, 4), KernelCmdline: "selftest"})
	if err != nil {
		t.Fatal(err)
	}
	if tg.BootMode != api.BootModePVH || tg.RootSizeGiB != 1 || tg.State != api.ImageStateAvailable {
		t.Fatalf("test guest image %+v", tg)
	}
}
