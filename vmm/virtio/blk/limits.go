package blk

import (
	"time"

	"gureum/storage/ratelimit"
	"gureum/vmm/virtio"
)

// I/O limits on the event loop.
//
// The limiter answers "go" or "not before T" and never blocks. When it
// refuses the request at the head of the queue, the device keeps that
// popped chain in d.held and stops popping: the requests behind it stay in
// the available ring, so they complete later in the order the guest made
// them. A timer (a Go runtime timer, not a sleeping goroutine) fires at T
// and posts serve back to the event loop, which asks the limiter again.
// Nothing polls and nothing sleeps on the loop, so a throttled disk never
// delays the other devices.

// SetLimiter makes the device ask l before running each request; nil
// removes limits. The limiter may be shared with nothing else and may have
// its limits changed from any goroutine (ratelimit.Limiter is locked).
// Called on the event loop. A request already held is retried at once, so
// raising a limit takes effect without waiting for the old deadline.
func (d *Device) SetLimiter(l *ratelimit.Limiter) {
	d.limiter = l
	d.Retry()
}

// Retry asks the limiter again for a held request now instead of at its
// timer (after a limit changed). Called on the event loop.
func (d *Device) Retry() {
	if d.held == nil || d.queue == nil {
		return
	}
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	d.serve()
}

// admit asks the limiter for c. On a refusal it holds c and arms the timer.
func (d *Device) admit(c *virtio.Chain) bool {
	if d.limiter == nil {
		return true
	}
	ok, notBefore := d.limiter.Admit(time.Now(), chainDataBytes(c))
	if ok {
		return true
	}
	d.throttled.Add(1)
	held := *c
	d.held = &held
	d.arm(notBefore)
	return false
}

// arm schedules serve on the event loop at t. The epoch check makes a
// timer that fires after a Reset (or after a newer timer replaced it) do
// nothing.
func (d *Device) arm(t time.Time) {
	if d.timer != nil {
		d.timer.Stop()
	}
	if d.loop == nil {
		return
	}
	d.epoch++
	epoch, loop := d.epoch, d.loop
	d.timer = time.AfterFunc(time.Until(t), func() {
		loop.Post(func() {
			if d.epoch != epoch || d.held == nil || d.queue == nil {
				return
			}
			d.timer = nil
			d.serve()
		})
	})
}

// dropHeld forgets a held request and its timer.
func (d *Device) dropHeld() {
	d.epoch++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	d.held = nil
}

// chainDataBytes is what a request moves, for the bytes bucket: the
// readable bytes after the 16-byte header (a write's data) plus the
// writable bytes before the status byte (a read's data). Flushes and
// GET_ID cost one operation and almost no bytes.
func chainDataBytes(c *virtio.Chain) int64 {
	var n int64
	if r := c.ReadableLen(); r > headerSize {
		n += int64(r - headerSize)
	}
	if w := c.WritableLen(); w > 1 {
		n += int64(w - 1)
	}
	return n
}
