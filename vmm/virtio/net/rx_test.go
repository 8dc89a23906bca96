package net

import (
	"bytes"
	"encoding/binary"
	"testing"

	"gureum/vmm/virtio/virtiotest"
)

// rxHeader is a header as the tap writes it: num_buffers left as garbage,
// since the kernel skips it and the device must fill it in.
func rxHeader(flags uint8) [hdrLen]byte {
	var h [hdrLen]byte
	h[hdrFlags] = flags
	h[hdrNumBuffers], h[hdrNumBuffers+1] = 0xee, 0xee
	return h
}

func numBuffers(b []byte) uint16 { return binary.LittleEndian.Uint16(b[hdrNumBuffers:]) }

func TestReceiveOneChainPerFrame(t *testing.T) {
	h := newHarness(t)
	h.activate(0)
	// Header and frame in separate buffers, as older drivers lay them out.
	head1, segs1 := h.postRx(hdrLen, 1514)
	head2, segs2 := h.postRx(hdrLen + 1514)

	f1, f2 := ethFrame(1000, 1), ethFrame(46, 2)
	h.hostSend(rxHeader(0), f1)
	h.hostSend(rxHeader(0), f2)

	var used []usedElem
	h.runUntil("two frames received", func() bool { used = append(used, h.usedRx()...); return len(used) == 2 })
	if used[0] != (usedElem{uint32(head1), uint32(hdrLen + len(f1))}) || used[1] != (usedElem{uint32(head2), uint32(hdrLen + len(f2))}) {
		t.Fatalf("used = %+v", used)
	}
	got1, got2 := h.read(segs1), h.read(segs2)
	if numBuffers(got1) != 1 || numBuffers(got2) != 1 {
		t.Fatalf("num_buffers = %d, %d; want 1", numBuffers(got1), numBuffers(got2))
	}
	if !bytes.Equal(got1[hdrLen:hdrLen+len(f1)], f1) || !bytes.Equal(got2[hdrLen:hdrLen+len(f2)], f2) {
		t.Fatal("frame bytes differ")
	}
	if h.irq.QueueCount(rxQueue) == 0 {
		t.Fatal("no receive interrupt")
	}
	m := h.dev.Metrics()
	if m.RxPackets != 2 || m.RxBytes != uint64(len(f1)+len(f2)) || m.RxDropped != 0 || m.RxErrors != 0 {
		t.Fatalf("metrics %+v", m)
	}
}

func TestReceiveMergeable(t *testing.T) {
	h := newHarness(t)
	h.activate(1<<FeatureMrgRxBuf | 1<<FeatureGuestCsum)
	const bufLen = 1536
	var heads []uint16
	var segs [][]virtiotest.Seg
	for range 8 {
		head, s := h.postRx(bufLen)
		heads, segs = append(heads, head), append(segs, s)
	}
	big := ethFrame(4000, 3) // 12+4014 bytes: three buffers
	small := ethFrame(100, 4)
	h.hostSend(rxHeader(flagNeedsCsum), big)
	h.hostSend(rxHeader(0), small)

	var used []usedElem
	h.runUntil("four buffers used", func() bool { used = append(used, h.usedRx()...); return len(used) == 4 })
	total := hdrLen + len(big)
	want := []usedElem{
		{uint32(heads[0]), bufLen}, {uint32(heads[1]), bufLen}, {uint32(heads[2]), uint32(total - 2*bufLen)},
		{uint32(heads[3]), uint32(hdrLen + len(small))},
	}
	for i := range want {
		if used[i] != want[i] {
			t.Fatalf("used[%d] = %+v, want %+v (all: %+v)", i, used[i], want[i], used)
		}
	}
	var got []byte
	for _, s := range segs[:3] {
		got = append(got, h.read(s)...)
	}
	if numBuffers(got) != 3 || got[hdrFlags] != flagNeedsCsum {
		t.Fatalf("first header %x: want num_buffers 3 and NEEDS_CSUM", got[:hdrLen])
	}
	if !bytes.Equal(got[hdrLen:total], big) {
		t.Fatal("merged frame bytes differ")
	}
	if s := h.read(segs[3]); numBuffers(s) != 1 || !bytes.Equal(s[hdrLen:hdrLen+len(small)], small) {
		t.Fatalf("small frame: header %x", s[:hdrLen])
	}
}

func TestReceiveWaitsForBuffers(t *testing.T) {
	h := newHarness(t)
	h.activate(0)
	f := ethFrame(200, 5)
	h.hostSend(rxHeader(0), f)
	h.settle()
	if got := h.usedRx(); len(got) != 0 {
		t.Fatalf("used entries without any buffer: %+v", got)
	}
	// The frame waits in the backend; a kick after new buffers delivers it.
	head, segs := h.postRx(2048)
	h.dev.Notify(rxQueue)
	var used []usedElem
	h.runUntil("frame after kick", func() bool { used = append(used, h.usedRx()...); return len(used) == 1 })
	if used[0] != (usedElem{uint32(head), uint32(hdrLen + len(f))}) {
		t.Fatalf("used = %+v", used)
	}
	if got := h.read(segs); !bytes.Equal(got[hdrLen:hdrLen+len(f)], f) {
		t.Fatal("frame bytes differ")
	}
	// With buffers posted (and kicked, as a driver does), receive goes on
	// event-driven: a frame arriving later is delivered without a kick.
	head2, _ := h.postRx(2048)
	h.dev.Notify(rxQueue)
	h.settle()
	h.hostSend(rxHeader(0), f)
	h.runUntil("second frame", func() bool { used = append(used, h.usedRx()...); return len(used) == 2 })
	if used[1].id != uint32(head2) {
		t.Fatalf("used = %+v", used)
	}
	if m := h.dev.Metrics(); m.RxDropped != 0 {
		t.Fatalf("frames dropped while waiting for buffers: %+v", m)
	}
}

func TestReceiveMergeableFrameLargerThanPostedBuffers(t *testing.T) {
	// The guest has posted fewer bytes than the frame needs: the head of
	// the frame goes into what is there, the rest waits for more buffers,
	// and the frame comes out whole and in order.
	h := newHarness(t)
	h.activate(1 << FeatureMrgRxBuf)
	const bufLen = 1024
	head0, s0 := h.postRx(bufLen)
	head1, s1 := h.postRx(bufLen)
	f := ethFrame(5000, 6) // 5026 bytes with header: five buffers
	h.hostSend(rxHeader(0), f)
	h.settle()
	if got := h.usedRx(); len(got) != 0 {
		t.Fatalf("partial frame published early: %+v", got)
	}
	heads := []uint16{head0, head1}
	segs := [][]virtiotest.Seg{s0, s1}
	for range 3 {
		head, s := h.postRx(bufLen)
		heads, segs = append(heads, head), append(segs, s)
	}
	h.dev.Notify(rxQueue)
	var used []usedElem
	h.runUntil("five buffers", func() bool { used = append(used, h.usedRx()...); return len(used) == 5 })
	var got []byte
	for i, u := range used {
		if u.id != uint32(heads[i]) {
			t.Fatalf("used[%d] = %+v, want head %d", i, u, heads[i])
		}
		got = append(got, h.read(segs[i])[:u.len]...)
	}
	if len(got) != hdrLen+len(f) || numBuffers(got) != 5 || !bytes.Equal(got[hdrLen:], f) {
		t.Fatalf("reassembled %d bytes, num_buffers %d", len(got), numBuffers(got))
	}
}

func TestReceiveChainTooSmallDropsFrame(t *testing.T) {
	h := newHarness(t)
	h.activate(0)
	head, segs := h.postRx(200)
	h.hostSend(rxHeader(0), ethFrame(500, 7)) // does not fit: dropped
	small := ethFrame(50, 8)
	h.hostSend(rxHeader(0), small) // fits the same chain
	var used []usedElem
	h.runUntil("small frame", func() bool { used = append(used, h.usedRx()...); return len(used) == 1 })
	if used[0] != (usedElem{uint32(head), uint32(hdrLen + len(small))}) {
		t.Fatalf("used = %+v", used)
	}
	if got := h.read(segs); !bytes.Equal(got[hdrLen:hdrLen+len(small)], small) {
		t.Fatal("frame bytes differ")
	}
	if m := h.dev.Metrics(); m.RxDropped != 1 || m.RxPackets != 1 {
		t.Fatalf("metrics %+v, want 1 dropped and 1 received", m)
	}
}

func TestReceiveHostileChains(t *testing.T) {
	h := newHarness(t)
	h.activate(1 << FeatureMrgRxBuf)
	// A readable buffer in a receive chain, a chain too small for a
	// header, a buffer outside RAM: each comes back empty and counted.
	a := h.alloc(64)
	bad := []uint16{
		h.rx.AddChain(virtiotest.Seg{Addr: a, Len: 64}),
		h.rx.AddChain(virtiotest.Seg{Addr: a, Len: hdrLen - 1, Writable: true}),
		h.rx.AddChain(virtiotest.Seg{Addr: testMemSize - 16, Len: 64, Writable: true}),
	}
	good, segs := h.postRx(2048)
	f := ethFrame(300, 9)
	h.hostSend(rxHeader(0), f)
	var used []usedElem
	h.runUntil("frame past hostile chains", func() bool { used = append(used, h.usedRx()...); return len(used) == 4 })
	for i, head := range bad {
		if used[i] != (usedElem{uint32(head), 0}) {
			t.Fatalf("used[%d] = %+v, want head %d with length 0", i, used[i], head)
		}
	}
	if used[3] != (usedElem{uint32(good), uint32(hdrLen + len(f))}) {
		t.Fatalf("used[3] = %+v", used[3])
	}
	if got := h.read(segs); !bytes.Equal(got[hdrLen:hdrLen+len(f)], f) {
		t.Fatal("frame bytes differ")
	}
	if m := h.dev.Metrics(); m.RxErrors != 3 || m.RxPackets != 1 {
		t.Fatalf("metrics %+v", m)
	}
}

func TestResetStopsReceive(t *testing.T) {
	h := newHarness(t)
	h.activate(0)
	h.postRx(2048)
	h.dev.Reset()
	h.hostSend(rxHeader(0), ethFrame(100, 10))
	h.settle()
	if got := h.usedRx(); len(got) != 0 {
		t.Fatalf("reset device received: %+v", got)
	}
	// After a driver reset the rings start over; the frame queued
	// meanwhile is delivered to the new activation.
	h.rxq.Reset()
	h.txq.Reset()
	h.rx, _ = virtiotest.NewRing(h.mem, 0x1000, testQueueSize)
	h.rx.Configure(h.rxq)
	h.tx.Configure(h.txq)
	for _, b := range []uint64{h.rx.UsedAddr, h.rx.AvailAddr} {
		if err := h.mem.WriteAt(make([]byte, 8), b); err != nil {
			t.Fatal(err)
		}
	}
	h.activate(0)
	head, _ := h.postRx(2048)
	var used []usedElem
	h.runUntil("frame after reactivation", func() bool { used = append(used, h.usedRx()...); return len(used) == 1 })
	if used[0].id != uint32(head) {
		t.Fatalf("used = %+v", used)
	}
}

func TestReceiveLargeFrameSingleChain(t *testing.T) {
	// A driver that negotiated TSO without MRG_RXBUF posts 64 KiB chains
	// ("big packets"); a 64 KiB frame goes into one.
	h := newHarness(t)
	h.activate(1<<FeatureGuestCsum | 1<<FeatureGuestTSO4)
	pieces := []int{hdrLen}
	for range 17 { // 64 KiB and change: a whole frame of maxFrame bytes
		pieces = append(pieces, 4096)
	}
	head, segs := h.postRx(pieces...)
	f := ethFrame(maxFrame-ethHeaderLen, 11)
	h.hostSend(rxHeader(0), f)
	var used []usedElem
	h.runUntil("big frame", func() bool { used = append(used, h.usedRx()...); return len(used) == 1 })
	if used[0] != (usedElem{uint32(head), uint32(maxPacket)}) {
		t.Fatalf("used = %+v", used)
	}
	if got := h.read(segs); !bytes.Equal(got[hdrLen:maxPacket], f) {
		t.Fatal("frame bytes differ")
	}
}
