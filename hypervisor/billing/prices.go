// Package billing meters what each account uses and prices it: instances
// per second of running time (at least 60 seconds per start), EBS volumes
// per GB-month by volume type, snapshots per GB-month of stored bytes, and
// the surplus CPU credits of unlimited burstable instances.
//
// Metering (meter.go) records usage in the store as it happens, inside the
// same transactions as the state changes it follows; Compute (report.go)
// turns usage into cost for any period. Prices come from a JSON file the
// administrator may edit; the defaults are illustrative figures shaped like
// AWS us-east-1 on-demand Linux prices, not a quote.
package billing

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"gureum/hypervisor/instancetype"
)

// Prices is the price list. Every map is keyed by the priced variant.
type Prices struct {
	Currency string `json:"currency"`
	// InstanceHourly is the price of one hour of running, by type.
	InstanceHourly map[string]float64 `json:"instance_hourly"`
	// VolumeGBMonth is the price of one GiB provisioned for a month (30
	// days), by volume type (gp3, io2 ...).
	VolumeGBMonth map[string]float64 `json:"volume_gb_month"`
	// SnapshotGBMonth is the price of one GiB of snapshot data stored for
	// a month.
	SnapshotGBMonth float64 `json:"snapshot_gb_month"`
	// CPUCreditVCPUHour prices surplus CPU credits of unlimited
	// burstable instances, per vCPU-hour (60 credits).
	CPUCreditVCPUHour float64 `json:"cpu_credit_vcpu_hour"`
}

// familyRate is the default hourly price per vCPU of each type prefix
// (per GiB of memory for t3, whose prices follow memory). Derived from
// us-east-1 on-demand Linux list prices of the .large or smallest size;
// illustrative only.
var familyRate = map[string]float64{
	"t3": 0.0104, // per GiB: t3.micro 0.0104/h
	"m5": 0.048, "m6i": 0.048,
	"c5": 0.0425, "c6i": 0.0425,
	"r5": 0.063, "r6i": 0.063,
	"x1e": 0.2085, "x2idn": 0.1042,
	"i3": 0.078, "i4i": 0.086,
	"d2": 0.1725, "d3": 0.12475,
	"g4dn": 0.1315, "g5": 0.2515,
	"p3": 0.3825, "p4d": 0.3414,
	"f1": 0.20625,
}

// DefaultPrices returns the illustrative default price list, covering
// every type of the catalog.
func DefaultPrices() Prices {
	p := Prices{
		Currency:       "USD",
		InstanceHourly: map[string]float64{},
		VolumeGBMonth: map[string]float64{
			"gp3": 0.08, "gp2": 0.10, "io1": 0.125, "io2": 0.125,
			"st1": 0.045, "sc1": 0.015, "standard": 0.05,
		},
		SnapshotGBMonth:   0.05,
		CPUCreditVCPUHour: 0.05,
	}
	for _, t := range instancetype.All() {
		prefix, _, _ := strings.Cut(t.Name, ".")
		rate := familyRate[prefix]
		units := float64(t.VCPUs)
		if t.Family == instancetype.FamilyBurstable {
			units = t.MemoryGiB
		}
		p.InstanceHourly[t.Name] = rate * units
	}
	return p
}

// LoadPrices reads a price file and lays it over the defaults, so the file
// need only list what the administrator changed. A missing file gives the
// defaults.
func LoadPrices(path string) (Prices, error) {
	p := DefaultPrices()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return Prices{}, fmt.Errorf("read prices: %w", err)
	}
	var f Prices
	if err := json.Unmarshal(b, &f); err != nil {
		return Prices{}, fmt.Errorf("parse prices %s: %w", path, err)
	}
	if f.Currency != "" {
		p.Currency = f.Currency
	}
	for k, v := range f.InstanceHourly {
		p.InstanceHourly[k] = v
	}
	for k, v := range f.VolumeGBMonth {
		p.VolumeGBMonth[k] = v
	}
	if f.SnapshotGBMonth != 0 {
		p.SnapshotGBMonth = f.SnapshotGBMonth
	}
	if f.CPUCreditVCPUHour != 0 {
		p.CPUCreditVCPUHour = f.CPUCreditVCPUHour
	}
	if err := p.Validate(); err != nil {
		return Prices{}, fmt.Errorf("prices %s: %w", path, err)
	}
	return p, nil
}

// WritePrices writes p as an indented JSON price file, for the admin to
// start editing from.
func WritePrices(path string, p Prices) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return fmt.Errorf("encode prices: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write prices: %w", err)
	}
	return nil
}

// Validate rejects negative prices.
func (p Prices) Validate() error {
	for k, v := range p.InstanceHourly {
		if v < 0 {
			return fmt.Errorf("negative price %g for instance type %s", v, k)
		}
	}
	for k, v := range p.VolumeGBMonth {
		if v < 0 {
			return fmt.Errorf("negative price %g for volume type %s", v, k)
		}
	}
	if p.SnapshotGBMonth < 0 || p.CPUCreditVCPUHour < 0 {
		return errors.New("negative snapshot or CPU credit price")
	}
	return nil
}
