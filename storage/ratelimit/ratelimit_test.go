package ratelimit

import (
	"math"
	"sort"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// greedy runs a client that always has a request of size bytes waiting
// and retries exactly when the limiter says, for span of fake time. It
// returns the admission times.
func greedy(l *Limiter, size int64, span time.Duration) []time.Time {
	var admitted []time.Time
	now := t0
	for now.Before(t0.Add(span)) {
		ok, at := l.Admit(now, size)
		if ok {
			admitted = append(admitted, now)
			continue
		}
		if !at.After(now) {
			panic("limiter refused without a later time")
		}
		now = at
	}
	return admitted
}

// maxInWindow is the largest number of admissions inside any window of
// length w.
func maxInWindow(times []time.Time, w time.Duration) int {
	best, j := 0, 0
	for i := range times {
		for times[i].Sub(times[j]) >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

func TestOpsNeverExceedRatePlusBurst(t *testing.T) {
	for _, tc := range []struct {
		rate, burst float64
	}{
		{3000, 0}, {100, 50}, {16000, 16000}, {1, 1},
	} {
		l := New(Limits{OpsPerSecond: tc.rate, OpsBurst: tc.burst}, t0)
		burst := tc.burst
		if burst == 0 {
			burst = tc.rate / 10
		}
		times := greedy(l, 4096, 5*time.Second)
		for _, w := range []time.Duration{time.Millisecond, 100 * time.Millisecond, time.Second, 3 * time.Second} {
			limit := burst + tc.rate*w.Seconds() + 1
			if got := maxInWindow(times, w); float64(got) > limit {
				t.Errorf("rate %v burst %v: %d ops in a %v window, limit %v", tc.rate, tc.burst, got, w, limit)
			}
		}
		// A greedy client gets the rate, not much less.
		total := float64(len(times))
		want := tc.rate*5 + burst
		if math.Abs(total-want) > 0.01*want+1 {
			t.Errorf("rate %v burst %v: %v ops in 5 s, want about %v", tc.rate, tc.burst, total, want)
		}
	}
}

func TestBytesCapAndOversizedRequests(t *testing.T) {
	// 1 MiB/s with a 256 KiB bucket; requests of 1 MiB are bigger than
	// the bucket and must still get through, at the sustained rate.
	const rate = 1 << 20
	l := New(Limits{BytesPerSecond: rate, BytesBurst: 256 << 10}, t0)
	times := greedy(l, 1<<20, 10*time.Second)
	if n := len(times); n < 9 || n > 11 {
		t.Fatalf("%d one-MiB requests in 10 s at 1 MiB/s", n)
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	for i := 2; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < 990*time.Millisecond {
			t.Fatalf("requests %d and %d only %v apart", i-1, i, gap)
		}
	}
}

func TestRefusalChargesNothing(t *testing.T) {
	l := New(Limits{OpsPerSecond: 10, OpsBurst: 1}, t0)
	if ok, _ := l.Admit(t0, 0); !ok {
		t.Fatal("first op refused with a full bucket")
	}
	ok, at := l.Admit(t0, 0)
	if ok || at != t0.Add(100*time.Millisecond) {
		t.Fatalf("second op: ok=%v at %v, want refused until +100ms", ok, at.Sub(t0))
	}
	// Asking again and again before the time must not push it further.
	for i := 0; i < 5; i++ {
		if _, again := l.Admit(t0.Add(time.Duration(i)*time.Millisecond), 0); again != at {
			t.Fatalf("retry %d moved the time to %v", i, again.Sub(t0))
		}
	}
	if ok, _ := l.Admit(at, 0); !ok {
		t.Fatal("op refused at the promised time")
	}
}

func TestBothBucketsMustPay(t *testing.T) {
	l := New(Limits{OpsPerSecond: 1000, OpsBurst: 1000, BytesPerSecond: 4096, BytesBurst: 4096}, t0)
	if ok, _ := l.Admit(t0, 4096); !ok {
		t.Fatal("first 4 KiB refused")
	}
	ok, at := l.Admit(t0, 4096)
	if ok || at.Sub(t0) != time.Second {
		t.Fatalf("bytes bucket empty: ok=%v wait %v, want 1s", ok, at.Sub(t0))
	}
	// Zero-byte operations (flushes) only need the ops bucket.
	if ok, _ := l.Admit(t0, 0); !ok {
		t.Fatal("flush refused although the ops bucket is full")
	}
}

func TestSetLimitsAtRunTime(t *testing.T) {
	l := New(Limits{OpsPerSecond: 100}, t0)
	before := greedy(l, 0, time.Second)
	l.SetLimits(Limits{OpsPerSecond: 1000}, t0)
	after := greedy(l, 0, time.Second)
	if len(before) > 111 || len(after) < 1000 || len(after) > 1101 {
		t.Fatalf("100 IOPS gave %d ops, then 1000 IOPS gave %d ops in a second", len(before), len(after))
	}
	if got := l.Limits().OpsPerSecond; got != 1000 {
		t.Fatalf("Limits() = %v", got)
	}
	// A debt survives a change of limits.
	l = New(Limits{BytesPerSecond: 100, BytesBurst: 100}, t0)
	l.Admit(t0, 1000) // 900 bytes in debt
	l.SetLimits(Limits{BytesPerSecond: 100, BytesBurst: 200}, t0)
	if ok, at := l.Admit(t0, 1); ok || at.Sub(t0) < 9*time.Second {
		t.Fatalf("debt forgotten: ok=%v wait %v", ok, at.Sub(t0))
	}
}

func TestUnlimited(t *testing.T) {
	l := New(Unlimited, t0)
	for i := 0; i < 100000; i++ {
		if ok, _ := l.Admit(t0, 1<<30); !ok {
			t.Fatal("unlimited limiter refused")
		}
	}
}

func TestBackwardsClock(t *testing.T) {
	l := New(Limits{OpsPerSecond: 10, OpsBurst: 1}, t0)
	l.Admit(t0, 0)
	// A clock stepping back must neither add tokens nor panic.
	if ok, _ := l.Admit(t0.Add(-time.Hour), 0); ok {
		t.Fatal("clock going backwards refilled the bucket")
	}
}

// TestIdleSavesAtMostOneBurst lets a drive idle for a minute between
// greedy phases: the pause must not buy more than one burst.
func TestIdleSavesAtMostOneBurst(t *testing.T) {
	const rate, burst = 1000, 200
	l := New(Limits{OpsPerSecond: rate, OpsBurst: burst}, t0)
	var times []time.Time
	now := t0
	for phase := 0; phase < 3; phase++ {
		end := now.Add(time.Second)
		for now.Before(end) {
			if ok, at := l.Admit(now, 0); ok {
				times = append(times, now)
			} else {
				now = at
			}
		}
		now = now.Add(time.Minute) // idle
	}
	for _, w := range []time.Duration{time.Millisecond, 50 * time.Millisecond, time.Second} {
		if got, limit := maxInWindow(times, w), burst+rate*w.Seconds()+1; float64(got) > limit {
			t.Errorf("%d ops in a %v window after idling, limit %v", got, w, limit)
		}
	}
}
