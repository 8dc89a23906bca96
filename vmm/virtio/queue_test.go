package virtio_test

import (
	"bytes"
	"errors"
	"testing"

	"gureum/vmm/guestmem"
	"gureum/vmm/virtio"
	"gureum/vmm/virtio/virtiotest"
)

const testMem = 1 << 20

// newQueue returns a ready queue of size entries at 0x1000 in 1 MiB of RAM.
func newQueue(t testing.TB, size uint16) (*guestmem.Memory, *virtiotest.Ring, *virtio.Queue) {
	t.Helper()
	mem := virtiotest.NewMemory(testMem)
	r, _ := virtiotest.NewRing(mem, 0x1000, size)
	q := &virtio.Queue{}
	r.Configure(q)
	if err := q.Validate(mem, size); err != nil {
		t.Fatalf("validate: %v", err)
	}
	return mem, r, q
}

func TestPopPushRoundTrip(t *testing.T) {
	mem, r, q := newQueue(t, 8)
	if _, ok, err := q.Pop(mem); ok || err != nil {
		t.Fatalf("empty ring: ok=%v err=%v", ok, err)
	}
	copy(mustSlice(t, mem, 0x10000, 5), "hello")
	copy(mustSlice(t, mem, 0x10100, 6), " world")
	head := r.AddChain(
		virtiotest.Seg{Addr: 0x10000, Len: 5},
		virtiotest.Seg{Addr: 0x10100, Len: 6},
		virtiotest.Seg{Addr: 0x20000, Len: 4, Writable: true},
		virtiotest.Seg{Addr: 0x20100, Len: 8, Writable: true},
	)
	c, ok, err := q.Pop(mem)
	if !ok || err != nil {
		t.Fatalf("pop: ok=%v err=%v", ok, err)
	}
	if c.Head != head || len(c.Buffers) != 4 || c.ReadableLen() != 11 || c.WritableLen() != 12 {
		t.Fatalf("chain = %+v", c)
	}
	got := make([]byte, 9)
	if n, err := c.Gather(mem, got, 2); n != 9 || err != nil {
		t.Fatalf("gather: %d %v", n, err)
	}
	if string(got) != "llo world" {
		t.Fatalf("gather read %q", got)
	}
	if n, err := c.Gather(mem, make([]byte, 20), 0); n != 11 || !errors.Is(err, virtio.ErrChainTooShort) {
		t.Fatalf("short gather: %d %v", n, err)
	}
	if n, err := c.Scatter(mem, []byte("0123456789"), 1); n != 10 || err != nil {
		t.Fatalf("scatter: %d %v", n, err)
	}
	if a, b := mustSlice(t, mem, 0x20000, 4), mustSlice(t, mem, 0x20100, 8); !bytes.Equal(a, []byte{0, '0', '1', '2'}) || string(b) != "3456789\x00" {
		t.Fatalf("scatter wrote %q %q", a, b)
	}
	if err := q.Push(mem, c.Head, 11); err != nil {
		t.Fatal(err)
	}
	id, n, ok := r.Used()
	if !ok || id != uint32(head) || n != 11 {
		t.Fatalf("used = %d %d %v", id, n, ok)
	}
	if !q.NeedsInterrupt(mem) {
		t.Fatal("no interrupt after push")
	}
	if q.NeedsInterrupt(mem) {
		t.Fatal("interrupt without a new push")
	}
}

func mustSlice(t testing.TB, mem *guestmem.Memory, gpa, n uint64) []byte {
	t.Helper()
	s, err := mem.Slice(gpa, n)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestMalformedChains publishes hostile chains one by one; each must give
// an error with its head consumed, and the queue must go on working.
func TestMalformedChains(t *testing.T) {
	cases := []struct {
		name  string
		build func(r *virtiotest.Ring) // writes descriptors and publishes
	}{
		{"loop", func(r *virtiotest.Ring) {
			r.WriteDesc(r.DescAddr, 0, 0x10000, 16, virtiotest.DescNext, 1)
			r.WriteDesc(r.DescAddr, 1, 0x10000, 16, virtiotest.DescNext, 0)
			r.Publish(0)
		}},
		{"self loop", func(r *virtiotest.Ring) {
			r.WriteDesc(r.DescAddr, 0, 0x10000, 16, virtiotest.DescNext, 0)
			r.Publish(0)
		}},
		{"address outside RAM", func(r *virtiotest.Ring) {
			r.WriteDesc(r.DescAddr, 0, testMem, 16, 0, 0)
			r.Publish(0)
		}},
		{"buffer runs past RAM", func(r *virtiotest.Ring) {
			r.WriteDesc(r.DescAddr, 0, testMem-8, 16, 0, 0)
			r.Publish(0)
		}},
		{"address wraps", func(r *virtiotest.Ring) {
			r.WriteDesc(r.DescAddr, 0, ^uint64(0)-4, 0xffffffff, 0, 0)
			r.Publish(0)
		}},
		{"oversize length", func(r *virtiotest.Ring) {
			r.WriteDesc(r.DescAddr, 0, 0x10000, 0xffffffff, virtiotest.DescWrite, 0)
			r.Publish(0)
		}},
		{"next outside table", func(r *virtiotest.Ring) {
			r.WriteDesc(r.DescAddr, 0, 0x10000, 16, virtiotest.DescNext, 8)
			r.Publish(0)
		}},
		{"head outside table", func(r *virtiotest.Ring) { r.Publish(9) }},
		{"readable after writable", func(r *virtiotest.Ring) {
			r.WriteDesc(r.DescAddr, 0, 0x10000, 16, virtiotest.DescNext|virtiotest.DescWrite, 1)
			r.WriteDesc(r.DescAddr, 1, 0x10100, 16, 0, 0)
			r.Publish(0)
		}},
		{"nested indirect", func(r *virtiotest.Ring) {
			r.WriteDesc(0x30000, 0, 0x30100, 16, virtiotest.DescIndirect, 0)
			r.WriteDesc(r.DescAddr, 0, 0x30000, 16, virtiotest.DescIndirect, 0)
			r.Publish(0)
		}},
		{"indirect outside RAM", func(r *virtiotest.Ring) {
			r.WriteDesc(r.DescAddr, 0, testMem-16, 32, virtiotest.DescIndirect, 0)
			r.Publish(0)
		}},
		{"indirect partial descriptor", func(r *virtiotest.Ring) {
			r.WriteDesc(r.DescAddr, 0, 0x30000, 24, virtiotest.DescIndirect, 0)
			r.Publish(0)
		}},
		{"indirect with next", func(r *virtiotest.Ring) {
			r.WriteDesc(0x30000, 0, 0x10000, 16, 0, 0)
			r.WriteDesc(r.DescAddr, 0, 0x30000, 16, virtiotest.DescIndirect|virtiotest.DescNext, 1)
			r.WriteDesc(r.DescAddr, 1, 0x10000, 16, 0, 0)
			r.Publish(0)
		}},
		{"indirect after direct", func(r *virtiotest.Ring) {
			r.WriteDesc(0x30000, 0, 0x10000, 16, 0, 0)
			r.WriteDesc(r.DescAddr, 0, 0x10000, 16, virtiotest.DescNext, 1)
			r.WriteDesc(r.DescAddr, 1, 0x30000, 16, virtiotest.DescIndirect, 0)
			r.Publish(0)
		}},
		{"loop inside indirect table", func(r *virtiotest.Ring) {
			r.WriteDesc(0x30000, 0, 0x10000, 16, virtiotest.DescNext, 1)
			r.WriteDesc(0x30000, 1, 0x10000, 16, virtiotest.DescNext, 0)
			r.WriteDesc(r.DescAddr, 0, 0x30000, 32, virtiotest.DescIndirect, 0)
			r.Publish(0)
		}},
		{"indirect next outside its table", func(r *virtiotest.Ring) {
			r.WriteDesc(0x30000, 0, 0x10000, 16, virtiotest.DescNext, 1)
			r.WriteDesc(r.DescAddr, 0, 0x30000, 16, virtiotest.DescIndirect, 0)
			r.Publish(0)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mem, r, q := newQueue(t, 8)
			tc.build(r)
			c, ok, err := q.Pop(mem)
			if !ok || !errors.Is(err, virtio.ErrBadChain) {
				t.Fatalf("pop: ok=%v err=%v, want a consumed bad chain", ok, err)
			}
			if q.Errors() != 1 || q.Broken() {
				t.Fatalf("errors=%d broken=%v", q.Errors(), q.Broken())
			}
			if err := q.Push(mem, c.Head, 0); err != nil {
				t.Fatal(err)
			}
			if _, _, ok := r.Used(); !ok {
				t.Fatal("bad chain not returned on the used ring")
			}
			// The queue still serves a good chain afterwards.
			r.WriteDesc(r.DescAddr, 2, 0x10000, 64, 0, 0)
			r.Publish(2)
			c, ok, err = q.Pop(mem)
			if !ok || err != nil || c.Head != 2 || c.ReadableLen() != 64 {
				t.Fatalf("good chain after bad one: %+v ok=%v err=%v", c, ok, err)
			}
		})
	}
}

func TestIndirectChain(t *testing.T) {
	mem, r, q := newQueue(t, 4)
	head := r.AddIndirect(0x30000,
		virtiotest.Seg{Addr: 0x10000, Len: 16},
		virtiotest.Seg{Addr: 0x11000, Len: 512, Writable: true},
		virtiotest.Seg{Addr: 0x12000, Len: 1, Writable: true},
	)
	c, ok, err := q.Pop(mem)
	if !ok || err != nil {
		t.Fatalf("pop: %v %v", ok, err)
	}
	if c.Head != head || len(c.Buffers) != 3 || c.ReadableLen() != 16 || c.WritableLen() != 513 {
		t.Fatalf("chain = %+v", c)
	}
	// An indirect table may hold more descriptors than the ring has slots.
	segs := make([]virtiotest.Seg, 10)
	for i := range segs {
		segs[i] = virtiotest.Seg{Addr: 0x10000 + uint64(i)*0x100, Len: 0x100}
	}
	r.AddIndirect(0x31000, segs...)
	if c, ok, err := q.Pop(mem); !ok || err != nil || len(c.Buffers) != 10 {
		t.Fatalf("long indirect chain: %+v %v %v", c, ok, err)
	}
}

func TestZeroLengthBuffersDropped(t *testing.T) {
	mem, r, q := newQueue(t, 4)
	r.AddChain(virtiotest.Seg{Addr: 0x10000, Len: 0}, virtiotest.Seg{Addr: 0x10000, Len: 4, Writable: true})
	c, ok, err := q.Pop(mem)
	if !ok || err != nil || len(c.Buffers) != 1 || !c.Buffers[0].Writable {
		t.Fatalf("chain %+v %v %v", c, ok, err)
	}
}

func TestAvailIndexTooFarAheadBreaksQueue(t *testing.T) {
	mem, r, q := newQueue(t, 8)
	r.SetAvailIdx(9)
	if _, ok, err := q.Pop(mem); ok || err != nil {
		t.Fatalf("pop: ok=%v err=%v", ok, err)
	}
	if !q.Broken() || q.Errors() != 1 {
		t.Fatalf("broken=%v errors=%d", q.Broken(), q.Errors())
	}
	q.Reset()
	if q.Broken() || q.Ready || q.Errors() != 0 || q.Size != 8 {
		t.Fatalf("after reset: %+v", q)
	}
}

func TestAvailIndexWraps(t *testing.T) {
	mem, r, q := newQueue(t, 4)
	for i := 0; i < 70000; i++ {
		head := r.AddChain(virtiotest.Seg{Addr: 0x10000, Len: 4})
		c, ok, err := q.Pop(mem)
		if !ok || err != nil || c.Head != head {
			t.Fatalf("round %d: %+v %v %v", i, c, ok, err)
		}
		if err := q.Push(mem, c.Head, 0); err != nil {
			t.Fatal(err)
		}
		if _, _, ok := r.Used(); !ok {
			t.Fatalf("round %d: nothing used", i)
		}
	}
}

func TestValidate(t *testing.T) {
	mem := virtiotest.NewMemory(testMem)
	good := virtio.Queue{Size: 16, DescAddr: 0x1000, AvailAddr: 0x2000, UsedAddr: 0x3000}
	if err := good.Validate(mem, 256); err != nil {
		t.Fatalf("good queue: %v", err)
	}
	bad := map[string]func(q *virtio.Queue){
		"size zero":              func(q *virtio.Queue) { q.Size = 0 },
		"size not power of two":  func(q *virtio.Queue) { q.Size = 12 },
		"size above max":         func(q *virtio.Queue) { q.Size = 512 },
		"desc misaligned":        func(q *virtio.Queue) { q.DescAddr = 0x1008 },
		"avail misaligned":       func(q *virtio.Queue) { q.AvailAddr = 0x2001 },
		"used misaligned":        func(q *virtio.Queue) { q.UsedAddr = 0x3002 },
		"desc outside RAM":       func(q *virtio.Queue) { q.DescAddr = testMem },
		"used runs past RAM end": func(q *virtio.Queue) { q.UsedAddr = testMem - 64 },
	}
	for name, change := range bad {
		q := good
		change(&q)
		if err := q.Validate(mem, 256); !errors.Is(err, virtio.ErrBadQueue) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestNoInterruptFlag(t *testing.T) {
	mem, r, q := newQueue(t, 4)
	r.SetAvailFlags(1)
	r.AddChain(virtiotest.Seg{Addr: 0x10000, Len: 4})
	c, _, _ := q.Pop(mem)
	if err := q.Push(mem, c.Head, 0); err != nil {
		t.Fatal(err)
	}
	if q.NeedsInterrupt(mem) {
		t.Fatal("interrupt despite VIRTQ_AVAIL_F_NO_INTERRUPT")
	}
}

func TestEventIdx(t *testing.T) {
	mem, r, q := newQueue(t, 8)
	q.EnableEventIdx(true)
	r.SetAvailFlags(1) // ignored under event idx
	// The driver wants an interrupt once used.idx passes 2 (i.e. after the
	// third element).
	r.SetUsedEvent(2)
	for i := 0; i < 4; i++ {
		r.AddChain(virtiotest.Seg{Addr: 0x10000, Len: 4})
	}
	want := []bool{false, false, true, false}
	for i, w := range want {
		c, ok, err := q.Pop(mem)
		if !ok || err != nil {
			t.Fatalf("pop %d: %v %v", i, ok, err)
		}
		if err := q.Push(mem, c.Head, 0); err != nil {
			t.Fatal(err)
		}
		if got := q.NeedsInterrupt(mem); got != w {
			t.Errorf("after push %d: NeedsInterrupt = %v, want %v", i, got, w)
		}
	}
	// A batch that crosses used_event interrupts once.
	r.SetUsedEvent(5)
	for i := 0; i < 3; i++ {
		r.AddChain(virtiotest.Seg{Addr: 0x10000, Len: 4})
	}
	for i := 0; i < 3; i++ {
		c, _, _ := q.Pop(mem)
		if err := q.Push(mem, c.Head, 0); err != nil {
			t.Fatal(err)
		}
	}
	if !q.NeedsInterrupt(mem) {
		t.Fatal("batch crossing used_event did not interrupt")
	}
	// Going idle publishes avail_event = the next index the device wants.
	if _, ok, _ := q.Pop(mem); ok {
		t.Fatal("ring should be empty")
	}
	if got := r.AvailEvent(); got != 7 {
		t.Fatalf("avail_event = %d, want 7", got)
	}
}

func TestPopOnDisabledQueue(t *testing.T) {
	mem, r, q := newQueue(t, 4)
	q.Ready = false
	r.AddChain(virtiotest.Seg{Addr: 0x10000, Len: 4})
	if _, ok, err := q.Pop(mem); ok || err != nil {
		t.Fatalf("pop on disabled queue: %v %v", ok, err)
	}
}

// Describe shows a chain the driver published and the device has not
// taken (a lost kick looks like this), then the device caught up.
func TestDescribe(t *testing.T) {
	mem, r, q := newQueue(t, 8)
	r.AddChain(virtiotest.Seg{Addr: 0x10000, Len: 4})
	want := "size=8 device: next avail 0, next used 0, signalled used 0; driver: avail.idx 1, avail.flags 0x0, used.idx 0"
	if got := q.Describe(mem); got != want {
		t.Fatalf("before pop:\n got %s\nwant %s", got, want)
	}
	c, _, _ := q.Pop(mem)
	q.Push(mem, c.Head, 0)
	want = "size=8 device: next avail 1, next used 1, signalled used 0; driver: avail.idx 1, avail.flags 0x0, used.idx 1"
	if got := q.Describe(mem); got != want {
		t.Fatalf("after push:\n got %s\nwant %s", got, want)
	}
	if got := (&virtio.Queue{}).Describe(mem); got != "not ready" {
		t.Fatalf("unconfigured queue: %s", got)
	}
}
