package virtio_test

import (
	"encoding/binary"
	"errors"
	"testing"

	"gureum/vmm/guestmem"
	"gureum/vmm/virtio"
)

// FuzzChainWalker fills guest RAM (two regions with a hole between, so
// buffers can straddle it) with the fuzz input, points a queue at it and
// pops every chain it can. It must never panic, and every buffer it returns
// must lie inside one RAM region.
func FuzzChainWalker(f *testing.F) {
	seed := make([]byte, 0x600)
	// avail: idx 2, ring {0, 1}
	binary.LittleEndian.PutUint16(seed[0x102:], 2)
	binary.LittleEndian.PutUint16(seed[0x106:], 1)
	// desc 0 -> desc 1, readable then writable
	putDesc(seed, 0, 0x400, 16, 1, 1)
	putDesc(seed, 1, 0x410, 16, 2, 0)
	// desc 1 reused as indirect pointing at 0x500
	f.Add(uint8(3), seed)
	loop := append([]byte(nil), seed...)
	putDesc(loop, 1, 0x400, 16, 1, 0)
	f.Add(uint8(3), loop)
	indirect := append([]byte(nil), seed...)
	putDesc(indirect, 1, 0x500, 32, 4, 0)
	putDesc(indirect[0x500:], 0, 0x8000, 16, 1, 1)
	putDesc(indirect[0x500:], 1, 0x3ff8, 16, 2, 0)
	f.Add(uint8(2), indirect)
	f.Add(uint8(0), []byte{})

	f.Fuzz(func(t *testing.T, sizeLog uint8, data []byte) {
		low := make([]byte, 0x4000)
		high := make([]byte, 0x4000)
		copy(low, data)
		if len(data) > len(low) {
			copy(high, data[len(low):])
		}
		mem := guestmem.FromRegions(
			guestmem.Region{GPA: 0, Data: low},
			guestmem.Region{GPA: 0x8000, Data: high},
		)
		size := uint16(1) << (sizeLog % 6)
		q := &virtio.Queue{Size: size, DescAddr: 0, AvailAddr: 0x100, UsedAddr: 0x200, Ready: true}
		if eventIdx := sizeLog&0x80 != 0; eventIdx {
			q.EnableEventIdx(true)
		}
		if err := q.Validate(mem, 32); err != nil {
			t.Fatalf("validate: %v", err)
		}
		scratch := make([]byte, 64)
		for i := 0; i < 2*int(size)+2; i++ {
			c, ok, err := q.Pop(mem)
			if !ok {
				if err != nil {
					t.Fatalf("pop: not ok but err %v", err)
				}
				break
			}
			if err != nil && !errors.Is(err, virtio.ErrBadChain) {
				t.Fatalf("pop: unexpected error kind %v", err)
			}
			for _, b := range c.Buffers {
				if _, serr := mem.Slice(b.Addr, uint64(b.Len)); serr != nil || b.Len == 0 {
					t.Fatalf("buffer %+v not inside RAM: %v", b, serr)
				}
			}
			_, _ = c.Gather(mem, scratch, 3)
			_, _ = c.Scatter(mem, scratch, 5)
			_ = q.Push(mem, c.Head, uint32(c.WritableLen()))
			_ = q.NeedsInterrupt(mem)
		}
	})
}

func putDesc(b []byte, i int, addr uint64, n uint32, flags, next uint16) {
	d := b[16*i:]
	binary.LittleEndian.PutUint64(d[0:], addr)
	binary.LittleEndian.PutUint32(d[8:], n)
	binary.LittleEndian.PutUint16(d[12:], flags)
	binary.LittleEndian.PutUint16(d[14:], next)
}
