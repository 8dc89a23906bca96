// Package virtiotest is the driver side of virtio for tests: it lays out
// split rings in a guest memory, publishes descriptor chains the way a guest
// driver would (including malformed ones), reads back the used ring, and
// fakes the machine a device sees (MSI controller, ioeventfd hub, event
// loop). Device tests build on it so that each test reads like a driver.
package virtiotest

import (
	"encoding/binary"
	"fmt"

	"gureum/vmm/guestmem"
	"gureum/vmm/virtio"
)

// Descriptor flags as the driver writes them.
const (
	DescNext     = 1
	DescWrite    = 2
	DescIndirect = 4
)

// NewMemory returns size bytes of guest RAM at guest-physical address 0.
func NewMemory(size int) *guestmem.Memory {
	return guestmem.FromRegions(guestmem.Region{GPA: 0, Data: make([]byte, size)})
}

// Seg is one buffer a test driver puts in a chain.
type Seg struct {
	Addr     uint64
	Len      uint32
	Writable bool
}

// Ring is a driver's view of one split virtqueue. Descriptors are handed out
// round-robin from the table, which is enough for tests that keep fewer
// than Size descriptors in flight.
type Ring struct {
	Mem                           *guestmem.Memory
	Size                          uint16
	DescAddr, AvailAddr, UsedAddr uint64

	availIdx uint16 // next avail.idx to publish
	usedSeen uint16 // used elements already consumed by Used
	nextDesc uint16 // next descriptor slot to hand out
}

// NewRing places a ring of size entries at base (which must be 16-byte
// aligned): the descriptor table, then the available ring, then the used
// ring, each aligned. It returns the ring and the first address after it.
func NewRing(mem *guestmem.Memory, base uint64, size uint16) (*Ring, uint64) {
	n := uint64(size)
	r := &Ring{Mem: mem, Size: size, DescAddr: base}
	r.AvailAddr = base + 16*n
	r.UsedAddr = align(r.AvailAddr+6+2*n, 4)
	end := align(r.UsedAddr+6+8*n, 16)
	return r, end
}

func align(v, a uint64) uint64 { return (v + a - 1) &^ (a - 1) }

// Configure writes the ring's size and addresses into q and marks it ready,
// as a transport does when the driver enables the queue.
func (r *Ring) Configure(q *virtio.Queue) {
	q.Size, q.DescAddr, q.AvailAddr, q.UsedAddr, q.Ready = r.Size, r.DescAddr, r.AvailAddr, r.UsedAddr, true
}

// WriteDesc writes descriptor i of the table at table verbatim: tests use it
// to build hostile chains.
func (r *Ring) WriteDesc(table uint64, i uint16, addr uint64, length uint32, flags, next uint16) {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[0:], addr)
	binary.LittleEndian.PutUint32(b[8:], length)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
	must(r.Mem.WriteAt(b[:], table+16*uint64(i)))
}

// Publish puts head in the next available slot and bumps avail.idx.
func (r *Ring) Publish(head uint16) {
	must(r.Mem.PutUint16(r.AvailAddr+4+2*uint64(r.availIdx%r.Size), head))
	r.availIdx++
	must(r.Mem.PutUint16(r.AvailAddr+2, r.availIdx))
}

// SetAvailIdx writes avail.idx directly (for hostile tests).
func (r *Ring) SetAvailIdx(v uint16) {
	r.availIdx = v
	must(r.Mem.PutUint16(r.AvailAddr+2, v))
}

// AddChain writes segs as a chain of direct descriptors, publishes it and
// returns its head.
func (r *Ring) AddChain(segs ...Seg) uint16 {
	head := r.nextDesc
	for i, s := range segs {
		idx := r.nextDesc
		r.nextDesc = (r.nextDesc + 1) % r.Size
		var flags uint16
		if s.Writable {
			flags |= DescWrite
		}
		if i+1 < len(segs) {
			flags |= DescNext
		}
		r.WriteDesc(r.DescAddr, idx, s.Addr, s.Len, flags, r.nextDesc)
	}
	r.Publish(head)
	return head
}

// AddIndirect writes segs into an indirect table at table, points one
// descriptor at it, publishes that and returns its head.
func (r *Ring) AddIndirect(table uint64, segs ...Seg) uint16 {
	for i, s := range segs {
		var flags uint16
		if s.Writable {
			flags |= DescWrite
		}
		if i+1 < len(segs) {
			flags |= DescNext
		}
		r.WriteDesc(table, uint16(i), s.Addr, s.Len, flags, uint16(i+1))
	}
	head := r.nextDesc
	r.nextDesc = (r.nextDesc + 1) % r.Size
	r.WriteDesc(r.DescAddr, head, table, uint32(16*len(segs)), DescIndirect, 0)
	r.Publish(head)
	return head
}

// Used returns the next used element the device published, if any.
func (r *Ring) Used() (id, length uint32, ok bool) {
	idx, err := r.Mem.Uint16(r.UsedAddr + 2)
	must(err)
	if idx == r.usedSeen {
		return 0, 0, false
	}
	slot := uint64(r.usedSeen % r.Size)
	id, err = r.Mem.Uint32(r.UsedAddr + 4 + 8*slot)
	must(err)
	length, err = r.Mem.Uint32(r.UsedAddr + 8 + 8*slot)
	must(err)
	r.usedSeen++
	return id, length, true
}

// UsedIdx reads used.idx as the device last published it.
func (r *Ring) UsedIdx() uint16 {
	v, err := r.Mem.Uint16(r.UsedAddr + 2)
	must(err)
	return v
}

// SetAvailFlags writes avail.flags (1 = VIRTQ_AVAIL_F_NO_INTERRUPT).
func (r *Ring) SetAvailFlags(f uint16) { must(r.Mem.PutUint16(r.AvailAddr, f)) }

// SetUsedEvent writes used_event (VIRTIO_F_EVENT_IDX).
func (r *Ring) SetUsedEvent(v uint16) {
	must(r.Mem.PutUint16(r.AvailAddr+4+2*uint64(r.Size), v))
}

// AvailEvent reads avail_event as the device last wrote it.
func (r *Ring) AvailEvent() uint16 {
	v, err := r.Mem.Uint16(r.UsedAddr + 4 + 8*uint64(r.Size))
	must(err)
	return v
}

// must panics on an error that only a broken test layout can cause: the
// test driver writes only addresses it placed inside RAM itself.
func must(err error) {
	if err != nil {
		panic(fmt.Sprintf("virtiotest: ring outside test memory: %v", err))
	}
}
