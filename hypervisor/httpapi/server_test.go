package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gureum/api"
	"gureum/client"
	"gureum/hypervisor/instancetype"
	"gureum/hypervisor/service"
	"gureum/vmm/vmmtest"
)

// TestOpenAPIMatchesRoutes checks that api/openapi.json documents exactly
// the routes the server serves.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	var documented, served []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	for _, r := range Routes() {
		served = append(served, r.Method+" "+r.Path)
	}
	slices.Sort(documented)
	slices.Sort(served)
	for _, d := range documented {
		if !slices.Contains(served, d) {
			t.Errorf("documented but not served: %s", d)
		}
	}
	for _, s := range served {
		if !slices.Contains(documented, s) {
			t.Errorf("served but not documented: %s", s)
		}
	}
	if len(served) < 20 {
		t.Errorf("only %d routes", len(served))
	}
}

type testDaemon struct {
	svc    *service.Service
	client *client.Client
	sock   string
	tcp    string
}

// startDaemon runs a service with its API on a unix socket and on TCP
// (token "secret") in this process.
func startDaemon(t *testing.T) *testDaemon {
	t.Helper()
	vmmtest.RequireKVM(t)
	vmmtest.RequireRoot(t)
	dir := t.TempDir()
	vmmtest.CleanupCgroups(t, fmt.Sprintf("gureum-api-test-%d", os.Getpid()))
	svc, err := service.Open(service.Config{
		DataDir: dir, VMM: vmmtest.Bin(t, "gureum-vmm"),
		Host:              instancetype.Host{VCPUs: 2, MemoryGiB: 4, CPUOvercommit: 40, MemoryOvercommit: 100},
		MaxGuestMemoryMiB: 64, MaxGuestVCPUs: 1, StopTimeout: 5 * time.Second,
		ReconcileEvery: 200 * time.Millisecond, CreditEvery: time.Hour,
		CgroupName: fmt.Sprintf("gureum-api-test-%d", os.Getpid()), CgroupNested: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: New(svc, AllowAll, nil)}
	tsrv := &http.Server{Handler: New(svc, Tokens([]string{"secret"}), nil)}
	go srv.Serve(ln)
	go tsrv.Serve(tl)
	d := &testDaemon{svc: svc, client: client.New(sock), sock: sock, tcp: tl.Addr().String()}
	t.Cleanup(func() {
		// Terminate what the test left, so no VMM outlives it.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ins, _ := d.client.DescribeInstances(ctx, client.Filter{})
		var ids []string
		for _, in := range ins {
			d.client.TerminateInstance(ctx, in.InstanceID, api.StopRequest{Force: true})
			ids = append(ids, in.InstanceID)
		}
		if len(ids) > 0 {
			d.client.WaitState(ctx, ids, []string{"terminated"}, nil)
		}
		srv.Close()
		tsrv.Close()
		cpu, mem := svc.CgroupParents()
		svc.Close()
		os.Remove(cpu)
		os.Remove(mem)
	})
	return d
}

func testGuest(t *testing.T, cmdline string) *api.ImageSpec {
	return &api.ImageSpec{Kernel: vmmtest.Bin(t, "testguest.elf"), Cmdline: cmdline}
}

func wantCode(t *testing.T, what string, err error, code api.Code) {
	t.Helper()
	if err == nil || api.CodeOf(err) != code {
		t.Errorf("%s: got %v, want %s", what, err, code)
	}
}

func waitAll(t *testing.T, c *client.Client, ids []string, state string, timeout time.Duration) []api.Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ins, err := c.WaitState(ctx, ids, []string{state}, nil)
	if err != nil {
		var states []string
		for _, in := range ins {
			states = append(states, in.InstanceID+"="+in.State.Name)
		}
		t.Fatalf("waiting for %s: %v (%s)", state, err, strings.Join(states, " "))
	}
	return ins
}

// TestBadInputChangesNothing sends bad requests of every kind and checks
// each gets its EC2 error code and that nothing was created.
func TestBadInputChangesNothing(t *testing.T) {
	d := startDaemon(t)
	c := d.client
	ctx := context.Background()
	good := api.RunInstancesRequest{Image: testGuest(t, ""), InstanceType: "t3.nano"}
	bad := func(mod func(r *api.RunInstancesRequest)) api.RunInstancesRequest {
		r := good
		mod(&r)
		return r
	}
	cases := []struct {
		name string
		req  api.RunInstancesRequest
		code api.Code
	}{
		{"unknown type", bad(func(r *api.RunInstancesRequest) { r.InstanceType = "t9.huge" }), api.CodeInvalidParameterValue},
		{"negative count", bad(func(r *api.RunInstancesRequest) { r.Count = -1 }), api.CodeInvalidParameterValue},
		{"huge count", bad(func(r *api.RunInstancesRequest) { r.Count = 1000 }), api.CodeInvalidParameterValue},
		{"no image", bad(func(r *api.RunInstancesRequest) { r.Image = nil }), api.CodeMissingParameter},
		{"bad ami", bad(func(r *api.RunInstancesRequest) { r.Image, r.ImageID = nil, "ami-nope" }), api.CodeInvalidAMIIDMalformed},
		{"unknown ami", bad(func(r *api.RunInstancesRequest) { r.Image, r.ImageID = nil, "ami-0123456789abcdef0" }), api.CodeInvalidAMIIDNotFound},
		{"oversize root", bad(func(r *api.RunInstancesRequest) { r.RootVolumeGiB = 1 << 20 }), api.CodeInvalidParameterValue},
		{"bad credits", bad(func(r *api.RunInstancesRequest) { r.CreditMode = "infinite" }), api.CodeInvalidParameterValue},
		{"relative kernel", bad(func(r *api.RunInstancesRequest) { r.Image = &api.ImageSpec{Kernel: "bin/testguest.elf"} }), api.CodeInvalidParameterValue},
		{"bad shutdown", bad(func(r *api.RunInstancesRequest) { r.ShutdownBehavior = "explode" }), api.CodeInvalidParameterValue},
		{"unknown volume", bad(func(r *api.RunInstancesRequest) { r.Volumes = []string{"vol-0123456789abcdef0"} }), api.CodeInvalidVolumeNotFound},
		{"no capacity", bad(func(r *api.RunInstancesRequest) { r.InstanceType, r.Count = "m5.24xlarge", 2 }), api.CodeInsufficientInstanceCapacity},
		{"gpu type", bad(func(r *api.RunInstancesRequest) { r.InstanceType = "p3.2xlarge" }), api.CodeUnsupported},
	}
	for _, tc := range cases {
		_, err := c.RunInstances(ctx, tc.req)
		wantCode(t, tc.name, err, tc.code)
	}
	_, err := c.Instance(ctx, "i-123")
	wantCode(t, "bad id", err, api.CodeInvalidInstanceIDMalformed)
	_, err = c.Instance(ctx, "i-0123456789abcdef0")
	wantCode(t, "unknown id", err, api.CodeInvalidInstanceIDNotFound)
	_, err = c.StopInstance(ctx, "i-0123456789abcdef0", api.StopRequest{})
	wantCode(t, "stop unknown", err, api.CodeInvalidInstanceIDNotFound)
	_, err = c.DescribeInstances(ctx, client.Filter{States: []string{"flying"}})
	wantCode(t, "bad state filter", err, api.CodeInvalidParameterValue)
	_, err = c.CreateVolume(ctx, api.CreateVolumeRequest{SizeGiB: 1 << 30})
	wantCode(t, "oversize volume", err, api.CodeInvalidParameterValue)
	_, err = c.CreateVolume(ctx, api.CreateVolumeRequest{SizeGiB: -5})
	wantCode(t, "negative volume", err, api.CodeInvalidParameterValue)
	_, err = c.CreateVolume(ctx, api.CreateVolumeRequest{SizeGiB: 1, AvailabilityZone: "local-9z"})
	wantCode(t, "volume in an unknown zone", err, api.CodeInvalidParameterValue)
	err = c.DeleteVolume(ctx, "vol-xyz")
	wantCode(t, "bad volume id", err, api.CodeInvalidVolumeIDMalformed)

	// Malformed JSON, unknown fields, trailing garbage.
	for _, body := range []string{`{"instance_type": `, `{"instance_typo": "t3.nano"}`, `{"count": "two"}`, `{} {}`, ``} {
		err := rawPost(d.sock, "/v1/instances", body, "")
		wantCode(t, "body "+body, err, api.CodeInvalidRequest)
	}
	// TCP without, and with a wrong, token.
	tcp := client.NewTCP(d.tcp, "wrong")
	_, err = tcp.DescribeInstances(ctx, client.Filter{})
	wantCode(t, "wrong token", err, api.CodeAuthFailure)
	_, err = tcp.RunInstances(ctx, good)
	wantCode(t, "wrong token run", err, api.CodeAuthFailure)
	_, err = client.NewTCP(d.tcp, "").DescribeInstances(ctx, client.Filter{})
	wantCode(t, "no token", err, api.CodeAuthFailure)
	if _, err := client.NewTCP(d.tcp, "secret").DescribeInstances(ctx, client.Filter{}); err != nil {
		t.Errorf("right token: %v", err)
	}

	ins, _ := c.DescribeInstances(ctx, client.Filter{})
	vols, _ := c.Volumes(ctx)
	if len(ins) != 0 || len(vols) != 0 {
		t.Errorf("bad requests left %d instances and %d volumes", len(ins), len(vols))
	}
	if u := d.svc.Capacity(); u.Instances != 0 {
		t.Errorf("bad requests hold capacity: %+v", u)
	}
}

func rawPost(sock, path, body, token string) error {
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return net.Dial("unix", sock)
	}}}
	resp, err := c.Post("http://gureum"+path, "application/json", bytes.NewReader([]byte(body)))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var e api.Error
	json.NewDecoder(resp.Body).Decode(&e)
	if resp.StatusCode != e.Code.HTTPStatus() {
		return fmt.Errorf("status %d for code %s", resp.StatusCode, e.Code)
	}
	return &e
}

// TestStateMachineThroughAPI walks an instance through every state over
// the REST API and checks each illegal request's code.
func TestStateMachineThroughAPI(t *testing.T) {
	d := startDaemon(t)
	c := d.client
	ctx := context.Background()
	res, err := c.RunInstances(ctx, api.RunInstancesRequest{Image: testGuest(t, ""), InstanceType: "t3.nano", Name: "sm",
		Tags: []api.Tag{{Key: "env", Value: "test"}}})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Instances[0].InstanceID
	ins := waitAll(t, c, []string{id}, "running", 60*time.Second)
	if ins[0].Credits == nil || ins[0].Credits.Mode != "unlimited" {
		t.Errorf("credits: %+v", ins[0].Credits)
	}
	if got, _ := c.DescribeInstances(ctx, client.Filter{Tags: []string{"env=test"}, States: []string{"running"}}); len(got) != 1 {
		t.Errorf("filter by tag and state: %d", len(got))
	}
	if got, _ := c.DescribeInstances(ctx, client.Filter{Tags: []string{"env=prod"}}); len(got) != 0 {
		t.Errorf("filter by other tag: %d", len(got))
	}
	if ch, err := c.StartInstance(ctx, id); err != nil || ch.CurrentState.Name != "running" {
		t.Errorf("start running: %+v %v", ch, err)
	}
	if _, err := c.RebootInstance(ctx, id); err != nil {
		t.Fatal(err)
	}
	ch, err := c.StopInstance(ctx, id, api.StopRequest{DeadlineSeconds: 5})
	if err != nil || ch.PreviousState.Name != "running" || ch.CurrentState.Name != "stopping" {
		t.Fatalf("stop: %+v %v", ch, err)
	}
	_, err = c.RebootInstance(ctx, id)
	wantCode(t, "reboot stopping", err, api.CodeIncorrectInstanceState)
	_, err = c.StartInstance(ctx, id)
	if err != nil && api.CodeOf(err) != api.CodeIncorrectInstanceState {
		t.Errorf("start stopping: %v", err)
	}
	waitAll(t, c, []string{id}, "stopped", 30*time.Second)
	_, err = c.RebootInstance(ctx, id)
	wantCode(t, "reboot stopped", err, api.CodeIncorrectInstanceState)
	if ch, err := c.StopInstance(ctx, id, api.StopRequest{}); err != nil || ch.CurrentState.Name != "stopped" {
		t.Errorf("stop stopped: %+v %v", ch, err)
	}
	if _, err := c.StartInstance(ctx, id); err != nil {
		t.Fatal(err)
	}
	waitAll(t, c, []string{id}, "running", 60*time.Second)
	if _, err := c.StopInstance(ctx, id, api.StopRequest{Force: true}); err != nil {
		t.Fatal(err)
	}
	waitAll(t, c, []string{id}, "stopped", 30*time.Second)
	if ch, err := c.TerminateInstance(ctx, id, api.StopRequest{}); err != nil || ch.CurrentState.Name != "shutting-down" {
		t.Fatalf("terminate: %+v %v", ch, err)
	}
	ins = waitAll(t, c, []string{id}, "terminated", 30*time.Second)
	if ins[0].StateReason == nil || ins[0].StateReason.Code != "Client.UserInitiatedShutdown" || !strings.HasPrefix(ins[0].StateTransitionReason, "User initiated (") {
		t.Errorf("terminated reason: %+v %q", ins[0].StateReason, ins[0].StateTransitionReason)
	}
	_, err = c.StartInstance(ctx, id)
	wantCode(t, "start terminated", err, api.CodeIncorrectInstanceState)
	_, err = c.StopInstance(ctx, id, api.StopRequest{})
	wantCode(t, "stop terminated", err, api.CodeIncorrectInstanceState)
	_, err = c.RebootInstance(ctx, id)
	wantCode(t, "reboot terminated", err, api.CodeIncorrectInstanceState)
	if _, err := c.TerminateInstance(ctx, id, api.StopRequest{}); err != nil {
		t.Errorf("terminate terminated: %v", err)
	}
	if vols, _ := c.Volumes(ctx); len(vols) != 0 {
		t.Errorf("root volume left: %+v", vols)
	}

	// Instance-store backed: cannot stop.
	res, err = c.RunInstances(ctx, api.RunInstancesRequest{Image: testGuest(t, ""), InstanceType: "i3.large", RootDeviceType: "instance-store"})
	if err != nil {
		t.Fatal(err)
	}
	id = res.Instances[0].InstanceID
	_, err = c.StopInstance(ctx, id, api.StopRequest{})
	wantCode(t, "stop pending", err, api.CodeIncorrectInstanceState)
	waitAll(t, c, []string{id}, "running", 60*time.Second)
	_, err = c.StopInstance(ctx, id, api.StopRequest{})
	wantCode(t, "stop instance-store", err, api.CodeIncorrectInstanceState)
	if _, err := c.TerminateInstance(ctx, id, api.StopRequest{}); err != nil {
		t.Fatal(err)
	}
	waitAll(t, c, []string{id}, "terminated", 30*time.Second)
}

// TestGuestPoweroff: a guest that powers off is stopped (behaviour stop)
// or terminated (behaviour terminate), with the instance-initiated reason;
// the console output stays readable.
func TestGuestPoweroff(t *testing.T) {
	d := startDaemon(t)
	c := d.client
	ctx := context.Background()
	var ids []string
	for _, b := range []string{"stop", "terminate"} {
		res, err := c.RunInstances(ctx, api.RunInstancesRequest{Image: testGuest(t, "selftest blk.mib=1"), InstanceType: "t3.nano", ShutdownBehavior: b})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.Instances[0].InstanceID)
	}
	stopped := waitAll(t, c, ids[:1], "stopped", 60*time.Second)[0]
	terminated := waitAll(t, c, ids[1:], "terminated", 60*time.Second)[0]
	for _, in := range []api.Instance{stopped, terminated} {
		if in.StateReason == nil || in.StateReason.Code != "Client.InstanceInitiatedShutdown" {
			t.Errorf("%s: reason %+v", in.InstanceID, in.StateReason)
		}
	}
	out, err := c.ConsoleOutput(ctx, ids[0])
	if err != nil || !strings.Contains(out.Output, "selftest done:") || !strings.Contains(out.Output, "selftest blk: ok") {
		t.Errorf("console after poweroff: %v\n%s", err, out.Output)
	}
	// The stopped one starts again and runs its self test again.
	if _, err := c.StartInstance(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	waitAll(t, c, ids[:1], "stopped", 60*time.Second)
}

// TestTwentyInstancesInOneCall launches 20 idle guests at once.
func TestTwentyInstancesInOneCall(t *testing.T) {
	d := startDaemon(t)
	c := d.client
	ctx := context.Background()
	start := time.Now()
	res, err := c.RunInstances(ctx, api.RunInstancesRequest{Image: testGuest(t, ""), InstanceType: "t3.nano", Count: 20})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Instances) != 20 {
		t.Fatalf("%d instances", len(res.Instances))
	}
	var ids []string
	for _, in := range res.Instances {
		ids = append(ids, in.InstanceID)
	}
	waitAll(t, c, ids, "running", 120*time.Second)
	t.Logf("20 instances running %v after the call", time.Since(start).Round(time.Millisecond))
	for _, id := range ids {
		if _, err := c.TerminateInstance(ctx, id, api.StopRequest{Force: true}); err != nil {
			t.Fatal(err)
		}
	}
	waitAll(t, c, ids, "terminated", 60*time.Second)
	if vols, _ := c.Volumes(ctx); len(vols) != 0 {
		t.Errorf("%d volumes left", len(vols))
	}
}

// TestConsoleAttach types nothing but reads what the guest prints live.
func TestConsoleAttach(t *testing.T) {
	d := startDaemon(t)
	c := d.client
	ctx := context.Background()
	res, err := c.RunInstances(ctx, api.RunInstancesRequest{Image: testGuest(t, ""), InstanceType: "t3.nano"})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Instances[0].InstanceID
	waitAll(t, c, []string{id}, "running", 60*time.Second)
	conn, err := c.AttachConsole(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Ctrl-Alt-Del is the only input the idle guest reacts to; rebooting
	// through the API makes it print "ready" again on the attached console.
	if _, err := c.RebootInstance(ctx, id); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	var got []byte
	buf := make([]byte, 4096)
	for !bytes.Contains(got, []byte("gureum-testguest: ready")) {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("console read: %v (got %q)", err, got)
		}
		got = append(got, buf[:n]...)
	}
}
