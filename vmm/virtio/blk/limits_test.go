package blk_test

import (
	"bytes"
	"os"
	"testing"
	"time"

	"gureum/storage/ratelimit"
	"gureum/vmm/virtio/blk"
	"gureum/vmm/virtio/virtiotest"
)

// usedWithin runs the fake event loop until n more used entries appeared
// or the timeout passed, and returns their ids in ring order.
func (h *harness) usedWithin(n int, timeout time.Duration) []uint32 {
	var ids []uint32
	deadline := time.Now().Add(timeout)
	for {
		h.loop.Run()
		for {
			id, _, ok := h.ring.Used()
			if !ok {
				break
			}
			ids = append(ids, id)
		}
		if len(ids) >= n || !time.Now().Before(deadline) {
			return ids
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// writeChain queues (without kicking) a one-sector write of seed's pattern.
func (h *harness) writeChain(sector uint64, seed byte) uint16 {
	st, _ := h.status()
	return h.ring.AddChain(h.header(tOut, sector), virtiotest.Seg{Addr: h.buf(512, pattern(512, seed)), Len: 512}, st)
}

// TestLimiterDefersInOrder: at 50 operations per second with a burst of
// one, five writes to one sector take at least 4/50 s, complete in the
// order they were queued, and the last one's data is what stays on disk.
func TestLimiterDefersInOrder(t *testing.T) {
	h := newHarness(t, false)
	h.start(blk.QueueSize)
	h.dev.SetLimiter(ratelimit.New(ratelimit.Limits{OpsPerSecond: 50, OpsBurst: 1}, time.Now()))
	var heads []uint32
	for i := range 5 {
		heads = append(heads, uint32(h.writeChain(7, byte(10+i))))
	}
	start := time.Now()
	if !h.hub.Kick(h.bar + 0x3000) {
		t.Fatal("no ioeventfd on queue 0")
	}
	first := h.usedWithin(1, 0)
	if len(first) != 1 {
		t.Fatalf("%d requests completed at the kick, want exactly the burst of 1", len(first))
	}
	rest := h.usedWithin(4, 3*time.Second)
	elapsed := time.Since(start)
	got := append(first, rest...)
	if len(got) != 5 {
		t.Fatalf("only %d of 5 requests completed", len(got))
	}
	for i := range got {
		if got[i] != heads[i] {
			t.Fatalf("completion order %v, want %v", got, heads)
		}
	}
	if elapsed < 75*time.Millisecond {
		t.Fatalf("5 requests at 50/s with burst 1 took %v, want at least 80ms", elapsed)
	}
	file, err := os.ReadFile(h.path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(file[7*512:8*512], pattern(512, 14)) {
		t.Fatal("the last write is not the one on disk: requests ran out of order")
	}
	if m := h.dev.Metrics(); m.Throttled == 0 || m.WriteOps != 5 {
		t.Fatalf("metrics %+v", m)
	}
}

// TestLimiterBytes: a bytes cap holds a request that the ops cap alone
// would let through.
func TestLimiterBytes(t *testing.T) {
	h := newHarness(t, false)
	h.start(blk.QueueSize)
	h.dev.SetLimiter(ratelimit.New(ratelimit.Limits{BytesPerSecond: 512, BytesBurst: 512}, time.Now()))
	h.writeChain(1, 1)
	h.writeChain(2, 2)
	h.hub.Kick(h.bar + 0x3000)
	if got := h.usedWithin(2, 50*time.Millisecond); len(got) != 1 {
		t.Fatalf("%d requests ran, want 1 (the second waits a second for its bytes)", len(got))
	}
}

// TestRaisingLimitReleasesHeld: a request held at 1 op/s runs as soon as
// the limit is lifted, not at its old deadline.
func TestRaisingLimitReleasesHeld(t *testing.T) {
	h := newHarness(t, false)
	h.start(blk.QueueSize)
	lim := ratelimit.New(ratelimit.Limits{OpsPerSecond: 1, OpsBurst: 1}, time.Now())
	h.dev.SetLimiter(lim)
	h.writeChain(1, 1)
	h.writeChain(2, 2)
	h.hub.Kick(h.bar + 0x3000)
	if got := h.usedWithin(1, 0); len(got) != 1 {
		t.Fatalf("%d completed at the kick", len(got))
	}
	// A kick while a request is held must not run anything.
	h.hub.Kick(h.bar + 0x3000)
	if got := h.usedWithin(1, 20*time.Millisecond); len(got) != 0 {
		t.Fatalf("a kick ran a held request early: %v", got)
	}
	lim.SetLimits(ratelimit.Unlimited, time.Now())
	h.dev.Retry()
	if got := h.usedWithin(1, 0); len(got) != 1 {
		t.Fatal("held request did not run after the limit was lifted")
	}
}

// TestResetDropsHeld: a driver reset while a request is held forgets it,
// and the armed timer then does nothing.
func TestResetDropsHeld(t *testing.T) {
	h := newHarness(t, false)
	h.start(blk.QueueSize)
	h.dev.SetLimiter(ratelimit.New(ratelimit.Limits{OpsPerSecond: 100, OpsBurst: 1}, time.Now()))
	h.writeChain(1, 1)
	h.writeChain(2, 2)
	h.hub.Kick(h.bar + 0x3000)
	h.usedWithin(1, 0)
	h.write(0x14, 1, 0) // device_status = 0: reset
	time.Sleep(30 * time.Millisecond)
	h.loop.Run()
	if _, _, ok := h.ring.Used(); ok {
		t.Fatal("a request completed after the reset")
	}
}

// TestEmptySlotAttachDetach: a device made without a disk has capacity 0
// and fails I/O; attaching a disk raises a configuration interrupt and
// serves it; detaching returns to capacity 0.
func TestEmptySlotAttachDetach(t *testing.T) {
	path, disk := newDisk(t, false)
	h := newHarnessOn(t, path, nil)
	if f := h.dev.Features(); f&(1<<blk.FeatureRO) != 0 || f&(1<<blk.FeatureDiscard) == 0 {
		t.Fatalf("slot features %#x: want discard offered, RO not", f)
	}
	h.start(blk.QueueSize)
	if c := h.read(0x2000, 8); c != 0 {
		t.Fatalf("empty slot capacity %d", c)
	}
	if st, _ := h.do(h.header(tIn, 0), virtiotest.Seg{Addr: h.buf(512, nil), Len: 512, Writable: true}); st != sIOErr {
		t.Fatalf("read of an empty slot: status %d, want IOERR", st)
	}
	if st, _ := h.do(h.header(tFlush, 0)); st != sOK {
		t.Fatalf("flush of an empty slot: status %d", st)
	}
	h.msi.Take()

	h.dev.SetDisk(disk)
	if c := h.read(0x2000, 8); c != diskSize/512 {
		t.Fatalf("capacity after attach %d", c)
	}
	if m := h.msi.Take(); len(m) != 1 || m[0].Data != cfgData {
		t.Fatalf("attach interrupts %v, want one config interrupt", m)
	}
	if st, _ := h.do(h.header(tOut, 2), virtiotest.Seg{Addr: h.buf(512, pattern(512, 5)), Len: 512}); st != sOK {
		t.Fatalf("write after attach: status %d", st)
	}
	h.msi.Take()

	h.dev.SetDisk(nil)
	if c := h.read(0x2000, 8); c != 0 {
		t.Fatalf("capacity after detach %d", c)
	}
	if m := h.msi.Take(); len(m) != 1 || m[0].Data != cfgData {
		t.Fatalf("detach interrupts %v", m)
	}
	if st, _ := h.do(h.header(tOut, 2), virtiotest.Seg{Addr: h.buf(512, pattern(512, 6)), Len: 512}); st != sIOErr {
		t.Fatalf("write after detach: status %d", st)
	}
	file, _ := os.ReadFile(path)
	if !bytes.Equal(file[2*512:3*512], pattern(512, 5)) {
		t.Fatal("write while attached missing, or write after detach reached the file")
	}
}

// TestSwitchDiskSameSize: swapping to a disk of the same size raises no
// configuration interrupt, and later reads come from the new disk.
func TestSwitchDiskSameSize(t *testing.T) {
	h := newHarness(t, false)
	h.start(blk.QueueSize)
	path2, disk2 := newDisk(t, false)
	if err := os.WriteFile(path2, pattern(diskSize, 42), 0o600); err != nil {
		t.Fatal(err)
	}
	h.dev.SetDisk(disk2)
	if h.dev.Disk() != disk2 {
		t.Fatal("Disk() is not the new disk")
	}
	if m := h.msi.Take(); len(m) != 0 {
		t.Fatalf("interrupts on a same-size switch: %v", m)
	}
	r := h.buf(512, nil)
	if st, _ := h.do(h.header(tIn, 1), virtiotest.Seg{Addr: r, Len: 512, Writable: true}); st != sOK {
		t.Fatalf("read: %d", st)
	}
	if !bytes.Equal(h.bytesAt(r, 512), pattern(diskSize, 42)[512:1024]) {
		t.Fatal("read did not come from the new disk")
	}
}
