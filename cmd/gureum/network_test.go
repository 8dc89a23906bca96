package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"gureum/api"
	"gureum/network/namespace"
	"gureum/network/vpc"
	"gureum/vmm/vmmtest"
)

// inNamespace runs a command in a named namespace with a time limit.
func inNamespace(ns string, seconds int, name string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "timeout", fmt.Sprint(seconds), name}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestE2EDaemonNetworking drives the daemon's networking through its API
// with real test guests: the default VPC, security groups by source
// group, two guests that ping and fetch each other, a rule change that
// applies at once, another VPC that cannot be reached, the metadata
// service answering from the instance records, a daemon killed and
// restarted keeping every address and MAC, refused bad requests that
// change nothing, and no namespace left at the end.
//
// The serving guests probe each other themselves (peer= on their
// command line). Other "instances" that connect are client namespaces on
// the VPC bridge using the address of an idle instance of the group they
// stand for (the firewall matches source groups by their members'
// addresses), so curl and ping can check the answers in detail.
func TestE2EDaemonNetworking(t *testing.T) {
	vmmtest.RequireKVM(t)
	vmmtest.RequireRoot(t)
	for _, tool := range []string{"ip", "ping", "curl", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (apt: iproute2, iputils-ping, curl, nftables)", tool)
		}
	}
	dir := t.TempDir()
	d := &daemonProc{t: t, dir: dir, sock: dir + "/gureum.sock", cg: fmt.Sprintf("gureum-net-test-%d", os.Getpid())}
	vmmtest.CleanupCgroups(t, d.cg)
	var vpcIDs []string
	var clientNS []string
	t.Cleanup(func() {
		if d.cmd != nil && d.cmd.ProcessState == nil {
			d.kill9()
		}
		for _, ns := range clientNS {
			namespace.Delete(ns)
		}
		for _, id := range vpcIDs {
			if namespace.Exists(vpc.NamespaceName(id)) {
				t.Errorf("namespace of %s left", id)
				namespace.Delete(vpc.NamespaceName(id))
			}
		}
	})
	d.start()
	ctx := context.Background()
	c := d.c

	// The default VPC with a subnet per zone.
	vpcs, err := c.Vpcs(ctx)
	if err != nil || len(vpcs) != 1 || !vpcs[0].IsDefault || vpcs[0].CidrBlock != "172.31.0.0/16" {
		t.Fatalf("default VPC: %v %+v", err, vpcs)
	}
	def := vpcs[0]
	vpcIDs = append(vpcIDs, def.VpcID)
	subs, err := c.Subnets(ctx, def.VpcID)
	if err != nil || len(subs) != 2 || subs[0].AvailabilityZone == subs[1].AvailabilityZone {
		t.Fatalf("default subnets: %v %+v", err, subs)
	}

	// A second daemon on the host (another data directory) leaves this
	// one's VPCs alone when it starts and when it stops.
	second := &daemonProc{t: t, dir: t.TempDir(), cg: d.cg + "-second"}
	second.sock = second.dir + "/gureum.sock"
	vmmtest.CleanupCgroups(t, second.cg)
	second.start()
	if v, err := second.c.Vpcs(ctx); err != nil || len(v) != 1 || v[0].VpcID == def.VpcID {
		t.Errorf("second daemon's VPCs: %v %+v", err, v)
	} else {
		vpcIDs = append(vpcIDs, v[0].VpcID)
	}
	second.cmd.Process.Signal(syscall.SIGTERM)
	second.cmd.Wait()
	if !namespace.Exists(vpc.NamespaceName(def.VpcID)) {
		t.Fatal("a second daemon removed the first one's default VPC")
	}

	// Bad requests get their codes and change nothing.
	wantCode := func(err error, code api.Code) {
		t.Helper()
		if api.CodeOf(err) != code {
			t.Errorf("got %v, want %s", err, code)
		}
	}
	_, err = c.CreateVpc(ctx, api.CreateVpcRequest{CidrBlock: "10.0.0.1/16"})
	wantCode(err, api.CodeInvalidParameterValue)
	_, err = c.CreateVpc(ctx, api.CreateVpcRequest{CidrBlock: "banana"})
	wantCode(err, api.CodeInvalidParameterValue)
	_, err = c.CreateSubnet(ctx, api.CreateSubnetRequest{VpcID: def.VpcID, CidrBlock: "172.31.8.0/24"})
	wantCode(err, api.CodeInvalidSubnetConflict)
	_, err = c.CreateSubnet(ctx, api.CreateSubnetRequest{VpcID: def.VpcID, CidrBlock: "10.1.0.0/24"})
	wantCode(err, api.CodeInvalidSubnetRange)
	_, err = c.CreateSubnet(ctx, api.CreateSubnetRequest{VpcID: def.VpcID, CidrBlock: "172.31.200.0/24", AvailabilityZone: "mars-1a"})
	wantCode(err, api.CodeInvalidParameterValue)
	if v, _ := c.Vpcs(ctx); len(v) != 1 {
		t.Errorf("a refused request made a VPC: %+v", v)
	}
	if s, _ := c.Subnets(ctx, ""); len(s) != 2 {
		t.Errorf("a refused request made a subnet: %+v", s)
	}

	mkGroup := func(name string) api.SecurityGroup {
		t.Helper()
		g, err := c.CreateSecurityGroup(ctx, api.CreateSecurityGroupRequest{GroupName: name})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	web, clients, others := mkGroup("web"), mkGroup("clients"), mkGroup("others")
	_, err = c.AuthorizeSecurityGroup(ctx, web.GroupID, api.SecurityGroupRule{Direction: "ingress", Protocol: "tcp", FromPort: 80, ToPort: 70000, CidrIP: "0.0.0.0/0"})
	wantCode(err, api.CodeInvalidParameterValue)
	// HTTP from the clients and from web's own members (the guests that
	// probe each other), ping from the VPC.
	_, err = c.AuthorizeSecurityGroup(ctx, web.GroupID,
		api.SecurityGroupRule{Direction: "ingress", Protocol: "tcp", FromPort: 80, ToPort: 80, GroupID: clients.GroupID},
		api.SecurityGroupRule{Direction: "ingress", Protocol: "tcp", FromPort: 80, ToPort: 80, GroupID: web.GroupID},
		api.SecurityGroupRule{Direction: "ingress", Protocol: "icmp", FromPort: -1, ToPort: -1, CidrIP: "172.31.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	if g, _ := c.SecurityGroup(ctx, web.GroupID); len(g.Rules) != 4 {
		t.Errorf("web rules after a refused and an accepted change: %+v", g.Rules)
	}

	// A second VPC with one serving guest, reachable only inside it.
	other, err := c.CreateVpc(ctx, api.CreateVpcRequest{CidrBlock: "10.9.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	vpcIDs = append(vpcIDs, other.VpcID)
	otherSub, err := c.CreateSubnet(ctx, api.CreateSubnetRequest{VpcID: other.VpcID, CidrBlock: "10.9.0.0/24", AvailabilityZone: "local-1b"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AuthorizeSecurityGroup(ctx, other.DefaultSecurityGroupID, api.SecurityGroupRule{Direction: "ingress", Protocol: "icmp", FromPort: -1, ToPort: -1, CidrIP: "10.9.0.0/16"}); err != nil {
		t.Fatal(err)
	}

	kernel := vmmtest.Bin(t, "testguest.elf")
	run := func(cmdline string, req api.RunInstancesRequest) api.Instance {
		t.Helper()
		req.Image = &api.ImageSpec{Kernel: kernel, Cmdline: cmdline}
		req.InstanceType = "t3.nano"
		res, err := c.RunInstances(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return res.Instances[0]
	}
	// g1 and g2 probe each other (g2's address is chosen, g1's is known
	// once it is launched); far, in the other VPC, probes g1 and must fail.
	g1 := run("serve peer=172.31.0.20 peer.wait=60", api.RunInstancesRequest{SecurityGroupIDs: []string{web.GroupID}})
	g2 := run("serve peer="+g1.PrivateIP+" peer.wait=60", api.RunInstancesRequest{SecurityGroupIDs: []string{web.GroupID}, PrivateIP: "172.31.0.20"})
	member := run("", api.RunInstancesRequest{SecurityGroupIDs: []string{clients.GroupID}, MetadataHTTPTokens: "required", UserData: "hello from the test"})
	outsider := run("", api.RunInstancesRequest{SecurityGroupIDs: []string{others.GroupID}})
	far := run("serve peer="+g1.PrivateIP+" peer.wait=3", api.RunInstancesRequest{SubnetID: otherSub.SubnetID})
	ids := []string{g1.InstanceID, g2.InstanceID, member.InstanceID, outsider.InstanceID, far.InstanceID}
	if g2.PrivateIP != "172.31.0.20" || g1.AvailabilityZone != "local-1a" || far.AvailabilityZone != "local-1b" || g1.MACAddress == "" {
		t.Errorf("placement: %+v %+v %+v", g1, g2, far)
	}
	if _, err := c.RunInstances(ctx, api.RunInstancesRequest{Image: &api.ImageSpec{Kernel: kernel}, InstanceType: "t3.nano", PrivateIP: "172.31.0.20"}); api.CodeOf(err) != api.CodeInvalidIPAddressInUse {
		t.Errorf("a taken address: %v", err)
	}
	// An existing volume attaches at launch only in its own zone.
	volB, err := c.CreateVolume(ctx, api.CreateVolumeRequest{SizeGiB: 1, AvailabilityZone: "local-1b"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.RunInstances(ctx, api.RunInstancesRequest{Image: &api.ImageSpec{Kernel: kernel}, InstanceType: "t3.nano", Volumes: []string{volB.VolumeID}})
	wantCode(err, api.CodeInvalidVolumeZoneMismatch)
	if err := c.DeleteVolume(ctx, volB.VolumeID); err != nil {
		t.Errorf("the volume of a refused launch: %v", err)
	}

	before := map[string]api.Instance{}
	for _, in := range d.wait(ids, "running") {
		before[in.InstanceID] = in
	}

	// Client namespaces on the default VPC's bridge.
	client := func(name string, v api.Vpc, addr string, gw string, bits int) string {
		t.Helper()
		ns := fmt.Sprintf("gureum-nt-%d-%s", os.Getpid(), name)
		if err := namespace.Create(ns); err != nil {
			t.Fatal(err)
		}
		clientNS = append(clientNS, ns)
		vv, err := vpc.Open(v.VpcID)
		if err != nil {
			t.Fatal(err)
		}
		mac, _ := net.ParseMAC(fmt.Sprintf("02:00:00:00:%02x:01", len(clientNS)))
		err = vv.ConnectNamespace(vpc.Host{Namespace: ns, Name: "eth0", Port: fmt.Sprintf("vnt%d", len(clientNS)), MAC: mac,
			Address: netip.PrefixFrom(netip.MustParseAddr(addr), bits), Gateway: netip.MustParseAddr(gw)})
		if err != nil {
			t.Fatal(err)
		}
		return ns
	}
	good := client("good", def, member.PrivateIP, "172.31.0.1", 20)
	bad := client("bad", def, outsider.PrivateIP, "172.31.0.1", 20)
	near := client("near", other, "10.9.0.50", "10.9.0.1", 24)

	ping := func(ns, addr string) error {
		out, err := inNamespace(ns, 15, "ping", "-c", "1", "-W", "2", addr)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	fetch := func(ns, url string, maxTime int, headers ...string) (string, error) {
		args := []string{"-sS", "-f", "--max-time", fmt.Sprint(maxTime)}
		for _, h := range headers {
			args = append(args, "-H", h)
		}
		return inNamespace(ns, maxTime+5, "curl", append(args, url)...)
	}
	// Wait for the guests to serve (they boot emulated).
	deadline := time.Now().Add(90 * time.Second)
	for _, in := range []api.Instance{g1, g2} {
		for {
			body, err := fetch(good, "http://"+in.PrivateIP+"/", 2)
			if err == nil && strings.Contains(body, "gureum-testguest "+in.PrivateIP) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("HTTP %s from the clients group: %v %q\n%s", in.PrivateIP, err, body, d.log())
			}
			time.Sleep(500 * time.Millisecond)
		}
		if err := ping(good, in.PrivateIP); err != nil {
			t.Errorf("ping %s: %v", in.PrivateIP, err)
		}
		if err := ping(bad, in.PrivateIP); err != nil {
			t.Errorf("ping %s from the others group (ICMP is open to the VPC): %v", in.PrivateIP, err)
		}
		if body, err := fetch(bad, "http://"+in.PrivateIP+"/", 2); err == nil {
			t.Errorf("HTTP %s from the others group got through: %q", in.PrivateIP, body)
		}
	}
	// The guests' own probes: a line each on their consoles.
	peerLine := func(in api.Instance, peer string) string {
		t.Helper()
		rx := regexp.MustCompile(`(peer ` + regexp.QuoteMeta(peer) + `: [^\r\n]*)\r?\n`)
		for {
			out, err := c.ConsoleOutput(ctx, in.InstanceID)
			if m := rx.FindStringSubmatch(out.Output); err == nil && m != nil {
				return m[1]
			}
			if time.Now().After(deadline) {
				t.Fatalf("no probe report of %s on %s's console: %v\n%s", peer, in.InstanceID, err, out.Output)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for _, p := range [][2]api.Instance{{g1, g2}, {g2, g1}} {
		line := peerLine(p[0], p[1].PrivateIP)
		if !strings.Contains(line, ": ok arp=1 ping=3/3 http=200 bytes=") {
			t.Errorf("%s probing %s: %q", p[0].PrivateIP, p[1].PrivateIP, line)
		}
		t.Logf("%s: %s", p[0].PrivateIP, line)
	}
	// far's gateway answers ARP, but its VPC has no route to g1's.
	if line := peerLine(far, g1.PrivateIP); !strings.Contains(line, ": fail arp=1 ping=0/3 http=none ") {
		t.Errorf("%s in another VPC probing %s: %q", far.PrivateIP, g1.PrivateIP, line)
	} else {
		t.Logf("%s: %s", far.PrivateIP, line)
	}
	for time.Now().Before(deadline) && ping(near, far.PrivateIP) != nil {
		time.Sleep(500 * time.Millisecond)
	}
	if err := ping(near, far.PrivateIP); err != nil {
		t.Errorf("ping inside the other VPC: %v", err)
	}
	if err := ping(good, far.PrivateIP); err == nil {
		t.Errorf("the default VPC reached %s in another VPC", far.PrivateIP)
	}

	// A rule change through the API applies at once.
	changed := time.Now()
	if _, err := c.AuthorizeSecurityGroup(ctx, web.GroupID, api.SecurityGroupRule{Direction: "ingress", Protocol: "tcp", FromPort: 80, ToPort: 80, GroupID: others.GroupID}); err != nil {
		t.Fatal(err)
	}
	if body, err := fetch(bad, "http://"+g1.PrivateIP+"/", 1); err != nil || !strings.Contains(body, "gureum-testguest") {
		t.Errorf("HTTP from the others group after the rule change: %v %q", err, body)
	}
	t.Logf("first fetch after the rule change: %v", time.Since(changed))

	// Metadata: the client stands on the member's address, so it is the
	// member to the service, which requires tokens for it.
	md := "http://169.254.169.254/latest/"
	if body, err := fetch(good, md+"meta-data/instance-id", 3); err == nil {
		t.Errorf("IMDSv1 answered an instance that requires tokens: %q", body)
	}
	tok, err := inNamespace(good, 8, "curl", "-sS", "-f", "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60", md+"api/token")
	if err != nil {
		t.Fatalf("IMDSv2 token: %v %s", err, tok)
	}
	for path, want := range map[string]string{"meta-data/instance-id": member.InstanceID, "meta-data/local-ipv4": member.PrivateIP,
		"meta-data/placement/availability-zone": "local-1a", "meta-data/instance-type": "t3.nano", "user-data": "hello from the test"} {
		if body, err := fetch(good, md+path, 3, "X-aws-ec2-metadata-token: "+tok); err != nil || body != want {
			t.Errorf("metadata %s: %v %q, want %q", path, err, body, want)
		}
	}

	// In use: the VPC, its subnet and a group refuse deletion.
	wantCode(c.DeleteVpc(ctx, other.VpcID), api.CodeDependencyViolation)
	wantCode(c.DeleteSubnet(ctx, otherSub.SubnetID), api.CodeDependencyViolation)
	wantCode(c.DeleteSecurityGroup(ctx, web.GroupID), api.CodeDependencyViolation)
	wantCode(c.DeleteSecurityGroup(ctx, def.DefaultSecurityGroupID), api.CodeCannotDelete)

	// kill -9 and a new daemon: same addresses and MACs, rules back.
	d.kill9()
	d.start()
	for _, in := range d.wait(ids, "running") {
		b := before[in.InstanceID]
		if in.PrivateIP != b.PrivateIP || in.MACAddress != b.MACAddress || in.SubnetID != b.SubnetID {
			t.Errorf("%s after restart: %s %s, before %s %s", in.InstanceID, in.PrivateIP, in.MACAddress, b.PrivateIP, b.MACAddress)
		}
	}
	if body, err := fetch(good, "http://"+g2.PrivateIP+"/", 5); err != nil || !strings.Contains(body, "gureum-testguest") {
		t.Errorf("HTTP after the daemon restart: %v %q", err, body)
	}
	if body, err := fetch(bad, "http://"+g2.PrivateIP+"/", 5); err != nil {
		t.Errorf("the rule change did not survive the restart: %v %q", err, body)
	}
	if out, err := inNamespace(vpc.NamespaceName(def.VpcID), 5, "nft", "list", "ruleset"); err != nil || !strings.Contains(out, "table inet gureum") {
		t.Errorf("nft list ruleset after restart: %v\n%s", err, out)
	}

	// Clean up through the API; a clean shutdown then removes the idle
	// default VPC's namespace too.
	for _, id := range ids {
		if _, err := c.TerminateInstance(ctx, id, api.StopRequest{Force: true}); err != nil {
			t.Fatal(err)
		}
	}
	for _, in := range d.wait(ids, "terminated") {
		if in.PrivateIP != "" || in.MACAddress != "" {
			t.Errorf("terminated %s still shows an interface: %s %s", in.InstanceID, in.PrivateIP, in.MACAddress)
		}
	}

	// A new instance may take a terminated one's address; the records of
	// the terminated ones must not claim it back at the next start.
	again := run("", api.RunInstancesRequest{PrivateIP: g2.PrivateIP})
	d.wait([]string{again.InstanceID}, "running")
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
	d.start()
	if in := d.wait([]string{again.InstanceID}, "running"); in[0].PrivateIP != g2.PrivateIP {
		t.Errorf("after a clean restart: %+v", in[0])
	}
	if _, err := c.TerminateInstance(ctx, again.InstanceID, api.StopRequest{Force: true}); err != nil {
		t.Fatal(err)
	}
	d.wait([]string{again.InstanceID}, "terminated")

	for _, g := range []string{web.GroupID, clients.GroupID, others.GroupID} {
		if err := c.DeleteSecurityGroup(ctx, g); err != nil {
			t.Error(err)
		}
	}
	if err := c.DeleteSubnet(ctx, otherSub.SubnetID); err != nil {
		t.Error(err)
	}
	if err := c.DeleteVpc(ctx, other.VpcID); err != nil {
		t.Error(err)
	}
	if namespace.Exists(vpc.NamespaceName(other.VpcID)) {
		t.Error("deleted VPC's namespace is still there")
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
}
