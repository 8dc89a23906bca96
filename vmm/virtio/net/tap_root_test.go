package net

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"golang.org/x/sys/unix"

	"gureum/network/tap"
	"gureum/network/tap/taptest"
)

// TestRealTap runs the device on a real tap in a private network namespace:
// a frame the guest transmits appears on the host interface, and a frame
// sent on the host interface lands in the guest's receive buffers.
func TestRealTap(t *testing.T) {
	taptest.RequireRoot(t)
	defer taptest.EnterNetns(t)()

	tp, err := tap.Open("gnet%d")
	if err != nil {
		t.Fatalf("open tap: %v", err)
	}
	defer tp.Close()
	taptest.SetLinkUp(t, tp.Name())
	iface, err := net.InterfaceByName(tp.Name())
	if err != nil {
		t.Fatalf("interface %s: %v", tp.Name(), err)
	}
	ps := taptest.PacketSocket(t, iface.Index)

	h := newHarnessWith(t, tp)
	defer h.dev.Reset() // before the tap closes
	// The offloads a Linux guest negotiates: the real tap must accept them.
	h.activate(1<<FeatureCsum | 1<<FeatureGuestCsum | 1<<FeatureGuestTSO4 | 1<<FeatureGuestTSO6 |
		1<<FeatureHostTSO4 | 1<<FeatureHostTSO6 | 1<<FeatureMrgRxBuf)

	// Guest to host.
	out := ethFrame(200, 1)
	binary.BigEndian.PutUint16(out[12:], taptest.TestEtherType)
	var hdr [hdrLen]byte
	h.postTx(append(hdr[:], out...), hdrLen)
	h.dev.Notify(txQueue)
	buf := make([]byte, 4096)
	for {
		n, _, err := unix.Recvfrom(ps, buf, 0)
		if err != nil {
			t.Fatalf("host did not see the guest's frame: %v", err)
		}
		if n >= ethHeaderLen && binary.BigEndian.Uint16(buf[12:]) == taptest.TestEtherType {
			if !bytes.Equal(buf[:n], out) {
				t.Fatalf("host saw %x, want %x", buf[:n], out)
			}
			break
		}
	}
	if m := h.dev.Metrics(); m.TxPackets != 1 || m.TxErrors != 0 {
		t.Fatalf("metrics %+v", m)
	}

	// Host to guest. Other traffic (IPv6 neighbour discovery) may arrive
	// too, so post plenty of buffers and look for our frame.
	type posted struct {
		head uint16
		addr uint64
	}
	var bufs []posted
	for range 32 {
		head, segs := h.postRx(2048)
		bufs = append(bufs, posted{head, segs[0].Addr})
	}
	h.dev.Notify(rxQueue)
	in := ethFrame(300, 2)
	binary.BigEndian.PutUint16(in[12:], taptest.TestEtherType)
	if err := unix.Sendto(ps, in, 0, &unix.SockaddrLinklayer{Ifindex: iface.Index, Halen: 6}); err != nil {
		t.Fatalf("send on host interface: %v", err)
	}
	found := false
	h.runUntil("host frame in the guest", func() bool {
		for {
			id, n, ok := h.rx.Used()
			if !ok {
				return found
			}
			for _, p := range bufs {
				if uint32(p.head) != id {
					continue
				}
				got := make([]byte, n)
				if err := h.mem.ReadAt(got, p.addr); err != nil {
					t.Fatal(err)
				}
				if numBuffers(got) != 1 {
					t.Fatalf("num_buffers %d for a small frame", numBuffers(got))
				}
				if bytes.Equal(got[hdrLen:], in) {
					found = true
				}
			}
		}
	})
}
