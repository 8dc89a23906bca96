package virtio

import (
	"encoding/binary"
	"fmt"

	"gureum/vmm/guestmem"
)

// Buffer is one descriptor of a chain after validation: [Addr, Addr+Len)
// lies wholly inside one guest RAM region, so guestmem.Memory.Slice on it
// succeeds.
type Buffer struct {
	Addr     uint64
	Len      uint32
	Writable bool // the device writes it (VIRTQ_DESC_F_WRITE)
}

// Chain is one available descriptor chain, walked and checked. Its readable
// buffers all come before its writable ones.
type Chain struct {
	Head    uint16 // index of the head descriptor: what Push returns
	Buffers []Buffer
}

// ReadableLen is the total length of the readable (driver-to-device) buffers.
func (c *Chain) ReadableLen() uint64 {
	var n uint64
	for _, b := range c.Buffers {
		if !b.Writable {
			n += uint64(b.Len)
		}
	}
	return n
}

// WritableLen is the total length of the writable (device-to-driver) buffers.
func (c *Chain) WritableLen() uint64 {
	var n uint64
	for _, b := range c.Buffers {
		if b.Writable {
			n += uint64(b.Len)
		}
	}
	return n
}

// Gather copies the chain's readable bytes, starting skip bytes in, into
// dst. It returns the bytes copied and ErrChainTooShort if the readable part
// ended before dst was full. (Named Gather, not ReadFrom, because go vet
// reserves ReadFrom for io.ReaderFrom.)
func (c *Chain) Gather(mem *guestmem.Memory, dst []byte, skip uint64) (int, error) {
	return c.copyBuffers(mem, dst, skip, false)
}

// Scatter copies src into the chain's writable buffers, starting skip bytes
// into the writable part. It returns the bytes copied and ErrChainTooShort if
// the writable part ended before all of src was copied.
func (c *Chain) Scatter(mem *guestmem.Memory, src []byte, skip uint64) (int, error) {
	return c.copyBuffers(mem, src, skip, true)
}

// copyBuffers moves bytes between p and the buffers whose Writable flag is
// writable: into guest memory when writable, out of it otherwise.
func (c *Chain) copyBuffers(mem *guestmem.Memory, p []byte, skip uint64, writable bool) (int, error) {
	done := 0
	for _, b := range c.Buffers {
		if b.Writable != writable {
			continue
		}
		if done == len(p) {
			break
		}
		if skip >= uint64(b.Len) {
			skip -= uint64(b.Len)
			continue
		}
		g, err := mem.Slice(b.Addr+skip, uint64(b.Len)-skip)
		if err != nil {
			return done, fmt.Errorf("copy chain buffer: %w", err)
		}
		skip = 0
		var n int
		if writable {
			n = copy(g, p[done:])
		} else {
			n = copy(p[done:], g)
		}
		done += n
	}
	if done < len(p) {
		return done, fmt.Errorf("%w: %d of %d bytes", ErrChainTooShort, done, len(p))
	}
	return done, nil
}

// desc is one descriptor as read from guest memory (a private copy: the
// guest may rewrite the table while we walk it).
type desc struct {
	addr  uint64
	len   uint32
	flags uint16
	next  uint16
}

// readDesc copies descriptor i of the table at table.
func readDesc(mem *guestmem.Memory, table uint64, i uint16) (desc, error) {
	b, err := mem.Slice(table+descSize*uint64(i), descSize)
	if err != nil {
		return desc{}, err
	}
	var raw [descSize]byte
	copy(raw[:], b) // one read of the guest's bytes; parse only the copy
	return desc{
		addr:  binary.LittleEndian.Uint64(raw[0:]),
		len:   binary.LittleEndian.Uint32(raw[8:]),
		flags: binary.LittleEndian.Uint16(raw[12:]),
		next:  binary.LittleEndian.Uint16(raw[14:]),
	}, nil
}

// walkChain follows the chain starting at head in the descriptor table at
// descTable (size entries) and checks every rule a device relies on:
//
//   - every index is inside its table, and a chain visits at most as many
//     descriptors as the table holds (which is how a loop is caught: a
//     chain that revisits an entry must exceed that count);
//   - every buffer lies inside one guest RAM region;
//   - readable buffers come before writable ones;
//   - the lengths add up to at most MaxChainBytes;
//   - VIRTQ_DESC_F_INDIRECT appears only on the head, without NEXT, and
//     points at a whole-descriptor table inside RAM whose entries are not
//     indirect themselves. The table need not be 16-byte aligned: the spec
//     asks that only of the ring's own table, and Linux's slab allocator
//     may hand out 8-byte aligned ones.
//
// Zero-length descriptors are accepted and left out of the chain.
func walkChain(mem *guestmem.Memory, descTable uint64, size uint16, head uint16) (Chain, error) {
	c := Chain{Head: head}
	if head >= size {
		return c, fmt.Errorf("%w: head %d outside queue of %d", ErrBadChain, head, size)
	}
	table, entries := descTable, uint32(size)
	idx := head
	indirect := false
	seenWritable := false
	var total uint64
	for count := uint32(0); ; count++ {
		if count >= entries {
			return c, fmt.Errorf("%w: more than %d descriptors (loop?)", ErrBadChain, entries)
		}
		d, err := readDesc(mem, table, idx)
		if err != nil {
			return c, fmt.Errorf("%w: descriptor %d: %w", ErrBadChain, idx, err)
		}
		if d.flags&descFlagIndirect != 0 {
			switch {
			case indirect:
				return c, fmt.Errorf("%w: nested indirect table", ErrBadChain)
			case count != 0 || d.flags&descFlagNext != 0:
				return c, fmt.Errorf("%w: indirect descriptor not alone in its chain", ErrBadChain)
			case d.len == 0 || d.len%descSize != 0 || d.len/descSize > MaxQueueSize:
				return c, fmt.Errorf("%w: indirect table of %d bytes", ErrBadChain, d.len)
			}
			if _, err := mem.Slice(d.addr, uint64(d.len)); err != nil {
				return c, fmt.Errorf("%w: indirect table: %w", ErrBadChain, err)
			}
			// Restart the walk at entry 0 of the indirect table; the
			// count restarts too (the loop's count++ brings it to 0).
			table, entries, idx, indirect = d.addr, d.len/descSize, 0, true
			count = ^uint32(0)
			continue
		}
		writable := d.flags&descFlagWrite != 0
		if !writable && seenWritable {
			return c, fmt.Errorf("%w: readable descriptor %d after a writable one", ErrBadChain, idx)
		}
		seenWritable = seenWritable || writable
		total += uint64(d.len)
		if total > MaxChainBytes {
			return c, fmt.Errorf("%w: chain longer than %d bytes", ErrBadChain, uint64(MaxChainBytes))
		}
		if d.len > 0 {
			if _, err := mem.Slice(d.addr, uint64(d.len)); err != nil {
				return c, fmt.Errorf("%w: buffer of descriptor %d: %w", ErrBadChain, idx, err)
			}
			c.Buffers = append(c.Buffers, Buffer{Addr: d.addr, Len: d.len, Writable: writable})
		}
		if d.flags&descFlagNext == 0 {
			return c, nil
		}
		if uint32(d.next) >= entries {
			return c, fmt.Errorf("%w: next index %d outside table of %d", ErrBadChain, d.next, entries)
		}
		idx = d.next
	}
}
