package net

import (
	"bytes"
	"encoding/binary"
	"testing"

	"gureum/vmm/virtio/virtiotest"
)

const txFeatures = 1<<FeatureCsum | 1<<FeatureHostTSO4

func txHeader(flags, gso uint8, gsoSize, csumStart, csumOff uint16) [hdrLen]byte {
	var h [hdrLen]byte
	h[hdrFlags], h[hdrGSOType] = flags, gso
	binary.LittleEndian.PutUint16(h[hdrGSOSize:], gsoSize)
	binary.LittleEndian.PutUint16(h[hdrCsumStart:], csumStart)
	binary.LittleEndian.PutUint16(h[hdrCsumOffset:], csumOff)
	return h
}

func TestTransmit(t *testing.T) {
	h := newHarness(t)
	h.activate(txFeatures)

	frame := ethFrame(1000, 1)
	hdr := txHeader(flagNeedsCsum, gsoTCPv4, 1448, 34, 16)
	pkt := append(hdr[:], frame...)
	// Header split across two descriptors, frame across three: the device
	// must gather all of it, in order.
	head1 := h.postTx(pkt, 5, 7+3, 500)
	frame2 := ethFrame(60, 2)
	var plain [hdrLen]byte
	head2 := h.postTx(append(plain[:], frame2...))
	h.dev.Notify(txQueue)

	for i, want := range [][]byte{pkt, append(plain[:], frame2...)} {
		got, ok := h.hostRecv()
		if !ok {
			t.Fatalf("frame %d not written to the backend", i)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d: backend got %d bytes, want %d (header %x vs %x)", i, len(got), len(want), got[:hdrLen], want[:hdrLen])
		}
	}
	if _, ok := h.hostRecv(); ok {
		t.Fatal("more frames written than sent")
	}
	for _, head := range []uint16{head1, head2} {
		id, n, ok := h.tx.Used()
		if !ok || id != uint32(head) || n != 0 {
			t.Fatalf("used = %d/%d/%v, want head %d with length 0", id, n, ok, head)
		}
	}
	if h.irq.QueueCount(txQueue) != 1 {
		t.Fatalf("transmit interrupts = %d, want 1", h.irq.QueueCount(txQueue))
	}
	m := h.dev.Metrics()
	if m.TxPackets != 2 || m.TxBytes != uint64(len(frame)+len(frame2)) || m.TxErrors != 0 {
		t.Fatalf("metrics %+v", m)
	}
}

func TestTransmitHostileChains(t *testing.T) {
	h := newHarness(t)
	h.activate(txFeatures)
	ok := txHeader(0, gsoNone, 0, 0, 0)
	frame := ethFrame(100, 3)

	var heads []uint16
	add := func(hdr [hdrLen]byte, f []byte) { heads = append(heads, h.postTx(append(hdr[:], f...))) }
	add(ok, frame[:ethHeaderLen-1])                      // shorter than an Ethernet header
	add(ok, make([]byte, maxFrame+1))                    // longer than any frame
	add(txHeader(2, gsoNone, 0, 0, 0), frame)            // DATA_VALID is receive-only
	add(txHeader(0, gsoTCPv6, 1000, 0, 0), frame)        // TSO6 not negotiated
	add(txHeader(0, gsoTCPv4|gsoECN, 1000, 0, 0), frame) // ECN not negotiated
	add(txHeader(0, gsoTCPv4, 0, 0, 0), frame)           // segment size 0
	add(txHeader(0, 9, 1000, 0, 0), frame)               // unknown GSO type
	add(txHeader(flagNeedsCsum, 0, 0, 100, 13), frame)   // checksum past the end
	// A chain with a device-writable buffer.
	a := h.alloc(200)
	heads = append(heads, h.tx.AddChain(
		virtiotest.Seg{Addr: a, Len: 150},
		virtiotest.Seg{Addr: a + 150, Len: 50, Writable: true}))
	// A chain pointing outside guest RAM.
	heads = append(heads, h.tx.AddChain(virtiotest.Seg{Addr: testMemSize - 8, Len: 64}))
	// A descriptor that loops on itself.
	loopHead := uint16(200)
	h.tx.WriteDesc(h.tx.DescAddr, loopHead, a, 150, virtiotest.DescNext, loopHead)
	h.tx.Publish(loopHead)
	heads = append(heads, loopHead)
	// Then a good frame: the device must still work.
	good := h.postTx(append(ok[:], frame...))

	h.dev.Notify(txQueue)

	got, sent := h.hostRecv()
	if !sent || !bytes.Equal(got[hdrLen:], frame) {
		t.Fatalf("the good frame after hostile ones was not sent (got %d bytes, %v)", len(got), sent)
	}
	if extra, more := h.hostRecv(); more {
		t.Fatalf("a hostile frame reached the backend: %x", extra[:min(len(extra), 32)])
	}
	// Every chain comes back, with length 0, in order.
	for _, head := range append(heads, good) {
		id, n, ok := h.tx.Used()
		if !ok || id != uint32(head) || n != 0 {
			t.Fatalf("used = %d/%d/%v, want head %d with length 0", id, n, ok, head)
		}
	}
	m := h.dev.Metrics()
	if m.TxErrors != uint64(len(heads)) || m.TxPackets != 1 {
		t.Fatalf("metrics %+v, want %d errors and 1 packet", m, len(heads))
	}
}

func TestTransmitManyPieces(t *testing.T) {
	// More buffers than one writev takes (through an indirect table): the
	// frame is copied once and still sent whole.
	h := newHarness(t)
	h.activate(0)
	var hdr [hdrLen]byte
	frame := ethFrame(1500, 4)
	pkt := append(hdr[:], frame...)
	var segs []virtiotest.Seg
	for i := range pkt {
		a := h.alloc(1)
		if err := h.mem.WriteAt(pkt[i:i+1], a); err != nil {
			t.Fatal(err)
		}
		segs = append(segs, virtiotest.Seg{Addr: a, Len: 1})
	}
	table := h.alloc(16 * len(segs))
	head := h.tx.AddIndirect(table, segs...)
	h.dev.Notify(txQueue)
	got, ok := h.hostRecv()
	if !ok || !bytes.Equal(got, pkt) {
		t.Fatalf("fragmented frame: sent=%v, %d bytes, want %d", ok, len(got), len(pkt))
	}
	if id, n, ok := h.tx.Used(); !ok || id != uint32(head) || n != 0 {
		t.Fatalf("used = %d/%d/%v", id, n, ok)
	}
}

func TestTransmitBeforeActivateIgnored(t *testing.T) {
	h := newHarness(t)
	var hdr [hdrLen]byte
	h.postTx(append(hdr[:], ethFrame(50, 5)...))
	h.dev.Notify(txQueue)
	if _, ok := h.hostRecv(); ok {
		t.Fatal("inactive device transmitted")
	}
}

func TestCheckTxHeader(t *testing.T) {
	all := uint64(1<<FeatureCsum | 1<<FeatureHostTSO4 | 1<<FeatureHostTSO6 | 1<<FeatureHostUFO)
	cases := []struct {
		name     string
		hdr      [hdrLen]byte
		features uint64
		frameLen int
		ok       bool
	}{
		{"plain", txHeader(0, gsoNone, 0, 0, 0), 0, 60, true},
		{"csum", txHeader(flagNeedsCsum, gsoNone, 0, 34, 16), all, 60, true},
		{"csum at the very end", txHeader(flagNeedsCsum, gsoNone, 0, 40, 18), all, 60, true},
		{"csum one past", txHeader(flagNeedsCsum, gsoNone, 0, 40, 19), all, 60, false},
		{"csum not negotiated", txHeader(flagNeedsCsum, gsoNone, 0, 34, 16), 0, 60, false},
		{"csum max offsets", txHeader(flagNeedsCsum, gsoNone, 0, 0xffff, 0xffff), all, 60, false},
		{"tso4", txHeader(flagNeedsCsum, gsoTCPv4, 1448, 34, 16), all, 9000, true},
		{"tso6", txHeader(flagNeedsCsum, gsoTCPv6, 1428, 54, 16), all, 9000, true},
		{"ufo", txHeader(flagNeedsCsum, gsoUDP, 1400, 34, 6), all, 9000, true},
		{"ufo not negotiated", txHeader(flagNeedsCsum, gsoUDP, 1400, 34, 6), all &^ (1 << FeatureHostUFO), 9000, false},
		{"ecn", txHeader(flagNeedsCsum, gsoTCPv4|gsoECN, 1448, 34, 16), all, 9000, false},
		{"rsc flag", txHeader(4, gsoNone, 0, 0, 0), all, 60, false},
	}
	for _, c := range cases {
		err := checkTxHeader(&c.hdr, c.features, c.frameLen)
		if (err == nil) != c.ok {
			t.Errorf("%s: err = %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

// FuzzTxHeader feeds arbitrary headers, features and frame lengths to the
// transmit header check. It must never panic, and whatever it accepts must
// be safe to hand to the kernel: a partial checksum inside the frame, and
// only offloads that were negotiated.
func FuzzTxHeader(f *testing.F) {
	f.Add([]byte{1, 1, 0, 0, 0xa8, 5, 34, 0, 16, 0, 0, 0}, uint64(txFeatures), 1000)
	f.Add(make([]byte, hdrLen), uint64(0), 60)
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0}, uint64(1<<FeatureCsum), 0x7fffffff)
	f.Fuzz(func(t *testing.T, raw []byte, features uint64, frameLen int) {
		var hdr [hdrLen]byte
		copy(hdr[:], raw)
		if err := checkTxHeader(&hdr, features, frameLen); err != nil {
			return
		}
		flags, gso := hdr[hdrFlags], hdr[hdrGSOType]
		if flags&^flagNeedsCsum != 0 {
			t.Fatalf("accepted flags %#x", flags)
		}
		if flags&flagNeedsCsum != 0 {
			if features&(1<<FeatureCsum) == 0 {
				t.Fatal("accepted a partial checksum without VIRTIO_NET_F_CSUM")
			}
			start := int(binary.LittleEndian.Uint16(hdr[hdrCsumStart:]))
			off := int(binary.LittleEndian.Uint16(hdr[hdrCsumOffset:]))
			if start+off+2 > frameLen {
				t.Fatalf("accepted checksum at %d+%d in a %d-byte frame", start, off, frameLen)
			}
		}
		need := map[uint8]uint{gsoTCPv4: FeatureHostTSO4, gsoTCPv6: FeatureHostTSO6, gsoUDP: FeatureHostUFO}
		if gso != gsoNone {
			bit, known := need[gso]
			if !known || features&(1<<bit) == 0 {
				t.Fatalf("accepted GSO type %#x with features %#x", gso, features)
			}
			if binary.LittleEndian.Uint16(hdr[hdrGSOSize:]) == 0 {
				t.Fatal("accepted GSO with segment size 0")
			}
		}
	})
}
