package credits

import (
	"math"
	"testing"
	"time"

	"gureum/api"
	"gureum/hypervisor/instancetype"
)

var t0 = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)

func params(t *testing.T, name string) Params {
	t.Helper()
	ty, err := instancetype.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParamsFor(ty)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// guest is a fake VMM: cumulative busy time per vCPU, driven by a fake
// clock, optionally capped by the cgroup quota the account asks for.
type guest struct {
	busy []uint64
	now  time.Time
}

// run advances the clock by d with each vCPU wanting util (0..1) of a
// CPU, limited by lim as the cgroup would limit the VMM.
func (g *guest) run(d time.Duration, util float64, lim Limit) {
	per := util * float64(d)
	if lim.Throttled {
		per = min(per, lim.CPUs*float64(d)/float64(len(g.busy)))
	}
	for i := range g.busy {
		g.busy[i] += uint64(per)
	}
	g.now = g.now.Add(d)
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestBurnWithNoCreditsIsHeldAtBaseline(t *testing.T) {
	p := params(t, "t3.nano") // 2 vCPUs, 5% each: 0.1 CPU
	a, err := NewAccount(p, api.CreditsStandard, t0)
	if err != nil {
		t.Fatal(err)
	}
	if a.Launch != 0 || a.Balance != 0 {
		t.Fatalf("T3 starts with %g launch, %g earned", a.Launch, a.Balance)
	}
	g := &guest{busy: make([]uint64, 2), now: t0}
	lim := a.Tick(p, g.now, g.busy)
	if !lim.Throttled || lim.CPUs != 0.1 {
		t.Fatalf("empty standard account not held: %+v", lim)
	}
	// An hour of a guest that wants 100% of both vCPUs, sampled every 10 s.
	start := append([]uint64(nil), g.busy...)
	for range 360 {
		g.run(10*time.Second, 1, lim)
		lim = a.Tick(p, g.now, g.busy)
	}
	if !lim.Throttled {
		t.Errorf("released while burning: %+v, account %+v", lim, a)
	}
	used := time.Duration(g.busy[0]-start[0]+g.busy[1]-start[1]).Seconds() / time.Hour.Seconds()
	if !near(used, 0.1, 0.005) { // within ±5 points of the 5% baseline per vCPU
		t.Errorf("used %.3f CPUs over the hour, want the 0.1 baseline", used)
	}
	if a.Balance > 0.5 {
		t.Errorf("balance %g grew while held", a.Balance)
	}
	if got := lim.QuotaMicros(100000); got != 10000 {
		t.Errorf("quota %d µs per 100 ms, want 10000", got)
	}
}

func TestIdleBalanceGrowsToTheCap(t *testing.T) {
	p := params(t, "t3.micro") // 12 per hour, cap 288
	a, _ := NewAccount(p, api.CreditsStandard, t0)
	g := &guest{busy: make([]uint64, 2), now: t0}
	a.Tick(p, g.now, g.busy)
	g.run(time.Hour, 0, Limit{})
	a.Tick(p, g.now, g.busy)
	if !near(a.Balance, 12, 1e-9) || a.Throttled {
		t.Fatalf("after an idle hour: %+v", a)
	}
	for range 48 * 12 { // two days in 5-minute samples
		g.run(5*time.Minute, 0, Limit{})
		a.Tick(p, g.now, g.busy)
	}
	if a.Balance != p.MaxBalance || p.MaxBalance != 288 {
		t.Errorf("balance %g, cap %g", a.Balance, p.MaxBalance)
	}
	// A burst now spends from the bank, at full speed, without a hold.
	lim := Limit{}
	for range 60 {
		g.run(time.Minute, 1, lim)
		lim = a.Tick(p, g.now, g.busy)
	}
	// An hour at 2 vCPUs x 100% spends 120 credits and earns 12.
	if !near(a.Balance, 288-120+12, 1e-6) || lim.Throttled {
		t.Errorf("after a one-hour burst: balance %g, %+v", a.Balance, lim)
	}
}

func TestHeldInstanceIsReleasedAfterIdling(t *testing.T) {
	p := params(t, "t3.small")
	a, _ := NewAccount(p, api.CreditsStandard, t0)
	g := &guest{busy: make([]uint64, 2), now: t0}
	lim := a.Tick(p, g.now, g.busy)
	for range 30 {
		g.run(time.Minute, 1, lim)
		lim = a.Tick(p, g.now, g.busy)
	}
	if !lim.Throttled {
		t.Fatal("not held")
	}
	for range 10 {
		g.run(time.Minute, 0, lim)
		lim = a.Tick(p, g.now, g.busy)
	}
	if lim.Throttled || !near(a.Balance, 24.0/6, 0.05) {
		t.Errorf("after 10 idle minutes: %+v balance %g", lim, a.Balance)
	}
}

func TestUnlimitedBurstsOnSurplusAndIsCharged(t *testing.T) {
	p := params(t, "t3.nano") // earn 6/h, cap 144
	a, _ := NewAccount(p, api.CreditsUnlimited, t0)
	g := &guest{busy: make([]uint64, 2), now: t0}
	lim := a.Tick(p, g.now, g.busy)
	for range 60 {
		g.run(time.Minute, 1, lim)
		lim = a.Tick(p, g.now, g.busy)
		if lim.Throttled {
			t.Fatal("unlimited instance held")
		}
	}
	// 120 spent, 6 earned: 114 surplus.
	if !near(a.Surplus, 114, 1e-6) || a.SurplusCharged != 0 {
		t.Fatalf("after an hour: %+v", a)
	}
	// Another hour: surplus would reach 228, over the 144 cap: 84 charged.
	for range 60 {
		g.run(time.Minute, 1, lim)
		lim = a.Tick(p, g.now, g.busy)
	}
	if !near(a.Surplus, 144, 1e-6) || !near(a.SurplusCharged, 84, 1e-6) {
		t.Fatalf("after two hours: %+v", a)
	}
	// Idle earnings pay surplus back before filling the bank.
	g.run(10*time.Hour, 0, lim)
	a.Tick(p, g.now, g.busy)
	if !near(a.Surplus, 84, 1e-6) || a.Balance != 0 {
		t.Fatalf("after 10 idle hours: %+v", a)
	}
	a.Stop(g.now)
	if a.Surplus != 0 || !near(a.SurplusCharged, 168, 1e-6) {
		t.Errorf("stop did not charge the outstanding surplus: %+v", a)
	}
}

func TestVMMRestartAndStopRetention(t *testing.T) {
	p := params(t, "t3.micro")
	a, _ := NewAccount(p, api.CreditsStandard, t0)
	a.Tick(p, t0, []uint64{uint64(time.Hour), uint64(time.Hour)})
	// The guest rebooted: counters restart lower. 30 s busy per vCPU in
	// the new boot is spent, not a huge wrapped delta.
	a.Tick(p, t0.Add(time.Hour), []uint64{uint64(30 * time.Second), uint64(30 * time.Second)})
	if !near(a.Balance, 12-1, 1e-9) {
		t.Fatalf("balance after a reboot: %g", a.Balance)
	}
	a.Stop(t0.Add(2 * time.Hour))
	a.Start(p, t0.Add(2*time.Hour+48*time.Hour))
	if !near(a.Balance, 11, 1e-9) {
		t.Errorf("two days stopped lost the bank: %g", a.Balance)
	}
	a.Stop(t0.Add(100 * time.Hour))
	a.Start(p, t0.Add(100*time.Hour+StandardRetention+time.Second))
	if a.Balance != 0 {
		t.Errorf("bank survived more than seven days stopped: %g", a.Balance)
	}
}

func TestModesAndTypes(t *testing.T) {
	p := params(t, "t3.large")
	if _, err := NewAccount(p, "burst", t0); api.CodeOf(err) != api.CodeInvalidParameterValue {
		t.Errorf("bad mode: %v", err)
	}
	m5, _ := instancetype.Lookup("m5.large")
	if _, err := ParamsFor(m5); err == nil {
		t.Error("m5.large has credit parameters")
	}
	a, _ := NewAccount(p, api.CreditsUnlimited, t0)
	a.Surplus = 10
	if err := a.SetMode(p, api.CreditsStandard); err != nil {
		t.Fatal(err)
	}
	if a.Surplus != 0 || a.SurplusCharged != 10 || !a.Throttled {
		t.Errorf("switch to standard: %+v", a)
	}
	if (Limit{}).QuotaMicros(100000) != -1 {
		t.Error("unthrottled limit has a quota")
	}
}
