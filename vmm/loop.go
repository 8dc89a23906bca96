package vmm

import (
	"sync"
	"sync/atomic"
)

// eventLoop runs everything that touches a device (a vCPU's port or MMIO
// exit, an ioeventfd kick, a tap becoming readable, an API request) one
// function at a time, in the order posted, so devices need no locks.
//
// It has no goroutine of its own. The goroutine that posts a function
// runs it at once if no other function is running, and then whatever was
// posted meanwhile; otherwise it queues the function for the goroutine
// that is running functions. A vCPU's port access is thus handled on the
// vCPU's own thread, and a queue kick on the goroutine that saw the
// ioeventfd fire, without a hand-over to another goroutine (two wake-ups
// of the Go scheduler per event, which add up on a 2-core host and show in
// latency). This is the "combining" pattern: mutual exclusion without a
// dedicated thread.
type eventLoop struct {
	running sync.Mutex // held by the goroutine running functions

	mu    sync.Mutex // guards queue and spare
	queue []func()
	spare []func() // the previous queue's array, for reuse

	stopped atomic.Bool

	quit chan struct{} // closed by stop
	done chan struct{} // closed once stop has waited for the running function
}

func newEventLoop() *eventLoop {
	return &eventLoop{quit: make(chan struct{}), done: make(chan struct{})}
}

// Post runs fn on the loop: now on this goroutine if the loop is idle,
// else soon on the goroutine running it. It drops fn if the loop has
// stopped. A function running on the loop may Post (the function runs
// after it); it must not call.
func (l *eventLoop) Post(fn func()) {
	l.mu.Lock()
	if l.stopped.Load() {
		l.mu.Unlock()
		return
	}
	l.queue = append(l.queue, fn)
	l.mu.Unlock()
	l.drain()
}

// drain runs queued functions until the queue is empty, unless another
// goroutine is running them. After letting go it looks again: a function
// queued just before it let go would otherwise wait for the next Post.
func (l *eventLoop) drain() {
	for {
		if !l.running.TryLock() {
			return // the holder runs what we queued
		}
		for {
			l.mu.Lock()
			if l.stopped.Load() || len(l.queue) == 0 {
				l.mu.Unlock()
				break
			}
			batch := l.queue
			l.queue, l.spare = l.spare[:0], nil
			l.mu.Unlock()
			for i, fn := range batch {
				if !l.stopped.Load() {
					fn()
				}
				batch[i] = nil
			}
			l.mu.Lock()
			if l.spare == nil {
				l.spare = batch[:0]
			}
			l.mu.Unlock()
		}
		l.running.Unlock()
		l.mu.Lock()
		more := !l.stopped.Load() && len(l.queue) > 0
		l.mu.Unlock()
		if !more {
			return
		}
	}
}

// call runs fn on the loop and waits for it. It reports false if the loop
// stopped first. done must have room for one value (it is sent to when fn
// has run, possibly on this goroutine). Never call it from a function
// running on the loop.
func (l *eventLoop) call(fn func(), done chan struct{}) bool {
	l.Post(func() { fn(); done <- struct{}{} })
	select {
	case <-done:
		return true
	case <-l.quit:
		// stop waited for the running function before closing done, so
		// done is settled once l.done is closed.
		<-l.done
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
}

// stop ends the loop after the function it is running, waits for it, and
// drops what is queued.
func (l *eventLoop) stop() {
	l.mu.Lock()
	if l.stopped.Load() {
		l.mu.Unlock()
		<-l.done
		return
	}
	l.stopped.Store(true)
	l.queue = nil
	l.mu.Unlock()
	close(l.quit)
	// Wait for the function running now, if any: whoever runs functions
	// holds running, and sees stopped before it runs another.
	l.running.Lock()
	close(l.done)
	l.running.Unlock()
}
