package httpapi

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gureum/api"
	"gureum/client"
	"gureum/hypervisor/instancetype"
	"gureum/hypervisor/service"
	"gureum/images/ami"
	"gureum/vmm/vmmtest"
)

// tenantDaemon is a service in this process with the daemon's own
// authentication: the unix socket (no token: admin; a token: its
// account) and TCP (token required).
type tenantDaemon struct {
	dir     string
	svc     *service.Service
	admin   *client.Client
	sock    string
	tcp     string
	clients []*client.Client // every account's client, for the cleanup
	stop    func()
}

func openTenantService(t *testing.T, dir string) *service.Service {
	t.Helper()
	svc, err := service.Open(service.Config{
		DataDir: dir, VMM: vmmtest.Bin(t, "gureum-vmm"),
		Host:              instancetype.Host{VCPUs: 2, MemoryGiB: 4, CPUOvercommit: 40, MemoryOvercommit: 100},
		MaxGuestMemoryMiB: 64, MaxGuestVCPUs: 1, StopTimeout: 5 * time.Second,
		ReconcileEvery: 200 * time.Millisecond, CreditEvery: time.Hour,
		CgroupName: fmt.Sprintf("gureum-tenant-test-%d", os.Getpid()), CgroupNested: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func startTenantDaemon(t *testing.T) *tenantDaemon {
	t.Helper()
	vmmtest.RequireKVM(t)
	vmmtest.RequireRoot(t)
	d := &tenantDaemon{dir: t.TempDir()}
	vmmtest.CleanupCgroups(t, fmt.Sprintf("gureum-tenant-test-%d", os.Getpid()))
	d.serve(t)
	t.Cleanup(func() {
		// Terminate what every account left, so no VMM outlives the test.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, c := range d.clients {
			ins, _ := c.DescribeInstances(ctx, client.Filter{})
			var ids []string
			for _, in := range ins {
				c.TerminateInstance(ctx, in.InstanceID, api.StopRequest{Force: true})
				ids = append(ids, in.InstanceID)
			}
			if len(ids) > 0 {
				c.WaitState(ctx, ids, []string{"terminated"}, nil)
			}
		}
		d.stop()
	})
	return d
}

// serve opens the service on d.dir and serves it; d.stop undoes it.
func (d *tenantDaemon) serve(t *testing.T) {
	t.Helper()
	d.svc = openTenantService(t, d.dir)
	d.sock = filepath.Join(d.dir, "api.sock")
	os.Remove(d.sock)
	ln, err := net.Listen("unix", d.sock)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: New(d.svc, SocketAuth(d.svc), nil)}
	tsrv := &http.Server{Handler: New(d.svc, TokenAuth(d.svc), nil)}
	go srv.Serve(ln)
	go tsrv.Serve(tl)
	d.tcp = tl.Addr().String()
	d.admin = client.New(d.sock)
	d.clients = []*client.Client{d.admin}
	d.stop = func() {
		srv.Close()
		tsrv.Close()
		cpu, mem := d.svc.CgroupParents()
		d.svc.Close()
		os.Remove(cpu)
		os.Remove(mem)
	}
}

// account makes an account and returns a unix-socket client acting for
// it, and its token.
func (d *tenantDaemon) account(t *testing.T, name string) (*client.Client, api.CreateAccountResponse) {
	t.Helper()
	res, err := d.admin.CreateAccount(context.Background(), name)
	if err != nil {
		t.Fatalf("create account %s: %v", name, err)
	}
	c := d.admin.WithToken(res.Token.Secret)
	d.clients = append(d.clients, c)
	return c, res
}

// TestAccountsCannotTouchEachOther checks the EC2 visibility rule over
// the API with real VMMs: another account's instance, volume, snapshot
// and private AMI do not exist for a caller; a shared AMI can be
// launched but not changed.
func TestAccountsCannotTouchEachOther(t *testing.T) {
	d := startTenantDaemon(t)
	ctx := context.Background()
	alice, aliceAcct := d.account(t, "alice")
	bob, bobAcct := d.account(t, "bob")
	kernel := vmmtest.Bin(t, "testguest.elf")

	// Alice makes a private AMI: an empty 1 GiB root snapshot and the
	// test guest as kernel.
	vol, err := alice.CreateVolume(ctx, api.CreateVolumeRequest{SizeGiB: 1})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := alice.CreateSnapshot(ctx, api.CreateSnapshotRequest{VolumeID: vol.VolumeID})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bob.RegisterImage(ctx, api.RegisterImageRequest{Name: "bobs", KernelPath: kernel, RootSnapshotID: snap.SnapshotID})
	wantCode(t, "register from another's snapshot", err, api.CodeInvalidSnapshotNotFound)
	amiID, err := alice.RegisterImage(ctx, api.RegisterImageRequest{Name: "alice-guest", KernelPath: kernel, RootSnapshotID: snap.SnapshotID})
	if err != nil {
		t.Fatal(err)
	}
	run := api.RunInstancesRequest{ImageID: amiID, InstanceType: "t3.nano"}

	// Bob cannot see or launch it.
	if ims, err := bob.DescribeImages(ctx, client.ImageFilter{}); err != nil || len(ims) != 0 {
		t.Errorf("bob sees images %v (%v)", ims, err)
	}
	_, err = bob.Image(ctx, amiID)
	wantCode(t, "bob describes alice's AMI", err, api.CodeInvalidAMIIDNotFound)
	_, err = bob.RunInstances(ctx, run)
	wantCode(t, "bob launches alice's private AMI", err, api.CodeInvalidAMIIDNotFound)

	// Alice launches it; bob cannot see or stop the instance.
	res, err := alice.RunInstances(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	iid := res.Instances[0].InstanceID
	if res.Instances[0].ImageID != amiID || res.Instances[0].OwnerID != aliceAcct.Account.AccountID {
		t.Errorf("instance %+v: want image %s, owner %s", res.Instances[0], amiID, aliceAcct.Account.AccountID)
	}
	waitAll(t, alice, []string{iid}, "running", 30*time.Second)
	if ins, err := bob.DescribeInstances(ctx, client.Filter{}); err != nil || len(ins) != 0 {
		t.Errorf("bob sees instances %v (%v)", ins, err)
	}
	if ins, err := d.admin.DescribeInstances(ctx, client.Filter{}); err != nil || len(ins) != 0 {
		t.Errorf("the admin sees another account's instances %v (%v)", ins, err)
	}
	_, err = bob.Instance(ctx, iid)
	wantCode(t, "bob describes alice's instance", err, api.CodeInvalidInstanceIDNotFound)
	_, err = bob.StopInstance(ctx, iid, api.StopRequest{Force: true})
	wantCode(t, "bob stops alice's instance", err, api.CodeInvalidInstanceIDNotFound)
	_, err = bob.TerminateInstance(ctx, iid, api.StopRequest{Force: true})
	wantCode(t, "bob terminates alice's instance", err, api.CodeInvalidInstanceIDNotFound)
	_, err = bob.ConsoleOutput(ctx, iid)
	wantCode(t, "bob reads alice's console", err, api.CodeInvalidInstanceIDNotFound)
	_, err = bob.CreateImage(ctx, iid, api.CreateImageRequest{Name: "stolen"})
	wantCode(t, "bob images alice's instance", err, api.CodeInvalidInstanceIDNotFound)
	err = bob.DeleteSnapshot(ctx, snap.SnapshotID)
	wantCode(t, "bob deletes alice's snapshot", err, api.CodeInvalidSnapshotNotFound)
	_, err = bob.Volume(ctx, vol.VolumeID)
	wantCode(t, "bob describes alice's volume", err, api.CodeInvalidVolumeNotFound)
	if in, err := alice.Instance(ctx, iid); err != nil || in.State.Name != "running" {
		t.Errorf("alice's instance after bob's tries: %+v %v", in.State, err)
	}

	// Shared with bob: he launches it, but cannot change or deregister it.
	if err := alice.ModifyImageLaunchPermission(ctx, amiID, api.ModifyLaunchPermissionRequest{
		Add: []api.LaunchPermission{{UserID: bobAcct.Account.AccountID}}}); err != nil {
		t.Fatal(err)
	}
	if ims, err := bob.DescribeImages(ctx, client.ImageFilter{ExecutableBy: []string{"self"}}); err != nil || len(ims) != 1 {
		t.Errorf("bob's executable images: %v (%v)", ims, err)
	}
	bres, err := bob.RunInstances(ctx, run)
	if err != nil {
		t.Fatalf("bob launches the shared AMI: %v", err)
	}
	waitAll(t, bob, []string{bres.Instances[0].InstanceID}, "running", 30*time.Second)
	err = bob.DeregisterImage(ctx, amiID)
	wantCode(t, "bob deregisters a shared AMI", err, api.CodeUnauthorizedOperation)
	_, err = bob.ImageLaunchPermissions(ctx, amiID)
	wantCode(t, "bob reads a shared AMI's permissions", err, api.CodeUnauthorizedOperation)

	// Public: a third account launches it too, over TCP with its token.
	if err := alice.ModifyImageLaunchPermission(ctx, amiID, api.ModifyLaunchPermissionRequest{
		Add: []api.LaunchPermission{{Group: "all"}}, Remove: []api.LaunchPermission{{UserID: bobAcct.Account.AccountID}}}); err != nil {
		t.Fatal(err)
	}
	_, carolAcct := d.account(t, "carol")
	carol := client.NewTCP(d.tcp, carolAcct.Token.Secret)
	d.clients = append(d.clients, carol)
	cres, err := carol.RunInstances(ctx, run)
	if err != nil {
		t.Fatalf("carol launches the public AMI: %v", err)
	}
	waitAll(t, carol, []string{cres.Instances[0].InstanceID}, "running", 30*time.Second)

	// Create an image from alice's instance; only she sees it.
	newAMI, err := alice.CreateImage(ctx, iid, api.CreateImageRequest{Name: "alice-from-instance"})
	if err != nil {
		t.Fatalf("create image: %v", err)
	}
	if im, err := alice.Image(ctx, newAMI); err != nil || im.State != api.ImageStateAvailable {
		t.Errorf("created image: %+v %v", im, err)
	}
	_, err = carol.Image(ctx, newAMI)
	wantCode(t, "carol describes alice's new private AMI", err, api.CodeInvalidAMIIDNotFound)

	// An AMI's root snapshot cannot go while the AMI is registered; an
	// account with resources cannot be deleted.
	err = alice.DeleteSnapshot(ctx, snap.SnapshotID)
	wantCode(t, "delete an AMI's root snapshot", err, api.CodeInvalidSnapshotInUse)
	err = d.admin.DeleteAccount(ctx, aliceAcct.Account.AccountID)
	wantCode(t, "delete an account that owns resources", err, api.CodeDeleteConflict)
	err = alice.DeleteAccount(ctx, bobAcct.Account.AccountID)
	wantCode(t, "a non-admin deletes an account", err, api.CodeUnauthorizedOperation)

	// Tokens: required on TCP, and a revoked one stops working.
	_, err = client.NewTCP(d.tcp, "").DescribeInstances(ctx, client.Filter{})
	wantCode(t, "TCP without a token", err, api.CodeAuthFailure)
	_, err = d.admin.WithToken("gureum_0000000000000000_00").DescribeInstances(ctx, client.Filter{})
	wantCode(t, "socket with a bad token", err, api.CodeAuthFailure)
	// (A second token is revoked: the cleanup still needs carol's first.)
	second, err := carol.CreateToken(ctx, carolAcct.Account.AccountID, "short-lived")
	if err != nil {
		t.Fatal(err)
	}
	carol2 := client.NewTCP(d.tcp, second.Secret)
	if ins, err := carol2.DescribeInstances(ctx, client.Filter{}); err != nil || len(ins) != 1 {
		t.Errorf("carol's second token sees %d instances (%v), want 1", len(ins), err)
	}
	if err := carol.RevokeToken(ctx, second.TokenID); err != nil {
		t.Fatal(err)
	}
	_, err = carol2.DescribeInstances(ctx, client.Filter{})
	wantCode(t, "revoked token", err, api.CodeAuthFailure)
}

// TestDefaultImageOnceAndTwentyLaunches registers the test guest as the
// default AMI, restarts the service and registers again (still one
// image, same id), then launches 20 instances from it in one call as an
// account other than its owner (it is public); all reach running.
func TestDefaultImageOnceAndTwentyLaunches(t *testing.T) {
	d := startTenantDaemon(t)
	ctx := context.Background()
	def := ami.DefaultImage{Name: ami.DefaultTestGuestName, Kernel: vmmtest.Bin(t, "testguest.elf"), RootSizeGiB: 1}
	first, err := d.svc.RegisterDefaultImage(def)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Public || first.OwnerID != service.AdminAccount || first.ImageOwnerAlias != "gureum" {
		t.Errorf("default image %+v: want public, owned by the admin, alias gureum", first)
	}
	tok, err := os.ReadFile(filepath.Join(d.dir, "admin.token"))
	if err != nil || len(tok) < 20 {
		t.Fatalf("admin token file: %q %v", tok, err)
	}
	if fi, _ := os.Stat(filepath.Join(d.dir, "admin.token")); fi.Mode().Perm() != 0o600 {
		t.Errorf("admin token file mode %v, want 0600", fi.Mode().Perm())
	}

	d.stop()
	d.serve(t)
	again, err := d.svc.RegisterDefaultImage(def)
	if err != nil {
		t.Fatal(err)
	}
	ims, err := d.admin.DescribeImages(ctx, client.ImageFilter{Owners: []string{"gureum"}})
	if err != nil || len(ims) != 1 || again.ImageID != first.ImageID {
		t.Fatalf("after a restart: %d default images (%v), ids %s and %s", len(ims), err, first.ImageID, again.ImageID)
	}
	// The admin token written at the first start still works.
	if _, err := client.NewTCP(d.tcp, string(tok[:len(tok)-1])).Accounts(ctx); err != nil {
		t.Errorf("admin token after a restart: %v", err)
	}

	user, _ := d.account(t, "user")
	start := time.Now()
	res, err := user.RunInstances(ctx, api.RunInstancesRequest{ImageID: first.ImageID, InstanceType: "t3.nano", Count: 20})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, in := range res.Instances {
		ids = append(ids, in.InstanceID)
	}
	waitAll(t, user, ids, "running", 60*time.Second)
	t.Logf("20 instances from one AMI running in %v", time.Since(start))
	vols, err := user.Volumes(ctx)
	if err != nil || len(vols) != 20 {
		t.Fatalf("user has %d volumes (%v), want 20 root volumes", len(vols), err)
	}
	for _, v := range vols {
		if v.SnapshotID != first.RootSnapshotID {
			t.Errorf("root volume %s made from %q, want the AMI's snapshot %s", v.VolumeID, v.SnapshotID, first.RootSnapshotID)
		}
	}
	// The owner deregisters the AMI; its instances still boot.
	if err := d.admin.DeregisterImage(ctx, first.ImageID); err != nil {
		t.Fatal(err)
	}
	if _, err := user.RebootInstance(ctx, ids[0]); err != nil {
		t.Errorf("reboot after deregister: %v", err)
	}
	if _, err := user.StopInstance(ctx, ids[1], api.StopRequest{Force: true}); err != nil {
		t.Fatal(err)
	}
	waitAll(t, user, ids[1:2], "stopped", 30*time.Second)
	if _, err := user.StartInstance(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	waitAll(t, user, ids[1:2], "running", 30*time.Second)
}
