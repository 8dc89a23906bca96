package ratelimit

import (
	"time"

	"gureum/storage"
)

// Clock is the time source of Disk: the real clock in production, a fake
// one in tests.
type Clock interface {
	Now() time.Time
	Sleep(d time.Duration)
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now is time.Now.
func (SystemClock) Now() time.Time { return time.Now() }

// Sleep is time.Sleep.
func (SystemClock) Sleep(d time.Duration) { time.Sleep(d) }

// Disk is a storage.Disk whose reads, writes and flushes first wait for
// the limiter. It blocks the calling goroutine, so it is for callers that
// own one (a copy job, a tool); the VMM's event loop must call Admit
// itself and defer the request with a timer instead.
type Disk struct {
	storage.Disk
	limiter *Limiter
	clock   Clock
}

// NewDisk wraps d. Optional abilities of d (discard, resize) are not
// passed through: callers that need them use d directly.
func NewDisk(d storage.Disk, l *Limiter, c Clock) *Disk {
	return &Disk{Disk: d, limiter: l, clock: c}
}

// wait blocks until the limiter admits an operation of n bytes.
func (d *Disk) wait(n int) {
	for {
		now := d.clock.Now()
		ok, at := d.limiter.Admit(now, int64(n))
		if ok {
			return
		}
		d.clock.Sleep(at.Sub(now))
	}
}

// ReadAt waits for the limiter, then reads.
func (d *Disk) ReadAt(p []byte, off int64) (int, error) {
	d.wait(len(p))
	return d.Disk.ReadAt(p, off)
}

// WriteAt waits for the limiter, then writes.
func (d *Disk) WriteAt(p []byte, off int64) (int, error) {
	d.wait(len(p))
	return d.Disk.WriteAt(p, off)
}

// Flush counts as one operation of no bytes, as EBS counts it.
func (d *Disk) Flush() error {
	d.wait(0)
	return d.Disk.Flush()
}
