package ipam

import (
	"net/netip"
	"path/filepath"
	"testing"

	"gureum/network"
)

func newPlan(t *testing.T, store Store) *IPAM {
	t.Helper()
	p, err := New(store)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSubnetValidation(t *testing.T) {
	p := newPlan(t, &MemoryStore{})
	if err := p.AddVPC(VPC{ID: "vpc-1", CIDR: netip.MustParsePrefix("10.1.0.0/16")}); err != nil {
		t.Fatal(err)
	}
	if err := p.AddSubnet(Subnet{ID: "subnet-a", VPCID: "vpc-1", CIDR: netip.MustParsePrefix("10.1.1.0/24"), Zone: "local-1a"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		s    Subnet
		code string
	}{
		{"outside the VPC", Subnet{ID: "s1", VPCID: "vpc-1", CIDR: netip.MustParsePrefix("10.2.0.0/24"), Zone: "z"}, network.CodeInvalidSubnetRange},
		{"larger than the VPC", Subnet{ID: "s1", VPCID: "vpc-1", CIDR: netip.MustParsePrefix("10.0.0.0/16"), Zone: "z"}, network.CodeInvalidSubnetRange},
		{"overlapping", Subnet{ID: "s1", VPCID: "vpc-1", CIDR: netip.MustParsePrefix("10.1.1.128/25"), Zone: "z"}, network.CodeInvalidSubnetConflict},
		{"containing another", Subnet{ID: "s1", VPCID: "vpc-1", CIDR: netip.MustParsePrefix("10.1.0.0/20"), Zone: "z"}, network.CodeInvalidSubnetConflict},
		{"host bits", Subnet{ID: "s1", VPCID: "vpc-1", CIDR: netip.MustParsePrefix("10.1.2.5/24"), Zone: "z"}, network.CodeInvalidParameterValue},
		{"too small", Subnet{ID: "s1", VPCID: "vpc-1", CIDR: netip.MustParsePrefix("10.1.2.0/29"), Zone: "z"}, network.CodeInvalidParameterValue},
		{"IPv6", Subnet{ID: "s1", VPCID: "vpc-1", CIDR: netip.MustParsePrefix("fd00::/64"), Zone: "z"}, network.CodeInvalidParameterValue},
		{"no zone", Subnet{ID: "s1", VPCID: "vpc-1", CIDR: netip.MustParsePrefix("10.1.2.0/24")}, network.CodeInvalidParameterValue},
		{"unknown VPC", Subnet{ID: "s1", VPCID: "vpc-9", CIDR: netip.MustParsePrefix("10.1.2.0/24"), Zone: "z"}, network.CodeVPCNotFound},
		{"zero CIDR", Subnet{ID: "s1", VPCID: "vpc-1", Zone: "z"}, network.CodeInvalidParameterValue},
	} {
		if err := p.AddSubnet(c.s); network.CodeOf(err) != c.code {
			t.Errorf("%s: %v, want code %s", c.name, err, c.code)
		}
	}
	if got := p.Subnets("vpc-1"); len(got) != 1 {
		t.Fatalf("refused subnets changed the plan: %v", got)
	}
	if err := p.AddVPC(VPC{ID: "vpc-2", CIDR: netip.MustParsePrefix("10.1.0.0/8")}); network.CodeOf(err) != network.CodeInvalidParameterValue {
		t.Errorf("VPC /8: %v", err)
	}
	if err := p.RemoveVPC("vpc-1"); network.CodeOf(err) != network.CodeDependencyViolation {
		t.Errorf("remove VPC with subnet: %v", err)
	}
}

func TestAllocateReservesAndPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ipam.json")
	p := newPlan(t, FileStore{Path: path})
	p.AddVPC(VPC{ID: "vpc-1", CIDR: netip.MustParsePrefix("10.1.0.0/16")})
	if err := p.AddSubnet(Subnet{ID: "subnet-a", VPCID: "vpc-1", CIDR: netip.MustParsePrefix("10.1.1.0/28"), Zone: "local-1a"}); err != nil {
		t.Fatal(err)
	}
	s, _ := p.Subnet("subnet-a")
	if s.Gateway() != netip.MustParseAddr("10.1.1.1") || s.DNS() != netip.MustParseAddr("10.1.1.2") {
		t.Fatalf("gateway %s dns %s", s.Gateway(), s.DNS())
	}
	// A /28 has 16 addresses; network, .1, .2, .3 and broadcast are
	// reserved: 11 are left, .4 to .14.
	var got []Interface
	for i := 0; i < 11; i++ {
		ifc, err := p.Allocate("subnet-a", "eni-"+string(rune('a'+i)), netip.Addr{})
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		got = append(got, ifc)
	}
	if got[0].Address != netip.MustParseAddr("10.1.1.4") || got[10].Address != netip.MustParseAddr("10.1.1.14") {
		t.Fatalf("first %s last %s, want 10.1.1.4 and 10.1.1.14", got[0].Address, got[10].Address)
	}
	if _, err := p.Allocate("subnet-a", "eni-full", netip.Addr{}); network.CodeOf(err) != network.CodeAddressLimitExceeded {
		t.Fatalf("12th allocation: %v", err)
	}
	if err := p.Release("eni-c"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"10.1.1.1", "10.1.1.3", "10.1.1.15", "10.1.2.4"} {
		if _, err := p.Allocate("subnet-a", "eni-x", netip.MustParseAddr(bad)); network.CodeOf(err) != network.CodeInvalidParameterValue {
			t.Errorf("asking for %s: %v", bad, err)
		}
	}
	if _, err := p.Allocate("subnet-a", "eni-x", netip.MustParseAddr("10.1.1.4")); network.CodeOf(err) != network.CodeAddressInUse {
		t.Errorf("asking for a used address: %v", err)
	}
	x, err := p.Allocate("subnet-a", "eni-x", netip.MustParseAddr("10.1.1.6"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := p.Allocate("subnet-a", "eni-x", netip.Addr{})
	if err != nil || again != x {
		t.Fatalf("allocating again gave %v %v, want %v", again, err, x)
	}

	// A restart: a new plan on the same file sees the same interfaces.
	p2 := newPlan(t, FileStore{Path: path})
	if a, b := p.Interfaces("vpc-1"), p2.Interfaces("vpc-1"); len(a) != 11 || len(a) != len(b) {
		t.Fatalf("before restart %d interfaces, after %d", len(a), len(b))
	} else {
		for i := range a {
			if a[i] != b[i] {
				t.Errorf("interface %d was %v, now %v", i, a[i], b[i])
			}
		}
	}
	if err := p2.RemoveSubnet("subnet-a"); network.CodeOf(err) != network.CodeDependencyViolation {
		t.Errorf("remove subnet with interfaces: %v", err)
	}
}

func TestMACIsStableAndLocal(t *testing.T) {
	a, b := MACFor("eni-0123"), MACFor("eni-0123")
	if a.String() != b.String() {
		t.Fatalf("%s != %s", a, b)
	}
	if a.String() == MACFor("eni-0124").String() {
		t.Fatal("two IDs got the same MAC")
	}
	for _, id := range []string{"a", "b", "eni-1", "i-1/eth0"} {
		m := MACFor(id)
		if m[0]&1 != 0 || m[0]&2 == 0 {
			t.Errorf("MAC %s of %q is multicast or not locally administered", m, id)
		}
	}
}

type failingStore struct{ MemoryStore }

func (f *failingStore) Save(State) error { return errSave }

var errSave = &network.Error{Code: "X", Message: "disk full"}

func TestFailedSaveChangesNothing(t *testing.T) {
	p := newPlan(t, &failingStore{})
	if err := p.AddVPC(VPC{ID: "vpc-1", CIDR: netip.MustParsePrefix("10.1.0.0/16")}); err == nil {
		t.Fatal("save failure not reported")
	}
	if _, ok := p.VPC("vpc-1"); ok {
		t.Fatal("VPC kept after its save failed")
	}
}
