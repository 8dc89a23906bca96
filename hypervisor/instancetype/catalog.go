// Package instancetype is the catalog of instance types gureum offers, and
// the accounting of how much of the host they take.
//
// Types copy real AWS types of the families of the lecture: name, vCPUs,
// memory and instance store as AWS lists them in its instance type guide
// (general purpose, compute, memory, storage and accelerated computing
// pages). gureum runs the vCPUs and memory as given; an instance store is a
// sparse file of the listed size, so nothing is allocated until the guest
// writes. Types that need a GPU or an FPGA are listed everywhere but can be
// launched only on hosts that have one (see Devices).
package instancetype

import (
	"fmt"
	"slices"
	"strings"

	"gureum/api"
)

// Families, by the letter AWS names them with.
const (
	FamilyBurstable    = "T" // burstable general purpose (CPU credits)
	FamilyGeneral      = "M" // general purpose
	FamilyCompute      = "C" // compute optimized
	FamilyMemory       = "R" // memory optimized
	FamilyLargeMemory  = "X" // very large memory
	FamilyHighIO       = "I" // NVMe instance store, high IOPS
	FamilyDenseStorage = "D" // HDD instance store, high throughput
	FamilyGraphics     = "G" // GPU for graphics and inference
	FamilyGPUCompute   = "P" // GPU for training and HPC
	FamilyFPGA         = "F" // FPGA
)

// Accelerator kinds.
const (
	AcceleratorGPU  = "gpu"
	AcceleratorFPGA = "fpga"
)

// Type is one instance type.
type Type struct {
	Name      string  // e.g. m5.large
	Family    string  // one of the Family constants
	VCPUs     int     //
	MemoryGiB float64 //
	// InstanceStoreDisks x InstanceStoreDiskGB of InstanceStoreMedium
	// ("NVMe SSD", "SSD", "HDD"); zero disks means EBS only.
	InstanceStoreDisks  int
	InstanceStoreDiskGB int
	InstanceStoreMedium string
	AcceleratorKind     string // "", AcceleratorGPU or AcceleratorFPGA
	Accelerators        int
	// Burstable is set for the T family.
	Burstable *Burstable
}

// Burstable is a T type's CPU credit parameters, as AWS publishes them.
// One credit is one vCPU at 100% for one minute.
type Burstable struct {
	// BaselinePercent is the share of each vCPU the instance may use
	// forever without spending credits.
	BaselinePercent float64
	// CreditsPerHour is the earn rate: BaselinePercent/100 x VCPUs x 60.
	CreditsPerHour float64
	// MaxBalance is how many earned credits it can bank: 24 hours of
	// earnings.
	MaxBalance float64
	// LaunchCreditsPerVCPU is given at each launch in standard mode. AWS
	// gives them to T2 only (30 per vCPU); T3 gets none in either mode,
	// since unlimited mode covers the start-up burst.
	LaunchCreditsPerVCPU float64
	// DefaultMode is the credit mode an instance gets unless asked
	// otherwise (unlimited for T3).
	DefaultMode string
}

// InstanceStoreGB is the type's total instance store.
func (t Type) InstanceStoreGB() int { return t.InstanceStoreDisks * t.InstanceStoreDiskGB }

// MemoryMiB is the memory in MiB, as the VMM takes it.
func (t Type) MemoryMiB() uint64 { return uint64(t.MemoryGiB * 1024) }

// Size is the part of the name after the dot (large, 2xlarge ...).
func (t Type) Size() string {
	_, size, _ := strings.Cut(t.Name, ".")
	return size
}

// Info is the type as the API lists it on a host with devices d.
func (t Type) Info(d Devices) api.InstanceTypeInfo {
	ok, reason := d.CanRun(t)
	info := api.InstanceTypeInfo{
		Name: t.Name, Family: t.Family, VCPUs: t.VCPUs, MemoryGiB: t.MemoryGiB,
		InstanceStoreGB: t.InstanceStoreGB(), Accelerators: t.Accelerators, AcceleratorKind: t.AcceleratorKind,
		Available: ok, Reason: reason,
	}
	if t.InstanceStoreDisks > 0 {
		info.InstanceStore = fmt.Sprintf("%d x %d %s", t.InstanceStoreDisks, t.InstanceStoreDiskGB, t.InstanceStoreMedium)
	}
	if b := t.Burstable; b != nil {
		info.Burstable = &api.BurstableInfo{
			BaselinePercent: b.BaselinePercent, CreditsPerHour: b.CreditsPerHour, MaxCreditBalance: b.MaxBalance,
			LaunchCredits: b.LaunchCreditsPerVCPU * float64(t.VCPUs), DefaultCreditMode: b.DefaultMode,
		}
	}
	return info
}

// All returns every type, grouped by family in the order of the Family
// constants and by size within a family. The slice is a copy.
func All() []Type {
	return slices.Clone(catalog)
}

// Lookup finds a type by name; an unknown name is EC2's
// InvalidParameterValue.
func Lookup(name string) (Type, error) {
	if t, ok := byName[name]; ok {
		return t, nil
	}
	return Type{}, api.Errorf(api.CodeInvalidParameterValue, "Invalid value '%s' for InstanceType.", name)
}

var byName = func() map[string]Type {
	m := make(map[string]Type, len(catalog))
	for _, t := range catalog {
		if _, dup := m[t.Name]; dup {
			panic("instancetype: duplicate type " + t.Name)
		}
		m[t.Name] = t
	}
	return m
}()
