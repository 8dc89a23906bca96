package vpc

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"gureum/network"
	"gureum/network/namespace"
	"gureum/vmm/vmmtest"
)

var testVPCs atomic.Int32

// testOwner owns the VPCs of this test process.
var testOwner = fmt.Sprintf("test-%d", os.Getpid())

// newTestVPC creates a VPC with a test-unique ID and removes its namespace
// at cleanup, taps and all, whatever the test did.
func newTestVPC(t *testing.T) *VPC {
	t.Helper()
	vmmtest.RequireRoot(t)
	id := fmt.Sprintf("vpc-t%d-%d", os.Getpid(), testVPCs.Add(1))
	v, err := Create(id, testOwner)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if namespace.Exists(v.Namespace()) {
			namespace.Delete(v.Namespace())
		}
	})
	return v
}

func TestVPCLifecycle(t *testing.T) {
	v := newTestVPC(t)
	if _, err := Create(v.ID(), testOwner); network.CodeOf(err) != network.CodeAlreadyExists {
		t.Fatalf("creating it twice: %v", err)
	}
	if err := v.AddGateway(netip.MustParsePrefix("10.7.1.1/24")); err != nil {
		t.Fatal(err)
	}
	if err := v.AddGateway(netip.MustParsePrefix("10.7.1.1/24")); err != nil {
		t.Fatalf("adding a gateway again: %v", err)
	}
	tapName := TapName("eni-0001")
	if err := v.AddTap(tapName); err != nil {
		t.Fatal(err)
	}
	info, err := v.Describe()
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Gateways) != 1 || info.Gateways[0].String() != "10.7.1.1/24" {
		t.Errorf("gateways %v, want [10.7.1.1/24]", info.Gateways)
	}
	if len(info.Ports) != 1 || info.Ports[0] != tapName {
		t.Errorf("ports %v, want [%s]", info.Ports, tapName)
	}

	// A process started in the VPC sees the bridge and the tap, and the
	// root namespace does not.
	cmd := exec.Command("cat", "/proc/net/dev")
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := v.Start(cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), BridgeName) || !strings.Contains(out.String(), tapName) {
		t.Errorf("a process started in the VPC sees:\n%s", out.String())
	}
	if root, _ := os.ReadFile("/proc/net/dev"); strings.Contains(string(root), tapName) {
		t.Errorf("tap %s is visible in the root namespace", tapName)
	}

	f, err := v.OpenTap(tapName)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()

	if err := v.Delete(); network.CodeOf(err) != network.CodeDependencyViolation {
		t.Fatalf("delete with a tap: %v, want DependencyViolation", err)
	}
	if !namespace.Exists(v.Namespace()) {
		t.Fatal("refused delete removed the namespace")
	}
	if err := v.RemoveTap(tapName); err != nil {
		t.Fatal(err)
	}
	if err := v.RemoveTap(tapName); err != nil {
		t.Fatalf("removing a missing tap: %v", err)
	}
	if err := v.Delete(); err != nil {
		t.Fatal(err)
	}
	if namespace.Exists(v.Namespace()) {
		t.Fatal("namespace left after delete")
	}
	if _, err := Open(v.ID()); network.CodeOf(err) != network.CodeVPCNotFound {
		t.Fatalf("open after delete: %v", err)
	}
}

func TestRemoveOrphans(t *testing.T) {
	kept, orphan := newTestVPC(t), newTestVPC(t)
	if err := orphan.AddTap(TapName("eni-orphan")); err != nil {
		t.Fatal(err)
	}
	// A VPC of another owner that nobody claims either: left alone.
	other, err := Create(fmt.Sprintf("vpc-t%d-other", os.Getpid()), testOwner+"-other")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { namespace.Delete(other.Namespace()) })
	if o, err := orphan.Owner(); err != nil || o != testOwner {
		t.Fatalf("owner %q %v, want %q", o, err, testOwner)
	}
	removed, err := RemoveOrphans(testOwner, func(id string) bool { return id == kept.ID() })
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != orphan.ID() {
		t.Fatalf("removed %v, want [%s]", removed, orphan.ID())
	}
	if namespace.Exists(orphan.Namespace()) || !namespace.Exists(kept.Namespace()) || !namespace.Exists(other.Namespace()) {
		t.Fatal("wrong namespaces left")
	}
}

func TestBadIDs(t *testing.T) {
	for _, id := range []string{"", "vpc-", "net-1", "vpc-a/b", "vpc-" + strings.Repeat("x", 40)} {
		if _, err := Create(id, testOwner); network.CodeOf(err) != network.CodeInvalidParameterValue {
			t.Errorf("Create(%q): %v", id, err)
		}
	}
	if n := TapName("eni-0123456789abcdef0"); len(n) > 15 || n != TapName("eni-0123456789abcdef0") {
		t.Errorf("tap name %q", n)
	}
}
