package billing

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gureum/api"
	"gureum/hypervisor/instancetype"
	"gureum/hypervisor/store"
)

var t0 = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func update(t *testing.T, s store.Store, fn func(tx store.Tx) error) {
	t.Helper()
	if err := s.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func report(t *testing.T, s store.Store, owner string, from, to time.Time) api.BillingReport {
	t.Helper()
	var rep api.BillingReport
	err := s.View(func(tx store.Tx) error {
		u, err := Collect(tx, owner)
		if err != nil {
			return err
		}
		rep, err = Compute(DefaultPrices(), from, to, u)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// TestRunStopStartBilledToTheSecond meters a run of 125.4 s, a run of 30 s
// (billed as the 60 s minimum) and a run still going after 100 s.
func TestRunStopStartBilledToTheSecond(t *testing.T) {
	s := store.NewMemory()
	const id = "i-0123456789abcdef0"
	ms := time.Millisecond
	update(t, s, func(tx store.Tx) error { return InstanceStarted(tx, id, "acct", "m5.large", at(0)) })
	// A replayed start (daemon restarted mid-operation) adds nothing.
	update(t, s, func(tx store.Tx) error { return InstanceStarted(tx, id, "acct", "m5.large", at(5*time.Second)) })
	update(t, s, func(tx store.Tx) error { return InstanceStopped(tx, id, at(125*time.Second+400*ms)) })
	update(t, s, func(tx store.Tx) error { return InstanceStopped(tx, id, at(130*time.Second)) })
	update(t, s, func(tx store.Tx) error { return InstanceStarted(tx, id, "acct", "m5.large", at(200*time.Second)) })
	update(t, s, func(tx store.Tx) error { return InstanceStopped(tx, id, at(230*time.Second)) })
	update(t, s, func(tx store.Tx) error { return InstanceStarted(tx, id, "acct", "m5.large", at(300*time.Second)) })

	rep := report(t, s, "", t0, at(400*time.Second))
	if len(rep.Lines) != 1 {
		t.Fatalf("lines %+v", rep.Lines)
	}
	l := rep.Lines[0]
	if l.Quantity != 126+60+100 || l.Unit != UnitSeconds || l.Type != "m5.large" {
		t.Errorf("billed %v %s, want 286 seconds", l.Quantity, l.Unit)
	}
	if !near(l.Cost, 286*0.096/3600) || !near(rep.Total, l.Cost) {
		t.Errorf("cost %v, want %v", l.Cost, 286*0.096/3600)
	}
	// Stopped time costs nothing: a later period after a final stop.
	update(t, s, func(tx store.Tx) error { return InstanceStopped(tx, id, at(400*time.Second)) })
	if rep := report(t, s, "", at(400*time.Second), at(time.Hour)); len(rep.Lines) != 0 {
		t.Errorf("stopped instance billed: %+v", rep.Lines)
	}
}

func TestMinimumBelongsToThePeriodOfTheStart(t *testing.T) {
	r := Run{Type: "t3.micro", From: at(50 * time.Second), To: at(70 * time.Second)}
	if got := BilledSeconds(r, t0, at(60*time.Second)); got != 10+40 {
		t.Errorf("period with the start: %d", got)
	}
	if got := BilledSeconds(r, at(60*time.Second), at(time.Hour)); got != 10 {
		t.Errorf("period after the start: %d", got)
	}
	if got := BilledSeconds(r, at(time.Hour), at(2*time.Hour)); got != 0 {
		t.Errorf("period after the run: %d", got)
	}
}

func TestStorageBilledPerGBMonth(t *testing.T) {
	s := store.NewMemory()
	day := 24 * time.Hour
	update(t, s, func(tx store.Tx) error { return VolumeSized(tx, "vol-a", "acct", "gp3", 100, at(0)) })
	update(t, s, func(tx store.Tx) error { return VolumeSized(tx, "vol-a", "acct", "gp3", 100, at(day)) }) // no change
	update(t, s, func(tx store.Tx) error { return VolumeSized(tx, "vol-a", "acct", "gp3", 200, at(15*day)) })
	update(t, s, func(tx store.Tx) error { return VolumeDeleted(tx, "vol-a", at(20*day)) })
	update(t, s, func(tx store.Tx) error { return SnapshotSized(tx, "snap-a", "acct", 2<<30, at(0)) })
	update(t, s, func(tx store.Tx) error { return CreditsCharged(tx, "i-a", "acct", "t3.nano", 2, 120, at(day)) })
	update(t, s, func(tx store.Tx) error { return CreditsCharged(tx, "i-a", "acct", "t3.nano", 2, 60, at(40*day)) })
	rep := report(t, s, "acct", t0, at(30*day))
	want := map[string][2]float64{ // quantity, cost
		"vol-a":  {100*15.0/30 + 200*5.0/30, (50 + 100.0/3) * 0.08},
		"snap-a": {2, 2 * 0.05},
		"i-a":    {2, 2 * 0.05},
	}
	if len(rep.Lines) != len(want) {
		t.Fatalf("lines %+v", rep.Lines)
	}
	for _, l := range rep.Lines {
		w := want[l.ResourceID]
		if !near(l.Quantity, w[0]) || !near(l.Cost, w[1]) {
			t.Errorf("%s: %v %s costs %v, want %v costs %v", l.ResourceID, l.Quantity, l.Unit, l.Cost, w[0], w[1])
		}
	}
	if rep.Lines[0].Kind != "cpu-credits" || rep.Lines[2].Kind != "volume" {
		t.Errorf("lines not sorted by kind: %+v", rep.Lines)
	}
	if other := report(t, s, "someone-else", t0, at(30*day)); len(other.Lines) != 0 {
		t.Errorf("another owner sees %+v", other.Lines)
	}
}

func TestPricesFile(t *testing.T) {
	d := DefaultPrices()
	for _, ty := range instancetype.All() {
		if d.InstanceHourly[ty.Name] <= 0 {
			t.Errorf("no default price for %s", ty.Name)
		}
	}
	if !near(d.InstanceHourly["t3.micro"], 0.0104) || !near(d.InstanceHourly["m5.large"], 0.096) {
		t.Errorf("defaults: t3.micro %v m5.large %v", d.InstanceHourly["t3.micro"], d.InstanceHourly["m5.large"])
	}
	dir := t.TempDir()
	if p, err := LoadPrices(filepath.Join(dir, "none.json")); err != nil || p.InstanceHourly["m5.large"] != d.InstanceHourly["m5.large"] {
		t.Errorf("missing file: %v", err)
	}
	path := filepath.Join(dir, "prices.json")
	if err := os.WriteFile(path, []byte(`{"currency":"EUR","instance_hourly":{"m5.large":1.5},"volume_gb_month":{"gp3":0.2}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := LoadPrices(path)
	if err != nil {
		t.Fatal(err)
	}
	if p.Currency != "EUR" || p.InstanceHourly["m5.large"] != 1.5 || p.VolumeGBMonth["gp3"] != 0.2 ||
		p.InstanceHourly["c5.large"] != d.InstanceHourly["c5.large"] {
		t.Errorf("overlay: %+v", p)
	}
	if err := os.WriteFile(path, []byte(`{"instance_hourly":{"m5.large":-1}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPrices(path); err == nil {
		t.Error("negative price accepted")
	}
	if err := os.WriteFile(path, []byte(`{`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPrices(path); err == nil {
		t.Error("malformed file accepted")
	}
	if err := WritePrices(path, d); err != nil {
		t.Fatal(err)
	}
	if p, err := LoadPrices(path); err != nil || !near(p.InstanceHourly["m5.large"], 0.096) {
		t.Errorf("round trip: %v", err)
	}
}

func TestUnpricedTypeIsAnError(t *testing.T) {
	u := Usage{Instances: []InstanceUsage{{ID: "i-a", Runs: []Run{{Type: "z9.mega", From: t0}}}}}
	if _, err := Compute(DefaultPrices(), t0, at(time.Hour), u); err == nil {
		t.Error("an unpriced type was billed silently")
	}
	if _, err := Compute(DefaultPrices(), t0, t0, Usage{}); api.CodeOf(err) != api.CodeInvalidParameterValue {
		t.Errorf("empty period: %v", err)
	}
}

// TestMinimumIsATopUpOfTheRoundedRun checks the rule "per second, at least
// 60 s per start" on runs near the edges: the minimum is not added on top
// of a rounded-up second, and rounding happens once per run.
func TestMinimumIsATopUpOfTheRoundedRun(t *testing.T) {
	ms := time.Millisecond
	cases := []struct {
		length time.Duration
		want   int64
	}{
		{0, 60},
		{400 * ms, 60},
		{59*time.Second + 1*ms, 60},
		{60 * time.Second, 60},
		{60*time.Second + 1*ms, 61},
		{90*time.Second + 500*ms, 91},
		{125*time.Second + 400*ms, 126},
	}
	for _, c := range cases {
		r := Run{Type: "t3.micro", From: at(10 * time.Second), To: at(10*time.Second + c.length)}
		if got := BilledSeconds(r, t0, at(time.Hour)); got != c.want {
			t.Errorf("run of %v billed %d s, want %d", c.length, got, c.want)
		}
	}
}

// TestPeriodBoundaryAddsNoSecond splits a 90.5 s run at an instant that
// is not a whole number of seconds into it: the two periods together bill
// 91 s, as one period over the whole run does.
func TestPeriodBoundaryAddsNoSecond(t *testing.T) {
	ms := time.Millisecond
	r := Run{Type: "t3.micro", From: at(100 * ms), To: at(90*time.Second + 600*ms)}
	for _, split := range []time.Duration{200 * ms, 10*time.Second + 300*ms, 45 * time.Second, 90*time.Second + 550*ms} {
		a := BilledSeconds(r, t0, at(split))
		b := BilledSeconds(r, at(split), at(time.Hour))
		if a+b != 91 {
			t.Errorf("split at %v: %d + %d s, want 91 in all", split, a, b)
		}
	}
	// A 30.4 s run split in two still costs the 60 s minimum, all of the
	// top-up in the period of its start.
	short := Run{Type: "t3.micro", From: at(50 * time.Second), To: at(80*time.Second + 400*ms)}
	a := BilledSeconds(short, t0, at(60*time.Second+200*ms))
	b := BilledSeconds(short, at(60*time.Second+200*ms), at(time.Hour))
	if a+b != 60 || b != 20 {
		t.Errorf("short run split: %d + %d s, want 40 + 20", a, b)
	}
	// A run still going is billed as far as the period's end.
	open := Run{Type: "t3.micro", From: at(0)}
	if got := BilledSeconds(open, t0, at(75*time.Second+100*ms)); got != 76 {
		t.Errorf("running instance billed %d s after 75.1 s, want 76", got)
	}
}
