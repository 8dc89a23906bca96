package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"gureum/vmm/guestmem"
)

// A split virtqueue (virtio 1.x, 2.7) is three areas of guest memory that the
// driver allocates and the device only reads or writes through Queue:
//
//	descriptor table  Size entries of 16 bytes: addr u64, len u32, flags u16, next u16
//	available ring    flags u16, idx u16, ring[Size] u16, used_event u16
//	used ring         flags u16, idx u16, ring[Size] {id u32, len u32}, avail_event u16
//
// The driver puts the head index of a descriptor chain in the available ring
// and bumps avail.idx; the device takes it (Pop), does the work, puts the head
// and the byte count on the used ring and bumps used.idx (Push), then maybe
// interrupts (NeedsInterrupt). Both idx fields are free-running 16-bit
// counters; a ring slot is idx modulo Size.

// Descriptor flags.
const (
	descFlagNext     = 1 // the chain continues at desc.next
	descFlagWrite    = 2 // the device writes this buffer (otherwise reads it)
	descFlagIndirect = 4 // the buffer is a table of descriptors
)

// availFlagNoInterrupt is VIRTQ_AVAIL_F_NO_INTERRUPT: the driver asks not to
// be interrupted (a hint, ignored when event idx is negotiated).
const availFlagNoInterrupt = 1

// MaxQueueSize is the largest queue size the split ring format allows.
const MaxQueueSize = 32768

// MaxChainBytes bounds the sum of all buffer lengths in one chain, so that
// byte counts fit the used ring's 32-bit len field.
const MaxChainBytes = 1<<32 - 1

const descSize = 16

// Errors a device sees for a malformed chain (wrapped with detail).
var (
	// ErrBadChain is returned by Pop for a descriptor chain that breaks
	// the rules of the split ring.
	ErrBadChain = errors.New("malformed descriptor chain")
	// ErrChainTooShort is returned by Chain.ReadFrom and Chain.WriteTo when
	// the chain's buffers end before the requested bytes were copied.
	ErrChainTooShort = errors.New("descriptor chain too short")
	// ErrBadQueue is returned by Validate for a queue the driver
	// configured with a bad size or ring address.
	ErrBadQueue = errors.New("bad queue configuration")
)

// Queue is one split virtqueue as the driver configured it (virtio 1.x, 2.7).
//
// A Queue is used only as device code (under the event loop's device
// lock). The guest writes the same rings concurrently from its vCPUs, so
// every field read from guest memory is read once and treated as hostile.
type Queue struct {
	Size                          uint16 // as set by the driver (power of two, <= max)
	Ready                         bool   // queue_enable was written 1 and Validate passed
	DescAddr, AvailAddr, UsedAddr uint64 // guest-physical ring addresses

	lastAvail uint16 // next avail ring slot the device will take
	nextUsed  uint16 // used.idx the device will publish on the next Push

	eventIdx      bool   // VIRTIO_F_EVENT_IDX negotiated
	signalledUsed uint16 // nextUsed when NeedsInterrupt last ran
	pushed        bool   // something was pushed since NeedsInterrupt last ran

	broken bool   // a ring-level fault was seen; Pop yields nothing until Reset
	errors uint64 // malformed chains and ring faults
}

// EnableEventIdx switches the queue to VIRTIO_F_EVENT_IDX semantics: used
// and avail events replace the flag-based notification hints. The transport
// calls it on activation when the feature was negotiated.
func (q *Queue) EnableEventIdx(on bool) { q.eventIdx = on }

// Validate checks the configuration the driver wrote before the queue is
// enabled: Size a power of two no larger than max, each ring aligned as the
// spec requires (16, 2 and 4 bytes) and wholly inside one RAM region. A
// queue that fails must stay disabled.
func (q *Queue) Validate(mem *guestmem.Memory, max uint16) error {
	n := uint64(q.Size)
	if n == 0 || n > uint64(max) || n > MaxQueueSize || n&(n-1) != 0 {
		return fmt.Errorf("%w: size %d (max %d)", ErrBadQueue, q.Size, max)
	}
	rings := []struct {
		name        string
		addr, align uint64
		len         uint64
	}{
		{"descriptor table", q.DescAddr, 16, descSize * n},
		{"available ring", q.AvailAddr, 2, 6 + 2*n},
		{"used ring", q.UsedAddr, 4, 6 + 8*n},
	}
	for _, r := range rings {
		if r.addr%r.align != 0 {
			return fmt.Errorf("%w: %s at %#x not %d-byte aligned", ErrBadQueue, r.name, r.addr, r.align)
		}
		if _, err := mem.Slice(r.addr, r.len); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrBadQueue, r.name, err)
		}
	}
	return nil
}

// Reset returns the queue to its state before the driver configured it:
// not ready, no addresses, ring positions and counters zero. Size is kept;
// the transport sets it back to the device's maximum.
func (q *Queue) Reset() {
	*q = Queue{Size: q.Size}
}

// Errors counts malformed chains and ring faults seen since the last Reset.
func (q *Queue) Errors() uint64 { return q.errors }

// Broken reports whether the queue saw a fault it cannot recover from (its
// rings became unreadable, or the driver moved avail.idx more than Size
// ahead). A broken queue yields nothing until the driver resets the device.
func (q *Queue) Broken() bool { return q.broken }

// fenceWord is the target of memoryFence's locked add.
var fenceWord uint32

// memoryFence orders the plain loads and stores before it against those
// after it, as seen by the guest's vCPUs. An atomic read-modify-write is a
// full barrier on amd64 (a LOCK-prefixed instruction) and is never moved by
// the compiler.
func memoryFence() { atomic.AddUint32(&fenceWord, 1) }

// availIdx reads avail.idx once. The fence after it keeps the ring-entry and
// descriptor reads that follow from being done before it (the driver writes
// those first, then the index).
func (q *Queue) availIdx(mem *guestmem.Memory) (uint16, error) {
	v, err := mem.Uint16(q.AvailAddr + 2)
	memoryFence()
	return v, err
}

// fault marks the queue broken.
func (q *Queue) fault() {
	q.broken = true
	q.errors++
}

// Pop takes the next available chain. ok is false when there is nothing to
// take: the ring is empty, the queue is not ready, or it is broken (see
// Broken); err is then nil.
//
// When ok is true and err is not nil, the chain was malformed (a descriptor
// outside guest RAM, a loop, more descriptors than allowed, a bad indirect
// table, a readable buffer after a writable one, lengths too large). Its
// head is consumed all the same, so the device returns it with
// Push(c.Head, 0) and counts a device error. Pop never panics on any guest
// input.
func (q *Queue) Pop(mem *guestmem.Memory) (c Chain, ok bool, err error) {
	if !q.Ready || q.broken || q.Size == 0 {
		return Chain{}, false, nil
	}
	avail, err := q.availIdx(mem)
	if err != nil {
		q.fault()
		return Chain{}, false, nil
	}
	if avail == q.lastAvail && q.eventIdx {
		// About to go idle: ask the driver to kick at the next buffer it
		// adds (avail_event), then look again, because it may have added
		// one between our read and our write and not kicked.
		if err := mem.PutUint16(q.availEventAddr(), q.lastAvail); err != nil {
			q.fault()
			return Chain{}, false, nil
		}
		memoryFence()
		if avail, err = q.availIdx(mem); err != nil {
			q.fault()
			return Chain{}, false, nil
		}
	}
	pending := avail - q.lastAvail // wraps correctly on 16-bit counters
	if pending == 0 {
		return Chain{}, false, nil
	}
	if pending > q.Size {
		// The driver cannot have more chains outstanding than ring slots.
		q.fault()
		return Chain{}, false, nil
	}
	slot := uint64(q.lastAvail % q.Size)
	head, err := mem.Uint16(q.AvailAddr + 4 + 2*slot)
	if err != nil {
		q.fault()
		return Chain{}, false, nil
	}
	q.lastAvail++
	c, err = walkChain(mem, q.DescAddr, q.Size, head)
	if err != nil {
		q.errors++
		return Chain{Head: head}, true, err
	}
	return c, true, nil
}

// Push puts head on the used ring with the number of bytes written into the
// chain's writable buffers. The element is written before used.idx, with a
// fence between, so the driver never sees an index covering a stale element.
func (q *Queue) Push(mem *guestmem.Memory, head uint16, written uint32) error {
	if q.Size == 0 {
		return fmt.Errorf("push on unconfigured queue")
	}
	slot := uint64(q.nextUsed % q.Size)
	elem, err := mem.Slice(q.UsedAddr+4+8*slot, 8)
	if err != nil {
		q.fault()
		return fmt.Errorf("push used element: %w", err)
	}
	binary.LittleEndian.PutUint32(elem[0:], uint32(head))
	binary.LittleEndian.PutUint32(elem[4:], written)
	memoryFence()
	q.nextUsed++
	if err := mem.PutUint16(q.UsedAddr+2, q.nextUsed); err != nil {
		q.fault()
		return fmt.Errorf("push used index: %w", err)
	}
	q.pushed = true
	return nil
}

// usedEventAddr is where the driver's used_event sits (VIRTIO_F_EVENT_IDX):
// after the available ring's flags, idx and Size entries.
func (q *Queue) usedEventAddr() uint64 { return q.AvailAddr + 4 + 2*uint64(q.Size) }

// availEventAddr is where the device's avail_event sits: after the used
// ring's flags, idx and Size 8-byte entries.
func (q *Queue) availEventAddr() uint64 { return q.UsedAddr + 4 + 8*uint64(q.Size) }

// NeedsInterrupt reports whether the driver wants an interrupt for what was
// pushed since the last call. Without event idx the driver's
// VIRTQ_AVAIL_F_NO_INTERRUPT flag decides; with VIRTIO_F_EVENT_IDX the driver
// names the used index (used_event) whose crossing it wants to hear about.
// Call it after each Push, or once after a batch of them.
func (q *Queue) NeedsInterrupt(mem *guestmem.Memory) bool {
	if !q.pushed {
		return false
	}
	q.pushed = false
	// Our used.idx store must be visible before we read the driver's
	// suppression hint, or both sides could decide the other will act.
	memoryFence()
	old, now := q.signalledUsed, q.nextUsed
	q.signalledUsed = now
	if !q.eventIdx {
		flags, err := mem.Uint16(q.AvailAddr)
		if err != nil {
			return true // an interrupt too many is harmless
		}
		return flags&availFlagNoInterrupt == 0
	}
	event, err := mem.Uint16(q.usedEventAddr())
	if err != nil {
		return true
	}
	// Interrupt if used_event lies in [old, now): the driver asked to hear
	// when the device passes used_event, and this batch passed it.
	return now-event-1 < now-old
}

// Describe reports the ring positions as the device and the driver see
// them, for diagnosing a stall: a driver's avail.idx ahead of the
// device's position with no work in flight means a lost kick, a used.idx
// the driver has not caught up with means a lost interrupt. mem is read
// once, as always.
func (q *Queue) Describe(mem *guestmem.Memory) string {
	if !q.Ready {
		return "not ready"
	}
	s := fmt.Sprintf("size=%d device: next avail %d, next used %d, signalled used %d", q.Size, q.lastAvail, q.nextUsed, q.signalledUsed)
	if avail, err := mem.Uint16(q.AvailAddr + 2); err == nil {
		flags, _ := mem.Uint16(q.AvailAddr)
		s += fmt.Sprintf("; driver: avail.idx %d, avail.flags %#x", avail, flags)
	}
	if used, err := mem.Uint16(q.UsedAddr + 2); err == nil {
		s += fmt.Sprintf(", used.idx %d", used)
	}
	if q.eventIdx {
		usedEvent, _ := mem.Uint16(q.usedEventAddr())
		availEvent, _ := mem.Uint16(q.availEventAddr())
		s += fmt.Sprintf(", used_event %d, avail_event %d", usedEvent, availEvent)
	}
	if q.broken || q.errors != 0 {
		s += fmt.Sprintf("; broken=%t errors=%d", q.broken, q.errors)
	}
	return s
}
