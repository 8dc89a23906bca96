package instancetype

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"gureum/api"
)

func TestEveryFamilyIsPresent(t *testing.T) {
	seen := map[string]int{}
	for _, ty := range All() {
		seen[ty.Family]++
		if ty.VCPUs <= 0 || ty.MemoryGiB <= 0 {
			t.Errorf("%s: %d vCPUs %g GiB", ty.Name, ty.VCPUs, ty.MemoryGiB)
		}
		if (ty.Family == FamilyBurstable) != (ty.Burstable != nil) {
			t.Errorf("%s: burstable parameters on the wrong family", ty.Name)
		}
	}
	for _, f := range []string{"T", "M", "C", "R", "X", "I", "D", "G", "P", "F"} {
		if seen[f] == 0 {
			t.Errorf("family %s missing", f)
		}
	}
}

func TestKnownTypes(t *testing.T) {
	for _, c := range []struct {
		name  string
		vcpus int
		mem   float64
		store int
	}{
		{"t3.nano", 2, 0.5, 0}, {"t3.2xlarge", 8, 32, 0}, {"m5.large", 2, 8, 0}, {"c5.9xlarge", 36, 72, 0},
		{"r6i.32xlarge", 128, 1024, 0}, {"x2idn.24xlarge", 96, 1536, 2850}, {"i3.large", 2, 15.25, 475},
		{"i4i.32xlarge", 128, 1024, 30000}, {"d3.8xlarge", 32, 256, 47520}, {"d2.8xlarge", 36, 244, 48000},
		{"g4dn.xlarge", 4, 16, 125}, {"p3.2xlarge", 8, 61, 0}, {"p4d.24xlarge", 96, 1152, 8000}, {"f1.2xlarge", 8, 122, 470},
	} {
		ty, err := Lookup(c.name)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if ty.VCPUs != c.vcpus || ty.MemoryGiB != c.mem || ty.InstanceStoreGB() != c.store {
			t.Errorf("%s: %d vCPU %g GiB %d GB", c.name, ty.VCPUs, ty.MemoryGiB, ty.InstanceStoreGB())
		}
	}
	if _, err := Lookup("t3.huge"); api.CodeOf(err) != api.CodeInvalidParameterValue {
		t.Errorf("unknown type: %v", err)
	}
}

func TestT3CreditTable(t *testing.T) {
	// AWS's T3 table: credits earned per hour and baseline per vCPU.
	want := map[string][2]float64{
		"nano": {6, 5}, "micro": {12, 10}, "small": {24, 20}, "medium": {24, 20},
		"large": {36, 30}, "xlarge": {96, 40}, "2xlarge": {192, 40},
	}
	for size, w := range want {
		ty, err := Lookup("t3." + size)
		if err != nil {
			t.Fatal(err)
		}
		b := ty.Burstable
		if b.CreditsPerHour != w[0] || b.BaselinePercent != w[1] || b.MaxBalance != 24*w[0] {
			t.Errorf("t3.%s: %+v", size, *b)
		}
		if b.LaunchCreditsPerVCPU != 0 || b.DefaultMode != api.CreditsUnlimited {
			t.Errorf("t3.%s: launch credits %g, mode %s", size, b.LaunchCreditsPerVCPU, b.DefaultMode)
		}
	}
}

func touch(t *testing.T, root, rel string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestAcceleratedTypesUnavailableWithoutDevices(t *testing.T) {
	root := t.TempDir()
	touch(t, root, "dev/null")
	touch(t, root, "dev/nvidiactl") // control node only: not a GPU
	d, err := DetectDevices(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, ty := range All() {
		info := ty.Info(d)
		switch ty.Family {
		case FamilyGraphics, FamilyGPUCompute:
			if info.Available || !strings.Contains(info.Reason, "no GPU") {
				t.Errorf("%s: available=%v reason %q", ty.Name, info.Available, info.Reason)
			}
		case FamilyFPGA:
			if info.Available || !strings.Contains(info.Reason, "no FPGA") {
				t.Errorf("%s: available=%v reason %q", ty.Name, info.Available, info.Reason)
			}
		default:
			if !info.Available || info.Reason != "" {
				t.Errorf("%s unavailable: %s", ty.Name, info.Reason)
			}
		}
	}
	c := NewCapacity(Host{VCPUs: 1000, MemoryGiB: 10000, Devices: d})
	g, _ := Lookup("g5.xlarge")
	if err := c.Reserve("i-1", g); api.CodeOf(err) != api.CodeUnsupported {
		t.Errorf("reserve of a GPU type: %v", err)
	}
}

func TestDetectDevices(t *testing.T) {
	root := t.TempDir()
	touch(t, root, "dev/nvidia0")
	touch(t, root, "dev/dri/renderD128")
	touch(t, root, "dev/xdma0_user")
	d, err := DetectDevices(root)
	if err != nil {
		t.Fatal(err)
	}
	if d.GPUs() != 1 || len(d.FPGAs) != 1 {
		t.Fatalf("detected %+v", d)
	}
	p, _ := Lookup("p3.2xlarge")
	if ok, why := d.CanRun(p); ok || strings.Contains(why, "no GPU") {
		t.Errorf("p3.2xlarge with a GPU: %v %q", ok, why)
	}
	p8, _ := Lookup("p3.16xlarge")
	if _, why := d.CanRun(p8); !strings.Contains(why, "needs 8 GPUs") {
		t.Errorf("p3.16xlarge with one GPU: %q", why)
	}
}

func TestCapacityOvercommitAndRelease(t *testing.T) {
	nano, _ := Lookup("t3.nano") // 2 vCPU, 0.5 GiB
	c := NewCapacity(Host{VCPUs: 2, MemoryGiB: 4, CPUOvercommit: 4})
	for i := range 4 {
		if err := c.Reserve(string(rune('a'+i)), nano); err != nil {
			t.Fatalf("reserve %d: %v", i, err)
		}
	}
	err := c.Reserve("e", nano)
	if api.CodeOf(err) != api.CodeInsufficientInstanceCapacity {
		t.Fatalf("9th and 10th vCPU on a 2x4 host: %v", err)
	}
	if err := c.Reserve("a", nano); err != nil {
		t.Errorf("re-reserving a holder: %v", err)
	}
	if u := c.Usage(); u.VCPUs != 8 || u.VCPULimit != 8 || u.Instances != 4 || u.MemoryGiB != 2 {
		t.Errorf("usage %+v", u)
	}
	c.Release("a")
	c.Release("a")
	if err := c.Reserve("e", nano); err != nil {
		t.Errorf("after release: %v", err)
	}
	big, _ := Lookup("t3.xlarge") // 16 GiB > 4 GiB
	c2 := NewCapacity(Host{VCPUs: 64, MemoryGiB: 4})
	if err := c2.Reserve("x", big); api.CodeOf(err) != api.CodeInsufficientInstanceCapacity {
		t.Errorf("memory limit: %v", err)
	}
}

func TestCapacityConcurrentReservationsNeverOverbook(t *testing.T) {
	nano, _ := Lookup("t3.nano")
	c := NewCapacity(Host{VCPUs: 10, MemoryGiB: 100})
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c.Reserve(string(rune('A'+i)), nano) == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ok != 5 || c.Usage().VCPUs != 10 {
		t.Errorf("%d reservations, usage %+v", ok, c.Usage())
	}
}
