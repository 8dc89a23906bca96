package blk_test

import (
	"testing"

	"gureum/vmm/virtio"
	"gureum/vmm/virtio/blk"
	"gureum/vmm/virtio/virtiotest"
)

// BenchmarkRequest1MiB measures the device path for large requests: one
// 1 MiB read or write per chain (in 4 KiB-page buffers, as a guest's page
// cache hands them over) against a raw file that lives in the page cache.
func BenchmarkRequest1MiB(b *testing.B) {
	for _, c := range []struct {
		name string
		typ  uint32
	}{{"read", tIn}, {"write", tOut}} {
		b.Run(c.name, func(b *testing.B) {
			_, disk := newDiskB(b)
			m := virtiotest.NewMemory(8 << 20)
			ring, _ := virtiotest.NewRing(m, 0x1000, blk.QueueSize)
			q := &virtio.Queue{}
			ring.Configure(q)
			dev := blk.New(disk, "bench")
			if err := dev.Activate(virtio.Env{Mem: m}, 0, []*virtio.Queue{q}, &virtiotest.Interrupts{}); err != nil {
				b.Fatal(err)
			}
			h := &harness{t: b, ring: ring, next: dataBase}
			const pages = 256
			segs := []virtiotest.Seg{h.header(c.typ, 0)}
			for i := 0; i < pages; i++ {
				segs = append(segs, virtiotest.Seg{Addr: h.buf(4096, nil), Len: 4096, Writable: c.typ == tIn})
			}
			st, _ := h.status()
			segs = append(segs, st)
			b.SetBytes(pages * 4096)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ring.AddIndirect(0x200000, segs...)
				dev.Notify(0)
				if _, _, ok := ring.Used(); !ok {
					b.Fatal("request not completed")
				}
			}
			if dev.Metrics().Errors != 0 {
				b.Fatal("requests failed")
			}
		})
	}
}
