package net

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"gureum/vmm/guestmem"
	"gureum/vmm/virtio"
)

// The receive path is event-driven from end to end:
//
//  1. The event loop's thread watches the tap's fd in its own epoll set
//     and calls onReadable when frames arrive (loopWaiter). Backends
//     without an fd, or a loop without fd watching, get a goroutine
//     instead (goWaiter): it parks in the Go poller until the backend is
//     readable, then posts onReadable to the loop. Neither ever reads.
//  2. On the loop, receive takes receive chains from the guest, reads a frame
//     with one readv straight into their buffers, returns them on the used
//     ring, and repeats until the tap is empty (EAGAIN). Then it re-arms
//     the waiter and interrupts the guest if the driver asked for it.
//  3. If the guest has no buffers left, receive stops without re-arming: the
//     frames wait in the tap's queue (the host kernel drops beyond its
//     length), and the guest's next kick on queue 0 resumes receive.
//
// Where a frame lands. Without MRG_RXBUF a frame must fit one chain (a
// driver that negotiated TSO posts 64 KiB chains). With MRG_RXBUF the driver
// posts small buffers and a frame spans as many chains as it needs; the
// first chain's header says how many (num_buffers). We cannot ask the tap
// how long the next frame is, so the readv offers every chain held plus a
// host overflow buffer behind them: a frame that fits the guest's buffers is
// never copied, and one that does not is still read whole. Its tail is then
// copied into further chains (MRG_RXBUF) or the frame is dropped (one chain
// too small), which a driver posting buffers of the right size never sees.

// rxBurst bounds the frames one onReadable moves before giving other work
// on the loop a turn; the waiter then comes straight back.
const rxBurst = 256

// rxSlot is one receive chain taken from the queue and not yet returned: its
// head and the guest memory of its writable buffers, in order.
type rxSlot struct {
	head uint16
	bufs [][]byte
	cap  int
}

// rxPartial is a frame read with MRG_RXBUF whose tail did not fit the chains
// held at the time; it waits for more chains.
type rxPartial struct {
	slots []rxSlot
	used  []int  // bytes of the frame in each slot
	tail  []byte // the rest of the frame, in the overflow buffer
	n     int    // whole frame, header included
}

// rxState is the receive side's state; used on the event loop only.
type rxState struct {
	held     []rxSlot   // chains taken from the queue, oldest first
	heldCap  int        // total capacity of held
	iov      [][]byte   // scratch for readv
	used     []int      // scratch: bytes of a frame per chain
	spare    [][][]byte // buffer lists of returned chains, for reuse
	inIOV    int        // slots of held that the last readv covered
	iovCap   int        // their capacity
	overflow []byte     // host buffer after the guest's in every readv
	partial  *rxPartial
	starved  bool // out of guest buffers; resume on a kick of queue 0
	failed   bool // the backend failed; receive is off until reset
}

func (r *rxState) reset() {
	*r = rxState{overflow: r.overflow, iov: r.iov[:0], used: r.used[:0]}
}

// spareBufs returns an empty buffer list to map a chain into, reusing one
// of a chain already returned when there is one.
func (r *rxState) spareBufs() [][]byte {
	if n := len(r.spare); n > 0 {
		b := r.spare[n-1]
		r.spare = r.spare[:n-1]
		return b
	}
	return nil
}

// onReadable runs on the loop when the waiter saw the backend become
// readable (err nil) or saw it fail. epoch ties it to the activation that
// started the waiter.
func (d *Device) onReadable(epoch uint64, err error) {
	if !d.active || epoch != d.epoch {
		return
	}
	if err != nil {
		d.counters.rxErrors.Add(1)
		d.rx.failed = true
		return
	}
	d.receive()
}

// receive moves frames from the backend into the guest until the backend
// is empty, the guest is out of buffers, or a burst is done.
func (d *Device) receive() {
	q := d.rxq
	if q == nil || d.rx.failed {
		return
	}
	defer d.signal(rxQueue, q)
	if d.rx.partial != nil && !d.finishPartial() {
		d.rx.starved = true
		return
	}
	for range rxBurst {
		want := 1
		if d.mergeable {
			want = maxPacket
		}
		if !d.takeChains(want) {
			d.rx.starved = true
			return
		}
		if d.rx.overflow == nil {
			d.rx.overflow = make([]byte, maxPacket+1)
		}
		n, err := d.backend.ReadPacket(d.buildRxIOV()...)
		if errors.Is(err, syscall.EAGAIN) {
			d.waiter.arm()
			return
		}
		if err != nil || n == 0 {
			// Read errors other than "empty", and end of file (a
			// socket backend whose peer left), mean the backend is
			// gone: it stays "readable", so retrying would spin.
			d.counters.rxErrors.Add(1)
			d.rx.failed = true
			return
		}
		d.place(n)
		if d.rx.partial != nil && !d.finishPartial() {
			d.rx.starved = true
			return
		}
	}
	d.waiter.again()
}

// takeChains takes receive chains from the queue until the held chains can
// take want bytes or the queue is empty. It reports whether any chain is
// held. Chains that cannot take a frame are returned empty and counted.
func (d *Device) takeChains(want int) bool {
	q, mem := d.rxq, d.env.Mem
	for d.rx.heldCap < want {
		c, ok, err := q.Pop(mem)
		if !ok {
			break
		}
		var s rxSlot
		if err == nil {
			s, err = rxSlotOf(mem, &c, d.rx.spareBufs())
		}
		if err != nil {
			d.counters.rxErrors.Add(1)
			if err := q.Push(mem, c.Head, 0); err != nil {
				break
			}
			continue
		}
		d.rx.held = append(d.rx.held, s)
		d.rx.heldCap += s.cap
	}
	return len(d.rx.held) > 0
}

// rxSlotOf checks a receive chain and maps its buffers. Receive chains are
// device-writable only, large enough for the header (which must land in
// the first chain of a frame), and few enough buffers for one readv.
func rxSlotOf(mem *guestmem.Memory, c *virtio.Chain, spare [][]byte) (rxSlot, error) {
	if c.ReadableLen() != 0 {
		return rxSlot{}, fmt.Errorf("receive chain %d has device-readable buffers", c.Head)
	}
	if len(c.Buffers) >= maxIOV {
		return rxSlot{}, fmt.Errorf("receive chain %d has %d buffers", c.Head, len(c.Buffers))
	}
	s := rxSlot{head: c.Head, bufs: spare[:0]}
	for _, b := range c.Buffers {
		g, err := mem.Slice(b.Addr, uint64(b.Len))
		if err != nil {
			return rxSlot{}, fmt.Errorf("receive chain %d: %w", c.Head, err)
		}
		s.bufs = append(s.bufs, g)
		s.cap += len(g)
	}
	if s.cap < hdrLen {
		return rxSlot{}, fmt.Errorf("receive chain %d holds %d bytes, less than a header", c.Head, s.cap)
	}
	return s, nil
}

// buildRxIOV lists the buffers the next readv fills: the held chains (one
// without MRG_RXBUF, as many as a largest frame needs with it, within the
// readv limit), then the overflow buffer.
func (d *Device) buildRxIOV() [][]byte {
	r := &d.rx
	iov := r.iov[:0]
	r.inIOV, r.iovCap = 0, 0
	for _, s := range r.held {
		if len(iov)+len(s.bufs) >= maxIOV {
			break
		}
		iov = append(iov, s.bufs...)
		r.inIOV++
		r.iovCap += s.cap
		if !d.mergeable || r.iovCap >= maxPacket {
			break
		}
	}
	iov = append(iov, r.overflow)
	r.iov = iov
	return iov
}

// place hands the n-byte frame (header included) the last readv read to the
// guest, or keeps it as partial, or drops it.
func (d *Device) place(n int) {
	r := &d.rx
	switch {
	case n < hdrLen:
		d.counters.rxErrors.Add(1) // not from a tap: no header
		return
	case n > maxPacket:
		d.counters.rxDropped.Add(1) // larger than any frame we take
		return
	case n <= r.iovCap:
		used := r.used[:0]
		left := n
		for _, s := range r.held[:r.inIOV] {
			if left == 0 {
				break
			}
			m := min(left, s.cap)
			used = append(used, m)
			left -= m
		}
		r.used = used
		k := len(used)
		d.complete(r.held[:k], used, n)
		d.dropHeld(k)
	case !d.mergeable:
		// The one chain was too small. It keeps its place for the next
		// frame; what the readv wrote there is garbage the guest
		// never sees.
		d.counters.rxDropped.Add(1)
	default:
		// The readv filled the held chains, then put the rest at the
		// start of the overflow buffer.
		p := &rxPartial{n: n, tail: r.overflow[:n-r.iovCap]}
		for _, s := range r.held[:r.inIOV] {
			p.slots = append(p.slots, s)
			p.used = append(p.used, s.cap)
		}
		d.dropHeld(r.inIOV)
		r.partial = p
	}
}

// finishPartial copies the tail of the partial frame into further chains,
// and returns the frame to the guest once all of it is placed. It reports
// false if the guest ran out of chains first.
func (d *Device) finishPartial() bool {
	p := d.rx.partial
	for len(p.tail) > 0 {
		if !d.takeChains(1) {
			return false
		}
		s := d.rx.held[0]
		d.dropHeld(1)
		m := scatter(s.bufs, 0, p.tail)
		p.slots = append(p.slots, s)
		p.used = append(p.used, m)
		p.tail = p.tail[m:]
	}
	d.rx.partial = nil
	d.complete(p.slots, p.used, p.n)
	return true
}

// complete returns the chains of one frame to the guest, in order, after
// writing num_buffers into the header at the start of the first (the tap
// leaves that field alone).
func (d *Device) complete(slots []rxSlot, used []int, n int) {
	var nb [2]byte
	binary.LittleEndian.PutUint16(nb[:], uint16(len(slots)))
	scatter(slots[0].bufs, hdrNumBuffers, nb[:])
	for i, s := range slots {
		if err := d.rxq.Push(d.env.Mem, s.head, uint32(used[i])); err != nil {
			d.counters.rxErrors.Add(1)
			return
		}
		clear(s.bufs) // drop references to guest memory
		d.rx.spare = append(d.rx.spare, s.bufs[:0])
	}
	d.counters.rxPackets.Add(1)
	d.counters.rxBytes.Add(uint64(n - hdrLen))
}

// dropHeld forgets the first k held chains (returned, or moved to a
// partial frame).
func (d *Device) dropHeld(k int) {
	r := &d.rx
	for _, s := range r.held[:k] {
		r.heldCap -= s.cap
	}
	n := copy(r.held, r.held[k:])
	clear(r.held[n:])
	r.held = r.held[:n]
}

// scatter copies src into bufs starting off bytes in, as far as bufs reach,
// and returns the bytes copied.
func scatter(bufs [][]byte, off int, src []byte) int {
	done := 0
	for _, b := range bufs {
		if done == len(src) {
			break
		}
		if off >= len(b) {
			off -= len(b)
			continue
		}
		done += copy(b[off:], src[done:])
		off = 0
	}
	return done
}

// rxWaiter waits for the backend to become readable on the device's
// behalf; every wait ends in a call of onReadable on the loop.
type rxWaiter interface {
	// arm waits for the next arrival: receive read the backend empty.
	arm()
	// again calls onReadable again soon, after other work on the loop:
	// receive stopped after a burst with frames still queued.
	again()
	// stop ends the waiter; a call already posted is ignored by epoch.
	stop()
}

// fdBackend is a Backend with an fd that polls readable when a frame is
// queued (a tap).
type fdBackend interface {
	ReadFD() int
}

// startWaiter picks the waiter for the backend and the environment, and
// has it look at the backend once (frames may be queued already).
func startWaiter(b Backend, env virtio.Env, epoch uint64, onReadable func(uint64, error)) (rxWaiter, error) {
	if fb, ok := b.(fdBackend); ok && env.Watch != nil {
		w := &loopWaiter{loop: env.Loop, fn: func() { onReadable(epoch, nil) }}
		stop, err := env.Watch.WatchReadable(fb.ReadFD(), w.fn)
		if err != nil {
			return nil, err
		}
		w.cancel = stop
		return w, nil
	}
	w := startGoWaiter(b, env.Loop, epoch, onReadable)
	w.arm()
	return w, nil
}

// loopWaiter has the event loop's thread watch the backend's fd
// (edge-triggered), so a frame reaches receive with no goroutine between.
type loopWaiter struct {
	loop   virtio.Loop
	fn     func()
	cancel func()
}

func (w *loopWaiter) arm()   {} // the next frame's edge calls fn
func (w *loopWaiter) again() { w.loop.Post(w.fn) }
func (w *loopWaiter) stop()  { w.cancel() }

// goWaiter is the goroutine that waits for the backend to become
// readable. arm lets it wait once more; every wait ends in exactly one call
// of onReadable posted to the loop, unless stop came first.
type goWaiter struct {
	wake   chan struct{}
	cancel context.CancelFunc
}

// startGoWaiter starts the goroutine, unarmed. It may be called only on
// the loop.
func startGoWaiter(b Backend, loop virtio.Loop, epoch uint64, onReadable func(uint64, error)) *goWaiter {
	ctx, cancel := context.WithCancel(context.Background())
	w := &goWaiter{wake: make(chan struct{}, 1), cancel: cancel}
	go func() {
		for {
			select {
			case <-w.wake:
			case <-ctx.Done():
				return
			}
			err := b.WaitReadable(ctx)
			if ctx.Err() != nil {
				return
			}
			loop.Post(func() { onReadable(epoch, err) })
			if err != nil {
				return
			}
		}
	}()
	return w
}

// arm asks for one more wait. Arming an armed waiter does nothing.
func (w *goWaiter) arm() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// again waits once more; WaitReadable returns at once if frames are queued.
func (w *goWaiter) again() { w.arm() }

// stop ends the goroutine soon; a post already under way is ignored by its
// epoch. It does not wait: the goroutine may be blocked posting to the very
// loop that calls stop.
func (w *goWaiter) stop() { w.cancel() }
