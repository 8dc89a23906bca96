package service

import (
	"context"
	"time"

	"gureum/api"
	"gureum/hypervisor/billing"
	"gureum/hypervisor/credits"
	"gureum/hypervisor/instancetype"
	"gureum/hypervisor/lifecycle"
	"gureum/hypervisor/store"
)

// Billing prices caller's usage over [from, to) with the price list.
func (s *Service) Billing(caller Caller, from, to time.Time) (api.BillingReport, error) {
	var u billing.Usage
	err := s.store.View(func(tx store.Tx) error {
		var err error
		u, err = billing.Collect(tx, caller.AccountID)
		return err
	})
	if err != nil {
		return api.BillingReport{}, err
	}
	return billing.Compute(s.prices, from, to, u)
}

// creditLoop samples the busy time of every running burstable instance
// and enforces its CPU credit limit.
func (s *Service) creditLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.CreditEvery)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.TickCredits(s.ctx)
	}
}

// TickCredits brings the credit account of every running burstable
// instance up to now: it reads the VMM's per-vCPU busy time, lets the
// account earn and spend (credits.Account.Tick), records surplus charged
// for billing, and sets the VMM's cgroup CPU quota: the baseline when a
// standard instance's balance is empty, one CPU per vCPU otherwise.
func (s *Service) TickCredits(ctx context.Context) {
	var running []string
	s.store.View(func(tx store.Tx) error {
		all, err := lifecycle.List(tx)
		for _, st := range all {
			if st.State == lifecycle.Running && st.Op == nil {
				running = append(running, st.ID)
			}
		}
		return err
	})
	for _, id := range running {
		if err := s.tickOne(ctx, id); err != nil && ctx.Err() == nil {
			s.log.Debug("credit sample failed", "instance", id, "err", err)
		}
	}
}

func (s *Service) tickOne(ctx context.Context, id string) error {
	r, t, err := s.load(id)
	if err != nil || r.Credits == nil {
		return err
	}
	p, err := credits.ParamsFor(t)
	if err != nil {
		return err
	}
	mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	m, err := s.sup.Metrics(mctx, id)
	cancel()
	if err != nil {
		return err
	}
	busy := make([]uint64, len(m.VCPUs))
	for i, v := range m.VCPUs {
		busy[i] = v.BusyNS
	}
	var lim credits.Limit
	now := s.now()
	err = s.store.Update(func(tx store.Tx) error {
		r, err := getInstance(tx, id)
		if err != nil || r.Credits == nil {
			return err
		}
		before := r.Credits.SurplusCharged
		lim = r.Credits.Tick(p, now, busy)
		if err := billing.CreditsCharged(tx, id, r.Owner, r.Type, t.VCPUs, r.Credits.SurplusCharged-before, now); err != nil {
			return err
		}
		return putInstance(tx, r)
	})
	if err != nil {
		return err
	}
	return s.applyCreditLimit(id, t, lim)
}

// applyCreditLimit sets the VMM's CPU quota for lim, if it changed.
func (s *Service) applyCreditLimit(id string, t instancetype.Type, lim credits.Limit) error {
	info, err := s.sup.Get(id)
	if err != nil {
		return err
	}
	vcpus := info.Spec.VCPUs
	want := info.Limits
	want.CPUMilli = vcpus * 1000
	if lim.Throttled {
		// The baseline is a share of each of the type's vCPUs; a guest
		// given fewer vCPUs (MaxGuestVCPUs) gets the same total.
		want.CPUMilli = max(int(lim.CPUs*1000), 10)
	}
	if want == info.Limits {
		return nil
	}
	s.log.Info("CPU credit limit", "instance", id, "throttled", lim.Throttled, "cpu_milli", want.CPUMilli, "type", t.Name)
	return s.sup.SetLimits(id, want)
}
