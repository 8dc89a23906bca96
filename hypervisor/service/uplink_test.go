package service

import (
	"fmt"
	"os"
	"testing"
	"time"

	"gureum/api"
	"gureum/hypervisor/instancetype"
	"gureum/network/namespace"
	"gureum/network/vpc"
	"gureum/vmm/vmmtest"
)

// openNetworkOnly opens a service with networking on (and no default
// VPC) on dir; no instance is started, so it needs root but not KVM.
func openNetworkOnly(t *testing.T, dir string) *Service {
	t.Helper()
	s, err := Open(Config{
		DataDir: dir, VMM: "/bin/false",
		Host:              instancetype.Host{VCPUs: 2, MemoryGiB: 4, CPUOvercommit: 40, MemoryOvercommit: 100},
		MaxGuestMemoryMiB: 64, MaxGuestVCPUs: 1, StopTimeout: 5 * time.Second,
		ReconcileEvery: time.Hour, CreditEvery: time.Hour,
		CgroupName: fmt.Sprintf("gureum-uplink-test-%d", os.Getpid()), CgroupNested: true,
		Network: NetworkConfig{Enabled: true, DefaultVPCCIDR: "none"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestUplinkSurvivesRestart: a VPC made with an uplink gets it back when
// a clean shutdown removed the VPC from the kernel and the daemon starts
// again. No packet goes through the uplink.
func TestUplinkSurvivesRestart(t *testing.T) {
	vmmtest.RequireRoot(t)
	old, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile("/proc/sys/net/ipv4/ip_forward", old, 0) })
	vmmtest.CleanupCgroups(t, fmt.Sprintf("gureum-uplink-test-%d", os.Getpid()))
	dir := t.TempDir()

	s := openNetworkOnly(t, dir)
	v, err := s.CreateVpc(Admin, api.CreateVpcRequest{CidrBlock: "10.77.0.0/16", Uplink: true})
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if namespace.Exists(vpc.NamespaceName(v.VpcID)) {
			if h, err := vpc.Open(v.VpcID); err == nil {
				h.Delete()
			}
		}
	})
	if !v.Uplink || !vpc.HasUplink(v.VpcID) {
		t.Fatalf("created %+v; host end there: %v", v, vpc.HasUplink(v.VpcID))
	}

	// A clean shutdown of the idle daemon removes the VPC from the kernel,
	// its uplink with it.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if namespace.Exists(vpc.NamespaceName(v.VpcID)) || vpc.HasUplink(v.VpcID) {
		t.Fatalf("after a clean shutdown: namespace %v, uplink %v",
			namespace.Exists(vpc.NamespaceName(v.VpcID)), vpc.HasUplink(v.VpcID))
	}

	s = openNetworkOnly(t, dir)
	got, err := s.Vpc(Admin, v.VpcID)
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	if !got.Uplink || !namespace.Exists(vpc.NamespaceName(v.VpcID)) {
		t.Errorf("after the restart: %+v, namespace %v", got, namespace.Exists(vpc.NamespaceName(v.VpcID)))
	}

	// Deleting the VPC takes the uplink with it.
	if err := s.DeleteVpc(Admin, v.VpcID); err != nil {
		t.Error(err)
	}
	if vpc.HasUplink(v.VpcID) || namespace.Exists(vpc.NamespaceName(v.VpcID)) {
		t.Errorf("after DeleteVpc: uplink %v, namespace %v", vpc.HasUplink(v.VpcID), namespace.Exists(vpc.NamespaceName(v.VpcID)))
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
}
