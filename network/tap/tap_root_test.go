package tap

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"gureum/network/tap/taptest"
)

func testFrame(payload string) []byte {
	f := make([]byte, 14, 14+len(payload))
	copy(f[0:6], []byte{0x02, 0, 0, 0, 0, 0x01})  // destination
	copy(f[6:12], []byte{0x02, 0, 0, 0, 0, 0x02}) // source
	binary.BigEndian.PutUint16(f[12:], taptest.TestEtherType)
	return append(f, payload...)
}

func TestRealTapRoundTrip(t *testing.T) {
	taptest.RequireRoot(t)
	defer taptest.EnterNetns(t)()

	tp, err := Open("gtest%d")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer tp.Close()
	if tp.Name() == "gtest%d" || tp.Name() == "" {
		t.Fatalf("Name() = %q, want the kernel's expansion of gtest%%d", tp.Name())
	}
	taptest.SetLinkUp(t, tp.Name())
	iface, err := net.InterfaceByName(tp.Name())
	if err != nil {
		t.Fatalf("interface %s not in the test namespace: %v", tp.Name(), err)
	}

	// Offloads: the kernel accepts TSO only together with checksum offload.
	if err := tp.SetOffload(OffloadCsum | OffloadTSO4 | OffloadTSO6); err != nil {
		t.Fatalf("SetOffload(csum|tso4|tso6): %v", err)
	}
	if err := tp.SetOffload(OffloadTSO4); err == nil {
		t.Fatal("SetOffload(tso4 without csum) succeeded")
	}
	if err := tp.SetOffload(0); err != nil {
		t.Fatalf("SetOffload(0): %v", err)
	}

	// An AF_PACKET socket on the interface sees what the tap writes (as
	// frames received) and can send frames that the tap then reads.
	ps := taptest.PacketSocket(t, iface.Index)

	// Guest to host: header (all zero: no offload) and frame gathered from
	// separate buffers.
	out := testFrame("from the tap fd")
	var hdr [VnetHdrLen]byte
	if _, err := tp.WritePacket(hdr[:], out[:14], out[14:]); err != nil {
		t.Fatalf("WritePacket: %v", err)
	}
	buf := make([]byte, 2048)
	for {
		n, _, err := unix.Recvfrom(ps, buf, 0)
		if err != nil {
			t.Fatalf("packet socket did not see the frame written to the tap: %v", err)
		}
		if n >= 14 && binary.BigEndian.Uint16(buf[12:]) == taptest.TestEtherType {
			if !bytes.Equal(buf[:n], out) {
				t.Fatalf("host saw %x, want %x", buf[:n], out)
			}
			break
		}
	}

	// Host to guest: the tap becomes readable and yields header + frame.
	in := testFrame("from the packet socket")
	if err := unix.Sendto(ps, in, 0, &unix.SockaddrLinklayer{Ifindex: iface.Index, Halen: 6}); err != nil {
		t.Fatalf("send on packet socket: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err := tp.WaitReadable(ctx)
		cancel()
		if err != nil {
			t.Fatalf("tap never became readable: %v", err)
		}
		var h [VnetHdrLen]byte
		frame := make([]byte, 2048)
		n, err := tp.ReadPacket(h[:], frame)
		if IsEmpty(err) {
			continue
		}
		if err != nil {
			t.Fatalf("ReadPacket: %v", err)
		}
		if n < VnetHdrLen+14 || binary.BigEndian.Uint16(frame[12:]) != taptest.TestEtherType {
			continue // IPv6 neighbour discovery and the like
		}
		if got := frame[:n-VnetHdrLen]; !bytes.Equal(got, in) {
			t.Fatalf("tap read %x, want %x", got, in)
		}
		break
	}
}

func TestPersistentCreateDestroy(t *testing.T) {
	taptest.RequireRoot(t)
	defer taptest.EnterNetns(t)()

	name, err := Create("gpers0")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	destroyed := false
	defer func() {
		if !destroyed {
			Destroy(name)
		}
	}()
	// It outlives the fd that made it, and Open attaches to it.
	if _, err := net.InterfaceByName(name); err != nil {
		t.Fatalf("persistent tap %s gone after Create returned: %v", name, err)
	}
	tp, err := Open(name)
	if err != nil {
		t.Fatalf("Open existing persistent tap: %v", err)
	}
	tp.Close()
	if _, err := net.InterfaceByName(name); err != nil {
		t.Fatalf("persistent tap %s gone after its user closed: %v", name, err)
	}
	if err := Destroy(name); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	destroyed = true
	if _, err := net.InterfaceByName(name); err == nil {
		t.Fatalf("tap %s still exists after Destroy", name)
	}
	if err := Destroy(name); err == nil {
		t.Fatal("Destroy of a missing tap succeeded")
	}
}
