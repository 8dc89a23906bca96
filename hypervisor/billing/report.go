package billing

import (
	"cmp"
	"fmt"
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

// BilledSeconds is the running time of one run billed in [from, to).
//
// The rule is per-second metering with a minimum per start: a run of
// length D costs max(⌈D⌉, 60) seconds, whatever periods it spans. Two
// things make that hold when a bill covers only part of a run:
//
//   - Seconds are counted from the run's start, not from the period's: the
//     period gets ⌈hi−start⌉ − ⌈lo−start⌉ seconds, where [lo, hi) is the
//     part of the run inside it. Summed over adjacent periods this
//     telescopes to ⌈D⌉, so a boundary never adds a rounded-up second.
//   - The minimum is a top-up to 60 s of the whole run's rounded length,
//     charged in the period where the run started. (Rounding the run and
//     the shortfall separately would bill a 0.4 s run as 1 + 60 = 61 s.)
//
// A run still going is measured up to to.
func BilledSeconds(r Run, from, to time.Time) int64 {
	end := r.To
	if end.IsZero() {
		end = to
	}
	var secs int64
	if d := overlap(r.From, r.To, from, to); d > 0 {
		lo := r.From
		if from.After(lo) {
			lo = from
		}
		hi := lo.Add(d)
		secs = ceilSeconds(hi.Sub(r.From)) - ceilSeconds(lo.Sub(r.From))
	}
	if r.From.Before(from) || !r.From.Before(to) {
		return secs
	}
	if total := ceilSeconds(end.Sub(r.From)); total < minimumSeconds {
		secs += minimumSeconds - total
	}
	return secs
}

// minimumSeconds is MinimumRun in whole seconds.
const minimumSeconds = int64(MinimumRun / time.Second)

// ceilSeconds rounds d up to whole seconds; zero and negative lengths are
// zero.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
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
