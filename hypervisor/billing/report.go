package billing

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"gureum/api"
)

// MinimumRun is the least time a start is billed for.
const MinimumRun = 60 * time.Second

// Month is the billing month of storage prices: GB-month means one GiB
// held for 30 days, prorated to the second.
const Month = 30 * 24 * time.Hour

// Units of BillingLine.Unit.
const (
	UnitSeconds   = "seconds"
	UnitGBMonth   = "GB-month"
	UnitVCPUHours = "vCPU-hours"
)

// overlap is how much of [from, to) lies in [pFrom, pTo). A zero to means
// "still going" and is read as pTo.
func overlap(from, to, pFrom, pTo time.Time) time.Duration {
	if to.IsZero() || to.After(pTo) {
		to = pTo
	}
	if from.Before(pFrom) {
		from = pFrom
	}
	if !to.After(from) {
		return 0
	}
	return to.Sub(from)
}

// BilledSeconds is the running time of one run billed in [from, to):
// the part of the run inside the period, rounded up to a whole second,
// plus, for a run that started inside the period and lasted (or, still
// running, has lasted by the period's end) less than MinimumRun, the rest
// of the minimum.
func BilledSeconds(r Run, from, to time.Time) int64 {
	in := overlap(r.From, r.To, from, to)
	secs := int64(math.Ceil(in.Seconds()))
	if r.From.Before(from) || !r.From.Before(to) {
		return secs
	}
	// The shortfall is measured on the whole run, so a short run that
	// crosses the period's end is not charged the minimum twice.
	end := r.To
	if end.IsZero() {
		end = to // still running: what it has run so far
	}
	if total := end.Sub(r.From); total < MinimumRun {
		secs += int64(math.Ceil((MinimumRun - total).Seconds()))
	}
	return secs
}

// Compute prices usage over [from, to): one line per resource and priced
// variant (an instance that changed type while stopped has a line per
// type), sorted by kind and id. A variant missing from the price list is
// an error: a bill must not silently leave something out.
func Compute(p Prices, from, to time.Time, u Usage) (api.BillingReport, error) {
	if !to.After(from) {
		return api.BillingReport{}, api.Errorf(api.CodeInvalidParameterValue, "The billing period must end after it starts.")
	}
	rep := api.BillingReport{From: from, To: to, Currency: p.Currency}
	add := func(l api.BillingLine) {
		if l.Quantity == 0 {
			return
		}
		l.Cost = l.Quantity * l.UnitPrice
		rep.Lines = append(rep.Lines, l)
	}

	for _, inst := range u.Instances {
		secs := map[string]int64{}
		for _, r := range inst.Runs {
			secs[r.Type] += BilledSeconds(r, from, to)
		}
		for _, typ := range sortedKeys(secs) {
			hourly, ok := p.InstanceHourly[typ]
			if !ok && secs[typ] > 0 {
				return api.BillingReport{}, fmt.Errorf("no price for instance type %s", typ)
			}
			add(api.BillingLine{ResourceID: inst.ID, Kind: "instance", Type: typ, Quantity: float64(secs[typ]),
				Unit: UnitSeconds, UnitPrice: hourly / 3600})
		}
	}
	for _, v := range u.Volumes {
		gbMonths := map[string]float64{}
		for _, s := range v.Segments {
			gbMonths[s.Type] += float64(s.Size) * overlap(s.From, s.To, from, to).Seconds() / Month.Seconds()
		}
		for _, typ := range sortedKeys(gbMonths) {
			price, ok := p.VolumeGBMonth[typ]
			if !ok && gbMonths[typ] > 0 {
				return api.BillingReport{}, fmt.Errorf("no price for volume type %s", typ)
			}
			add(api.BillingLine{ResourceID: v.ID, Kind: "volume", Type: typ, Quantity: gbMonths[typ],
				Unit: UnitGBMonth, UnitPrice: price})
		}
	}
	for _, s := range u.Snapshots {
		var gbMonths float64
		for _, seg := range s.Segments {
			gib := float64(seg.Size) / (1 << 30)
			gbMonths += gib * overlap(seg.From, seg.To, from, to).Seconds() / Month.Seconds()
		}
		add(api.BillingLine{ResourceID: s.ID, Kind: "snapshot", Quantity: gbMonths, Unit: UnitGBMonth,
			UnitPrice: p.SnapshotGBMonth})
	}
	for _, c := range u.Credits {
		var vcpuHours float64
		for _, ch := range c.Charges {
			if !ch.At.Before(from) && ch.At.Before(to) {
				vcpuHours += ch.Credits / 60 // a credit is a vCPU-minute
			}
		}
		add(api.BillingLine{ResourceID: c.ID, Kind: "cpu-credits", Quantity: vcpuHours, Unit: UnitVCPUHours,
			UnitPrice: p.CPUCreditVCPUHour})
	}

	slices.SortStableFunc(rep.Lines, func(a, b api.BillingLine) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.ResourceID, b.ResourceID), cmp.Compare(a.Type, b.Type))
	})
	for _, l := range rep.Lines {
		rep.Total += l.Cost
	}
	return rep, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
