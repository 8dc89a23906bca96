package instancetype

import "gureum/api"

// The catalog. Figures are AWS's (Amazon EC2 Instance Types guide:
// general purpose, compute optimized, memory optimized, storage optimized
// and accelerated computing specifications; burstable performance
// instances, "key concepts" for the T3 credit table). Memory is GiB,
// instance store disks are GB.

// row is one size of a family, in the order: size, vCPUs, memory GiB,
// instance store disks, GB per disk, accelerators.
type row struct {
	size      string
	vcpus     int
	memGiB    float64
	disks, gb int
	accel     int
}

func family(fam, prefix, medium, accel string, rows ...row) []Type {
	out := make([]Type, 0, len(rows))
	for _, r := range rows {
		t := Type{Name: prefix + "." + r.size, Family: fam, VCPUs: r.vcpus, MemoryGiB: r.memGiB,
			InstanceStoreDisks: r.disks, InstanceStoreDiskGB: r.gb, Accelerators: r.accel}
		if r.disks > 0 {
			t.InstanceStoreMedium = medium
		}
		if r.accel > 0 {
			t.AcceleratorKind = accel
		}
		out = append(out, t)
	}
	return out
}

// t3 sizes with their baseline per vCPU; earn rate and maximum balance
// follow from it (baseline x vCPUs x 60 per hour, 24 hours of that).
func t3() []Type {
	sizes := []struct {
		size     string
		vcpus    int
		mem      float64
		baseline float64
	}{
		{"nano", 2, 0.5, 5}, {"micro", 2, 1, 10}, {"small", 2, 2, 20}, {"medium", 2, 4, 20},
		{"large", 2, 8, 30}, {"xlarge", 4, 16, 40}, {"2xlarge", 8, 32, 40},
	}
	out := make([]Type, 0, len(sizes))
	for _, s := range sizes {
		perHour := s.baseline / 100 * float64(s.vcpus) * 60
		out = append(out, Type{Name: "t3." + s.size, Family: FamilyBurstable, VCPUs: s.vcpus, MemoryGiB: s.mem,
			Burstable: &Burstable{BaselinePercent: s.baseline, CreditsPerHour: perHour, MaxBalance: 24 * perHour,
				LaunchCreditsPerVCPU: 0, DefaultMode: api.CreditsUnlimited}})
	}
	return out
}

var catalog = concat(
	t3(),
	family(FamilyGeneral, "m5", "", "",
		row{"large", 2, 8, 0, 0, 0}, row{"xlarge", 4, 16, 0, 0, 0}, row{"2xlarge", 8, 32, 0, 0, 0},
		row{"4xlarge", 16, 64, 0, 0, 0}, row{"8xlarge", 32, 128, 0, 0, 0}, row{"12xlarge", 48, 192, 0, 0, 0},
		row{"16xlarge", 64, 256, 0, 0, 0}, row{"24xlarge", 96, 384, 0, 0, 0}),
	family(FamilyGeneral, "m6i", "", "",
		row{"large", 2, 8, 0, 0, 0}, row{"xlarge", 4, 16, 0, 0, 0}, row{"2xlarge", 8, 32, 0, 0, 0},
		row{"4xlarge", 16, 64, 0, 0, 0}, row{"8xlarge", 32, 128, 0, 0, 0}, row{"12xlarge", 48, 192, 0, 0, 0},
		row{"16xlarge", 64, 256, 0, 0, 0}, row{"24xlarge", 96, 384, 0, 0, 0}, row{"32xlarge", 128, 512, 0, 0, 0}),
	family(FamilyCompute, "c5", "", "",
		row{"large", 2, 4, 0, 0, 0}, row{"xlarge", 4, 8, 0, 0, 0}, row{"2xlarge", 8, 16, 0, 0, 0},
		row{"4xlarge", 16, 32, 0, 0, 0}, row{"9xlarge", 36, 72, 0, 0, 0}, row{"12xlarge", 48, 96, 0, 0, 0},
		row{"18xlarge", 72, 144, 0, 0, 0}, row{"24xlarge", 96, 192, 0, 0, 0}),
	family(FamilyCompute, "c6i", "", "",
		row{"large", 2, 4, 0, 0, 0}, row{"xlarge", 4, 8, 0, 0, 0}, row{"2xlarge", 8, 16, 0, 0, 0},
		row{"4xlarge", 16, 32, 0, 0, 0}, row{"8xlarge", 32, 64, 0, 0, 0}, row{"12xlarge", 48, 96, 0, 0, 0},
		row{"16xlarge", 64, 128, 0, 0, 0}, row{"24xlarge", 96, 192, 0, 0, 0}, row{"32xlarge", 128, 256, 0, 0, 0}),
	family(FamilyMemory, "r5", "", "",
		row{"large", 2, 16, 0, 0, 0}, row{"xlarge", 4, 32, 0, 0, 0}, row{"2xlarge", 8, 64, 0, 0, 0},
		row{"4xlarge", 16, 128, 0, 0, 0}, row{"8xlarge", 32, 256, 0, 0, 0}, row{"12xlarge", 48, 384, 0, 0, 0},
		row{"16xlarge", 64, 512, 0, 0, 0}, row{"24xlarge", 96, 768, 0, 0, 0}),
	family(FamilyMemory, "r6i", "", "",
		row{"large", 2, 16, 0, 0, 0}, row{"xlarge", 4, 32, 0, 0, 0}, row{"2xlarge", 8, 64, 0, 0, 0},
		row{"4xlarge", 16, 128, 0, 0, 0}, row{"8xlarge", 32, 256, 0, 0, 0}, row{"12xlarge", 48, 384, 0, 0, 0},
		row{"16xlarge", 64, 512, 0, 0, 0}, row{"24xlarge", 96, 768, 0, 0, 0}, row{"32xlarge", 128, 1024, 0, 0, 0}),
	family(FamilyLargeMemory, "x1e", "SSD", "",
		row{"xlarge", 4, 122, 1, 120, 0}, row{"2xlarge", 8, 244, 1, 240, 0}, row{"4xlarge", 16, 488, 1, 480, 0},
		row{"8xlarge", 32, 976, 1, 960, 0}, row{"16xlarge", 64, 1952, 1, 1920, 0}, row{"32xlarge", 128, 3904, 2, 1920, 0}),
	family(FamilyLargeMemory, "x2idn", "NVMe SSD", "",
		row{"16xlarge", 64, 1024, 1, 1900, 0}, row{"24xlarge", 96, 1536, 2, 1425, 0}, row{"32xlarge", 128, 2048, 2, 1900, 0}),
	family(FamilyHighIO, "i3", "NVMe SSD", "",
		row{"large", 2, 15.25, 1, 475, 0}, row{"xlarge", 4, 30.5, 1, 950, 0}, row{"2xlarge", 8, 61, 1, 1900, 0},
		row{"4xlarge", 16, 122, 2, 1900, 0}, row{"8xlarge", 32, 244, 4, 1900, 0}, row{"16xlarge", 64, 488, 8, 1900, 0}),
	family(FamilyHighIO, "i4i", "NVMe SSD", "",
		row{"large", 2, 16, 1, 468, 0}, row{"xlarge", 4, 32, 1, 937, 0}, row{"2xlarge", 8, 64, 1, 1875, 0},
		row{"4xlarge", 16, 128, 1, 3750, 0}, row{"8xlarge", 32, 256, 2, 3750, 0}, row{"16xlarge", 64, 512, 4, 3750, 0},
		row{"32xlarge", 128, 1024, 8, 3750, 0}),
	family(FamilyDenseStorage, "d2", "HDD", "",
		row{"xlarge", 4, 30.5, 3, 2000, 0}, row{"2xlarge", 8, 61, 6, 2000, 0}, row{"4xlarge", 16, 122, 12, 2000, 0},
		row{"8xlarge", 36, 244, 24, 2000, 0}),
	family(FamilyDenseStorage, "d3", "HDD", "",
		row{"xlarge", 4, 32, 3, 1980, 0}, row{"2xlarge", 8, 64, 6, 1980, 0}, row{"4xlarge", 16, 128, 12, 1980, 0},
		row{"8xlarge", 32, 256, 24, 1980, 0}),
	family(FamilyGraphics, "g4dn", "NVMe SSD", AcceleratorGPU,
		row{"xlarge", 4, 16, 1, 125, 1}, row{"2xlarge", 8, 32, 1, 225, 1}, row{"4xlarge", 16, 64, 1, 225, 1},
		row{"8xlarge", 32, 128, 1, 900, 1}, row{"12xlarge", 48, 192, 1, 900, 4}, row{"16xlarge", 64, 256, 1, 900, 1}),
	family(FamilyGraphics, "g5", "NVMe SSD", AcceleratorGPU,
		row{"xlarge", 4, 16, 1, 250, 1}, row{"2xlarge", 8, 32, 1, 450, 1}, row{"4xlarge", 16, 64, 1, 600, 1},
		row{"8xlarge", 32, 128, 1, 900, 1}, row{"12xlarge", 48, 192, 1, 3800, 4}, row{"16xlarge", 64, 256, 1, 1900, 1},
		row{"24xlarge", 96, 384, 1, 3800, 4}, row{"48xlarge", 192, 768, 2, 3800, 8}),
	family(FamilyGPUCompute, "p3", "", AcceleratorGPU,
		row{"2xlarge", 8, 61, 0, 0, 1}, row{"8xlarge", 32, 244, 0, 0, 4}, row{"16xlarge", 64, 488, 0, 0, 8}),
	family(FamilyGPUCompute, "p4d", "NVMe SSD", AcceleratorGPU,
		row{"24xlarge", 96, 1152, 8, 1000, 8}),
	family(FamilyFPGA, "f1", "NVMe SSD", AcceleratorFPGA,
		row{"2xlarge", 8, 122, 1, 470, 1}, row{"4xlarge", 16, 244, 1, 940, 2}, row{"16xlarge", 64, 976, 4, 940, 8}),
)

func concat(parts ...[]Type) []Type {
	var out []Type
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
