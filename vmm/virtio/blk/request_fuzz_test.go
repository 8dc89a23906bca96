package blk_test

import (
	"encoding/binary"
	"fmt"
	"testing"

	"gureum/vmm/virtio"
	"gureum/vmm/virtio/blk"
	"gureum/vmm/virtio/virtiotest"
)

// memDisk is an in-memory storage.Disk and storage.Discarder that records
// any access outside the disk, which the device must never make.
type memDisk struct {
	data       []byte
	outOfRange bool
}

func (m *memDisk) check(off int64, n int) error {
	if off < 0 || off+int64(n) > int64(len(m.data)) {
		m.outOfRange = true
		return fmt.Errorf("access [%d, +%d) outside disk", off, n)
	}
	return nil
}
func (m *memDisk) ReadAt(p []byte, off int64) (int, error) {
	if err := m.check(off, len(p)); err != nil {
		return 0, err
	}
	return copy(p, m.data[off:]), nil
}
func (m *memDisk) WriteAt(p []byte, off int64) (int, error) {
	if err := m.check(off, len(p)); err != nil {
		return 0, err
	}
	return copy(m.data[off:], p), nil
}
func (m *memDisk) Discard(off, n int64) error {
	if err := m.check(off, int(n)); err != nil {
		return err
	}
	clear(m.data[off : off+n])
	return nil
}
func (m *memDisk) Flush() error   { return nil }
func (m *memDisk) Size() int64    { return int64(len(m.data)) }
func (m *memDisk) ReadOnly() bool { return false }
func (m *memDisk) Close() error   { return nil }

// FuzzRequest builds one request chain from the fuzz input (header fields,
// then buffers whose length, direction and placement come from shape) and
// runs it. The device must not panic, must not touch the disk outside its
// size, and must report no more bytes written than the chain could hold.
func FuzzRequest(f *testing.F) {
	f.Add(uint32(0), uint64(0), []byte{0x00, 0x02, 1, 0x01, 0x00, 1})
	f.Add(uint32(1), uint64(7), []byte{0x00, 0x10, 0, 0x01, 0x00, 1})
	f.Add(uint32(11), uint64(0), []byte{0x10, 0x00, 0, 0x01, 0x00, 1})
	f.Add(uint32(8), uint64(0), []byte{0x14, 0x00, 1})
	f.Add(uint32(1), uint64(1<<60), []byte{0x00, 0x02, 2, 0x01, 0x00, 1})
	f.Fuzz(func(t *testing.T, typ uint32, sector uint64, shape []byte) {
		const mem = 1 << 20
		m := virtiotest.NewMemory(mem)
		ring, _ := virtiotest.NewRing(m, 0x1000, 16)
		q := &virtio.Queue{}
		ring.Configure(q)
		disk := &memDisk{data: make([]byte, 64<<10)}
		dev := blk.New(disk, "fuzz")
		irq := &virtiotest.Interrupts{}
		if err := dev.Activate(virtio.Env{Mem: m}, 0, []*virtio.Queue{q}, irq); err != nil {
			t.Fatal(err)
		}
		var hdr [16]byte
		binary.LittleEndian.PutUint32(hdr[0:], typ)
		binary.LittleEndian.PutUint64(hdr[8:], sector)
		if err := m.WriteAt(hdr[:], 0x10000); err != nil {
			t.Fatal(err)
		}
		segs := []virtiotest.Seg{{Addr: 0x10000, Len: 16}}
		next := uint64(0x20000)
		for i := 0; i+2 < len(shape) && len(segs) < 15; i += 3 {
			n := uint32(binary.LittleEndian.Uint16(shape[i:]))
			flags := shape[i+2]
			addr := next
			if flags&2 != 0 { // place it at the end of RAM, maybe past it
				addr = mem - uint64(n/2)
			}
			// Segment payloads are whatever the previous runs left;
			// fill discard segments with something plausible.
			if s, err := m.Slice(addr, uint64(n)); err == nil {
				for j := range s {
					s[j] = byte(j) ^ shape[i]
				}
			}
			segs = append(segs, virtiotest.Seg{Addr: addr, Len: n, Writable: flags&1 != 0})
			next += uint64(n) + 16
		}
		ring.AddChain(segs...)
		dev.Notify(0)
		_, n, ok := ring.Used()
		if !ok {
			t.Fatal("request not completed")
		}
		var writable uint64
		for _, s := range segs {
			if s.Writable {
				writable += uint64(s.Len)
			}
		}
		if uint64(n) > writable {
			t.Fatalf("used length %d > writable %d", n, writable)
		}
		if disk.outOfRange {
			t.Fatal("device accessed the disk out of range")
		}
	})
}
