// Package ratelimit caps a drive's I/O the way an EBS volume type does: so
// many operations per second and so many bytes per second, each with a
// burst allowance.
//
// Each cap is a token bucket. Tokens drip into the bucket at the sustained
// rate and pile up to the bucket's capacity (the burst); a request takes
// tokens out, one per operation from the ops bucket and one per byte from
// the bytes bucket. An idle drive therefore saves up at most one burst, and
// over any window of length T a drive completes at most
// burst + rate×T worth of I/O (plus, for the bytes bucket, the overshoot of
// one request larger than the whole bucket; see Admit).
//
// The limiter never sleeps. Admit answers "go" or "not before T", so the
// virtio-blk device, which runs on the VMM's single event loop, can park a
// request and arm a timer for T instead of stalling every other device.
// Disk wraps a storage.Disk for callers that own their goroutine and may
// block (tools, copy jobs).
package ratelimit

import (
	"math"
	"sync"
	"time"
)

// Limits are a drive's caps. A zero rate means that dimension is not
// limited. A zero burst means "the rate's worth of one tenth of a second",
// enough to absorb the jitter of a busy host without letting a drive run
// ahead of its rate noticeably.
type Limits struct {
	// OpsPerSecond is the sustained IOPS cap.
	OpsPerSecond float64
	// OpsBurst is how many operations an idle drive may save up.
	OpsBurst float64
	// BytesPerSecond is the sustained throughput cap.
	BytesPerSecond float64
	// BytesBurst is how many bytes an idle drive may save up.
	BytesBurst float64
}

// Unlimited is Limits that admit everything at once.
var Unlimited = Limits{}

// bucket is one token bucket. A rate of zero disables it.
type bucket struct {
	rate     float64 // tokens per second
	capacity float64 // most tokens the bucket holds
	tokens   float64 // may be negative after an oversized request
	last     time.Time
}

func newBucket(rate, burst float64, now time.Time) bucket {
	if rate <= 0 || math.IsNaN(rate) {
		return bucket{last: now}
	}
	if burst <= 0 || math.IsNaN(burst) {
		burst = rate / 10
	}
	if burst < 1 {
		burst = 1 // a bucket must hold at least one operation or byte
	}
	return bucket{rate: rate, capacity: burst, tokens: burst, last: now}
}

// refill adds the tokens that dripped in since the last call. A clock
// that went backwards adds nothing.
func (b *bucket) refill(now time.Time) {
	if dt := now.Sub(b.last); dt > 0 {
		b.tokens = math.Min(b.capacity, b.tokens+b.rate*dt.Seconds())
		b.last = now
	}
}

// wait is how long from now until the bucket can pay cost. A cost larger
// than the bucket only needs a full bucket: it then drives the balance
// negative, and later requests wait for the debt to be repaid. Without
// that rule a 1 MiB request on a drive whose bucket holds 512 KiB would
// wait forever.
func (b *bucket) wait(cost float64) time.Duration {
	if b.rate == 0 {
		return 0
	}
	need := math.Min(cost, b.capacity)
	if b.tokens >= need {
		return 0
	}
	secs := (need - b.tokens) / b.rate
	d := time.Duration(math.Ceil(secs * float64(time.Second)))
	if d < 1 {
		d = 1
	}
	return d
}

func (b *bucket) take(cost float64) {
	if b.rate != 0 {
		b.tokens -= cost
	}
}

// Limiter is the pair of buckets of one drive. Any goroutine may call its
// methods; a mutex keeps the buckets consistent. Time is always passed in,
// so tests drive it with a fake clock and the event loop uses the time it
// already read.
type Limiter struct {
	mu     sync.Mutex
	limits Limits // guarded by mu
	ops    bucket // guarded by mu
	bytes  bucket // guarded by mu
}

// New returns a limiter with full buckets at now.
func New(l Limits, now time.Time) *Limiter {
	lim := &Limiter{}
	lim.SetLimits(l, now)
	return lim
}

// SetLimits changes the caps at run time, for example after a volume's
// type or provisioned IOPS changed. Buckets restart full at the new
// capacity, except that a debt (negative balance) is kept, so changing
// limits cannot be used to skip a wait.
func (l *Limiter) SetLimits(lim Limits, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	oldOps, oldBytes := l.ops, l.bytes
	l.limits = lim
	l.ops = newBucket(lim.OpsPerSecond, lim.OpsBurst, now)
	l.bytes = newBucket(lim.BytesPerSecond, lim.BytesBurst, now)
	if oldOps.tokens < 0 && l.ops.rate != 0 {
		l.ops.tokens = oldOps.tokens
	}
	if oldBytes.tokens < 0 && l.bytes.rate != 0 {
		l.bytes.tokens = oldBytes.tokens
	}
}

// Limits returns the caps in force.
func (l *Limiter) Limits() Limits {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limits
}

// Admit asks to run one operation moving n bytes at now (n is 0 for a
// flush). If both buckets can pay, it charges them and returns true. If
// not, it charges nothing and returns the earliest time at which the same
// request would be admitted: the caller keeps the request and asks again
// then. The answer is exact unless other requests are admitted in between
// or the limits change.
func (l *Limiter) Admit(now time.Time, n int64) (ok bool, notBefore time.Time) {
	if n < 0 {
		n = 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops.refill(now)
	l.bytes.refill(now)
	w := max(l.ops.wait(1), l.bytes.wait(float64(n)))
	if w > 0 {
		return false, now.Add(w)
	}
	l.ops.take(1)
	l.bytes.take(float64(n))
	return true, now
}
