package vmm

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// eventLoop is the machine's device thread, and the lock that keeps device
// state consistent.
//
// The loop is one goroutine that sleeps in epoll_wait(2), a blocking
// system call that keeps its OS thread, on every fd a device waits for:
// the ioeventfds that carry the guest's queue kicks, the taps' receive
// sides, and an eventfd that wakes it for work posted from other
// goroutines (API requests, timers). When an fd becomes ready the kernel
// wakes that thread, which runs the device's function itself, at once.
// Nothing else is in between: no goroutine is woken and no Go scheduler
// hand-over happens on the path from a kick to the device and on to the
// guest's interrupt, which is the path that decides I/O latency. (QEMU's main loop and
// Firecracker's event manager are built the same way: one thread, one
// poll set.)
//
// devMu is the device lock. Device code runs only while it is held: on the
// loop thread for kicks, fd readiness and posted work, and on a vCPU
// thread for that vCPU's own port or MMIO access, which so needs no
// hand-over either. A vCPU thread never runs anything else; queued work
// stays the loop's.
type eventLoop struct {
	epfd   int
	wakefd int // eventfd: work was posted while the loop slept

	devMu sync.Mutex

	mu       sync.Mutex // guards the fields below
	queue    []func()
	sleeping bool // the thread is (about to be) asleep in epoll_wait: a post must wake it
	quitting bool
	stopped  bool

	wmu     sync.Mutex // guards watches, nextID, closing
	watches map[int32]*fdWatch
	nextID  int32
	closing []int // fds of removed watches, closed by the thread between batches

	running atomic.Bool // the thread has started and not yet ended
	done    chan struct{}
}

// fdWatch is one fd in the loop's poll set.
type fdWatch struct {
	id   int32
	fd   int
	fn   func()
	dead atomic.Bool // removed: events already fetched for it are ignored
}

// wakeID is the epoll data of the loop's own wake eventfd; watches get
// ids from 1 up.
const wakeID = 0

func newEventLoop() (*eventLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("event loop: epoll_create1: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("event loop: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeID}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, fmt.Errorf("event loop: epoll_ctl: %w", err)
	}
	return &eventLoop{epfd: epfd, wakefd: wakefd, watches: map[int32]*fdWatch{}, done: make(chan struct{})}, nil
}

// start runs the loop's thread.
func (l *eventLoop) start() {
	l.running.Store(true)
	go l.run()
}

func (l *eventLoop) run() {
	defer close(l.done)
	defer l.running.Store(false)
	events := make([]unix.EpollEvent, 64)
	var work []func()
	var yielded time.Time
	for {
		l.closeRemoved()
		l.mu.Lock()
		work, l.queue = l.queue, work[:0]
		idle := len(work) == 0
		if l.quitting {
			l.stopped = true
			l.mu.Unlock()
			return
		}
		l.sleeping = idle
		l.mu.Unlock()

		for i, fn := range work {
			l.devMu.Lock()
			fn()
			l.devMu.Unlock()
			work[i] = nil
		}
		if idle && time.Since(yielded) >= yieldEvery {
			runtime.Gosched() // keeps the P: see wait
			yielded = time.Now()
		}
		n, err := l.wait(events, idle)
		if err != nil {
			// Cannot happen with a valid epoll fd and buffer; say so
			// rather than spin.
			fmt.Fprintf(os.Stderr, "gureum-vmm: event loop: %v\n", err)
			return
		}
		for _, ev := range events[:n] {
			l.dispatch(ev.Fd)
		}
	}
}

// yieldEvery is how long, at least, the loop goes between two yields to
// Go's scheduler before a sleep (see wait): under the 10 ms after which
// Go's monitor takes its P.
const yieldEvery = 8 * time.Millisecond

// wait fetches the ready events of the poll set. With block (nothing was
// queued this turn) it sleeps in epoll_wait until some fd is ready;
// otherwise it only looks, so that work queued meanwhile runs after the
// fds ready now.
//
// The sleep is a plain blocking system call, not a park in Go's poller:
// a goroutine that parks leaves its thread searching for other goroutines
// for tens of microseconds, on a CPU the vCPU that was just interrupted
// needs, and its wake-up goes through the poller's thread; a thread in
// epoll_wait is gone from the CPU at once and is the one woken.
//
// The thread should keep its P (Go's right to run Go code) across its
// sleeps. Go's monitor (sysmon) takes the P from a goroutine that has gone
// 10 ms without passing through the scheduler, even while it sleeps in a
// system call, and a goroutine that only ever makes system calls never
// passes through it. Without help, then, every sleep after the first
// 10 ms lost the P: each wake-up took an idle P and woke the monitor,
// which ticked every 20 µs, took the P back at once and started a thread
// to poll the network: some 12,000 futex calls and 18,000 context
// switches a second in an echo flood, against QEMU's 0 and 4,400. So
// before a sleep, once yieldEvery has passed since the last time, the
// loop calls runtime.Gosched. The goroutine is not locked to its thread,
// so the same thread picks it up again at once; each call also wakes an
// idle thread to look for work, which is why it is not done at every
// sleep. With it: about 300 futex calls and 4,900 switches a second
// (docs/benchmarks.md). A loop idle for longer than 10 ms still loses its
// P, and its first wake-up pays for that once. The loop makes no timed
// wake-ups: an earlier version woke every 4 ms to yield, and L1's kernel
// under the nested test host panicked in most runs with it
// (docs/nested.md).
func (l *eventLoop) wait(events []unix.EpollEvent, block bool) (int, error) {
	timeout := 0
	if block {
		timeout = -1
	}
	var n int
	var err error
	for {
		n, err = unix.EpollWait(l.epfd, events, timeout)
		if err != unix.EINTR {
			break
		}
	}
	if block {
		l.mu.Lock()
		l.sleeping = false
		l.mu.Unlock()
	}
	if err != nil {
		return 0, fmt.Errorf("epoll_wait: %w", err)
	}
	return n, nil
}

// dispatch runs the function of the watch with this id, if it still lives.
func (l *eventLoop) dispatch(id int32) {
	if id == wakeID {
		var buf [8]byte
		unix.Read(l.wakefd, buf[:])
		return
	}
	l.wmu.Lock()
	w := l.watches[id]
	l.wmu.Unlock()
	if w == nil {
		return
	}
	l.devMu.Lock()
	if !w.dead.Load() {
		w.fn()
	}
	l.devMu.Unlock()
}

// closeRemoved closes the fds of removed watches. It runs on the thread
// between batches, so no function of that fd's watch is running and no
// event fetched for it remains.
func (l *eventLoop) closeRemoved() {
	l.wmu.Lock()
	fds := l.closing
	l.closing = nil
	l.wmu.Unlock()
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// watch adds fd to the poll set: fn runs on the loop, under the device
// lock, each time epoll reports it (level-triggered, or edge-triggered
// with edge). The returned function removes it; the loop owns the fd from
// now on and closes it after removal. A watch added while the fd is
// already ready reports at once.
func (l *eventLoop) watch(fd int, edge bool, fn func()) (remove func(), err error) {
	l.wmu.Lock()
	l.nextID++
	w := &fdWatch{id: l.nextID, fd: fd, fn: fn}
	l.watches[w.id] = w
	l.wmu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: w.id}
	if edge {
		ev.Events |= unix.EPOLLET
	}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.wmu.Lock()
		delete(l.watches, w.id)
		l.wmu.Unlock()
		return nil, fmt.Errorf("event loop: watch fd %d: %w", fd, err)
	}
	var once sync.Once
	return func() { once.Do(func() { l.remove(w) }) }, nil
}

// remove takes w out of the poll set and hands its fd to the thread for
// closing (or closes it here if the thread has ended). It may be called
// from any goroutine, with or without the device lock.
func (l *eventLoop) remove(w *fdWatch) {
	w.dead.Store(true)
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, w.fd, nil)
	l.wmu.Lock()
	delete(l.watches, w.id)
	l.closing = append(l.closing, w.fd)
	l.wmu.Unlock()
	l.mu.Lock()
	ended := l.stopped
	wake := l.takeSleeping()
	l.mu.Unlock()
	if ended {
		l.closeRemoved()
	} else if wake {
		l.wake()
	}
}

var eventfdAdd1 = [8]byte{1}

// takeSleeping reports whether the thread is (about to be) asleep and so
// must be woken, and clears the flag so that one wake-up is sent, not
// one per caller. l.mu must be held.
func (l *eventLoop) takeSleeping() bool {
	wake := l.sleeping
	l.sleeping = false
	return wake
}

func (l *eventLoop) wake() { unix.Write(l.wakefd, eventfdAdd1[:]) }

// Post queues fn to run on the loop, after what is already queued. It
// reports false, dropping fn, if the loop has stopped. Safe from any
// goroutine, the loop's included, and with the device lock held.
func (l *eventLoop) Post(fn func()) bool {
	l.mu.Lock()
	if l.stopped || l.quitting {
		l.mu.Unlock()
		return false
	}
	l.queue = append(l.queue, fn)
	wake := l.takeSleeping()
	l.mu.Unlock()
	if wake {
		l.wake()
	}
	return true
}

// call runs fn on the loop and waits for it. It reports false, without
// running fn, if the loop stopped first. Never call it from device code
// (the loop thread, or a vCPU thread inside its port or MMIO access).
func (l *eventLoop) call(fn func()) bool {
	ran := make(chan struct{}, 1)
	if !l.Post(func() { fn(); ran <- struct{}{} }) {
		return false
	}
	select {
	case <-ran:
		return true
	case <-l.done:
		// The thread ends only between functions, so ran is settled.
		select {
		case <-ran:
			return true
		default:
			return false
		}
	}
}

// access runs fn, a vCPU's own device access, on the calling thread under
// the device lock. It reports false, without running fn, once the loop
// has stopped: the machine is going away.
func (l *eventLoop) access(fn func()) bool {
	if !l.running.Load() {
		return false
	}
	l.devMu.Lock()
	fn()
	l.devMu.Unlock()
	return true
}

// stop ends the thread after the function it is running and waits for
// it; queued work is dropped. Then it closes the poll set. The loop must
// have been started.
func (l *eventLoop) stop() {
	l.mu.Lock()
	already := l.quitting
	l.quitting = true
	l.sleeping = false
	l.mu.Unlock()
	if already {
		<-l.done
		return
	}
	l.wake()
	<-l.done
	l.mu.Lock()
	l.queue = nil
	l.mu.Unlock()
	l.closeRemoved()
	unix.Close(l.epfd)
	unix.Close(l.wakefd)
}
