// Package credits keeps the CPU credit accounts of burstable (T family)
// instances, as AWS defines them.
//
// One credit is one vCPU at 100% for one minute (or two vCPUs at 50% for a
// minute, and so on). A running instance earns credits at a fixed rate per
// hour, the rate that exactly pays for running every vCPU at the type's
// baseline; it spends them for the CPU time its vCPUs actually use, which
// the VMM measures as busy nanoseconds per vCPU. Earned credits bank up to
// 24 hours of earnings; more are discarded.
//
// When the bank is empty, the credit mode decides:
//   - standard: the instance is held at its baseline. The supervisor puts a
//     CPU quota of baseline x vCPUs on the VMM's cgroup; at baseline,
//     spending equals earning, so the balance stays at zero until the guest
//     idles and lets it grow again.
//   - unlimited: the instance keeps bursting on surplus credits, which
//     later earnings pay back. Surplus beyond 24 hours of earnings, and any
//     surplus still owed when the instance stops, is charged (billing
//     prices it per vCPU-hour: 60 credits).
//
// The package is pure arithmetic over a fake-able clock: the caller reads
// the VMM's metrics, calls Account.Tick, applies the returned Limit and
// persists the Account.
package credits

import (
	"fmt"
	"time"

	"gureum/api"
	"gureum/hypervisor/instancetype"
)

// StandardRetention is how long a stopped T3 standard instance keeps its
// earned balance (AWS: seven days for T3, T3a and T4g).
const StandardRetention = 7 * 24 * time.Hour

// empty is the balance under which an account counts as empty: float
// arithmetic over many ticks leaves crumbs that are not worth a burst.
const empty = 1e-6

// Params are a burstable type's credit parameters.
type Params struct {
	VCPUs           int
	BaselinePercent float64 // per vCPU
	CreditsPerHour  float64
	MaxBalance      float64
	LaunchCredits   float64 // per launch, standard mode only
}

// ParamsFor returns the credit parameters of a burstable type.
func ParamsFor(t instancetype.Type) (Params, error) {
	b := t.Burstable
	if b == nil {
		return Params{}, fmt.Errorf("%s is not a burstable type", t.Name)
	}
	return Params{VCPUs: t.VCPUs, BaselinePercent: b.BaselinePercent, CreditsPerHour: b.CreditsPerHour,
		MaxBalance: b.MaxBalance, LaunchCredits: b.LaunchCreditsPerVCPU * float64(t.VCPUs)}, nil
}

// BaselineCPUs is the CPU the instance may use without spending credits,
// in host CPUs (t3.nano: 2 vCPUs x 5% = 0.1).
func (p Params) BaselineCPUs() float64 {
	return float64(p.VCPUs) * p.BaselinePercent / 100
}

// Account is one instance's credit state. It is plain data, persisted by
// the caller with the instance; one goroutine at a time may use it.
type Account struct {
	Mode string `json:"mode"` // api.CreditsStandard or api.CreditsUnlimited
	// Balance is earned credits in the bank, at most Params.MaxBalance.
	Balance float64 `json:"balance"`
	// Launch is what is left of the launch credits; spent first and not
	// counted against the maximum.
	Launch float64 `json:"launch"`
	// Surplus is credits spent beyond the bank in unlimited mode and not
	// yet paid back by earnings.
	Surplus float64 `json:"surplus"`
	// SurplusCharged is the surplus credits billed so far (cumulative).
	SurplusCharged float64 `json:"surplus_charged"`
	// Throttled is the last decision: held at baseline.
	Throttled bool `json:"throttled"`
	// LastAt and LastBusyNS are the previous sample (busy_ns per vCPU,
	// cumulative since the VMM's boot).
	LastAt     time.Time `json:"last_at,omitzero"`
	LastBusyNS []uint64  `json:"last_busy_ns,omitempty"`
	StoppedAt  time.Time `json:"stopped_at,omitzero"`
}

// Limit is what the supervisor enforces on the VMM's cgroup.
type Limit struct {
	// Throttled is true when the instance must be held at baseline.
	Throttled bool
	// CPUs is the CPU quota in host CPUs while throttled (baseline x
	// vCPUs); 0 when not throttled (no quota).
	CPUs float64
}

// QuotaMicros is the cgroup CPU quota for a period of periodMicros
// (cpu.cfs_quota_us on cgroup v1, the first field of cpu.max on v2), or
// -1 for no limit.
func (l Limit) QuotaMicros(periodMicros int64) int64 {
	if !l.Throttled {
		return -1
	}
	q := int64(l.CPUs * float64(periodMicros))
	return max(q, 1000) // the kernel refuses quotas under 1 ms
}

// NewAccount opens the account of an instance launched at now in mode.
func NewAccount(p Params, mode string, now time.Time) (*Account, error) {
	if mode != api.CreditsStandard && mode != api.CreditsUnlimited {
		return nil, api.Errorf(api.CodeInvalidParameterValue, "Invalid value '%s' for CpuCredits.", mode)
	}
	a := &Account{Mode: mode}
	a.Start(p, now)
	return a, nil
}

// Start is called when the instance (re)starts: a new VMM, so busy
// counters start from zero. A standard T3 instance stopped for longer than
// StandardRetention lost its bank. Launch credits come with every start in
// standard mode (zero for T3).
func (a *Account) Start(p Params, now time.Time) {
	if !a.StoppedAt.IsZero() && now.Sub(a.StoppedAt) > StandardRetention {
		a.Balance = 0
	}
	if a.Mode == api.CreditsStandard {
		a.Launch = p.LaunchCredits
	}
	a.StoppedAt = time.Time{}
	a.LastAt = now
	a.LastBusyNS = nil
	a.Throttled = false
}

// Stop is called when the instance stops or terminates: surplus still
// owed is charged now, as AWS does.
func (a *Account) Stop(now time.Time) {
	a.SurplusCharged += a.Surplus
	a.Surplus = 0
	a.StoppedAt = now
	a.Throttled = false
}

// SetMode switches between standard and unlimited on a running instance.
func (a *Account) SetMode(p Params, mode string) error {
	if mode != api.CreditsStandard && mode != api.CreditsUnlimited {
		return api.Errorf(api.CodeInvalidParameterValue, "Invalid value '%s' for CpuCredits.", mode)
	}
	if a.Mode == api.CreditsUnlimited && mode == api.CreditsStandard {
		// Surplus cannot be carried into a mode that has none.
		a.SurplusCharged += a.Surplus
		a.Surplus = 0
	}
	a.Mode = mode
	a.Throttled = a.decide(p, 0).Throttled
	return nil
}

// Tick brings the account to now with the VMM's cumulative busy time per
// vCPU and returns the limit to enforce until the next tick. Samples
// should come every few seconds to a minute: the longer the gap, the
// longer a standard instance may overrun an empty bank before Tick holds
// it. A busy counter lower than the last sample means the VMM restarted
// (counters restart at each boot) and counts from zero.
func (a *Account) Tick(p Params, now time.Time, busyNS []uint64) Limit {
	dt := now.Sub(a.LastAt)
	if a.LastAt.IsZero() || dt <= 0 {
		a.LastAt, a.LastBusyNS = now, append([]uint64(nil), busyNS...)
		return a.decide(p, 0)
	}
	var used time.Duration
	for i, cur := range busyNS {
		var d uint64
		switch {
		case i >= len(a.LastBusyNS):
			d = cur
		case cur >= a.LastBusyNS[i]:
			d = cur - a.LastBusyNS[i]
		default:
			d = cur
		}
		// No vCPU can be busy for longer than the wall-clock interval.
		used += min(time.Duration(d), dt)
	}
	spent := used.Minutes()
	earned := p.CreditsPerHour * dt.Hours()
	a.apply(p, earned-spent)
	a.LastAt, a.LastBusyNS = now, append([]uint64(nil), busyNS...)
	return a.decide(p, dt)
}

// apply adds net credits (earned minus spent) to the account.
func (a *Account) apply(p Params, net float64) {
	if net >= 0 {
		repay := min(a.Surplus, net) // earnings pay back surplus first
		a.Surplus -= repay
		a.Balance = min(a.Balance+net-repay, p.MaxBalance)
		return
	}
	need := -net
	fromLaunch := min(a.Launch, need)
	a.Launch -= fromLaunch
	need -= fromLaunch
	fromBank := min(a.Balance, need)
	a.Balance -= fromBank
	need -= fromBank
	if need > 0 && a.Mode == api.CreditsUnlimited {
		a.Surplus += need
		if over := a.Surplus - p.MaxBalance; over > 0 {
			a.SurplusCharged += over
			a.Surplus = p.MaxBalance
		}
	}
	// In standard mode the rest was an overrun of an empty bank within
	// one tick; the hold that decide now puts in place ends it.
}

// releaseWindow caps the sampling interval decide plans for: the daemon
// samples every few seconds, so a longer gap is a daemon that was away
// (or a test moving its clock), not the length of the next interval.
const releaseWindow = time.Minute

// decide sets and returns the limit until the next sample, interval being
// the length of the last one.
//
// A standard instance is held when its bank is empty. Once held, it is
// released only when the bank can pay for what the release allows: every
// vCPU at full speed until the next sample, less what that time earns.
// Releasing on any crumb of balance would not hold the instance at its
// baseline: the cgroup quota also covers the VMM's own threads, so a held
// guest's vCPUs use a little less than the baseline and the bank creeps
// above zero. Released at once, the instance would burst for a whole
// sample interval every other sample, averaging far above its baseline;
// the overrun beyond the bank would be forgiven each time.
func (a *Account) decide(p Params, interval time.Duration) Limit {
	have := a.Balance + a.Launch
	hold := a.Mode == api.CreditsStandard && have < empty
	if a.Mode == api.CreditsStandard && a.Throttled && !hold {
		burst := (float64(p.VCPUs) - p.BaselineCPUs()) * min(interval, releaseWindow).Minutes()
		hold = have < burst
	}
	a.Throttled = hold
	if !hold {
		return Limit{}
	}
	return Limit{Throttled: true, CPUs: p.BaselineCPUs()}
}

// API returns the account as describe shows it.
func (a *Account) API() *api.CreditSpecification {
	return &api.CreditSpecification{Mode: a.Mode, Balance: a.Balance, LaunchBalance: a.Launch,
		SurplusBalance: a.Surplus, SurplusCharged: a.SurplusCharged, Throttled: a.Throttled}
}
