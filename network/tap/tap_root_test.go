package tap

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// requireRoot skips a test that needs root and /dev/net/tun, or fails it
// when GUREUM_REQUIRE_KVM=1 asks for every privileged test to run.
func requireRoot(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root"
	} else if _, err := os.Stat(tunDevice); err != nil {
		why = "needs " + tunDevice
	}
	if why == "" {
		return
	}
	if os.Getenv("GUREUM_REQUIRE_KVM") == "1" {
		t.Fatalf("%s (GUREUM_REQUIRE_KVM=1)", why)
	}
	t.Skip(why)
}

// enterNewNetns moves the calling goroutine, locked to its thread, into a
// fresh network namespace, so nothing the test does touches the host's
// interfaces. The returned function moves the thread back; if that fails the
// thread stays locked and exits with the goroutine, taking the namespace
// with it. The namespace disappears when its last thread and fd are gone.
func enterNewNetns(t *testing.T) (restore func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("open current netns: %v", err)
	}
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		unix.Close(orig)
		runtime.UnlockOSThread()
		t.Fatalf("unshare network namespace: %v", err)
	}
	return func() {
		defer unix.Close(orig)
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			t.Errorf("return to original netns: %v (thread left locked)", err)
			return
		}
		runtime.UnlockOSThread()
	}
}

// setLinkUp brings an interface up with SIOCSIFFLAGS, in the thread's
// namespace.
func setLinkUp(t *testing.T, name string) {
	t.Helper()
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		t.Fatalf("get flags of %s: %v", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
		t.Fatalf("set %s up: %v", name, err)
	}
}

// testEtherType is the IEEE "local experimental" EtherType: nothing else on
// the interface (IPv6 neighbour discovery, say) uses it.
const testEtherType = 0x88b5

func testFrame(payload string) []byte {
	f := make([]byte, 14, 14+len(payload))
	copy(f[0:6], []byte{0x02, 0, 0, 0, 0, 0x01})  // destination
	copy(f[6:12], []byte{0x02, 0, 0, 0, 0, 0x02}) // source
	binary.BigEndian.PutUint16(f[12:], testEtherType)
	return append(f, payload...)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func TestRealTapRoundTrip(t *testing.T) {
	requireRoot(t)
	defer enterNewNetns(t)()

	tp, err := Open("gtest%d")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer tp.Close()
	if tp.Name() == "gtest%d" || tp.Name() == "" {
		t.Fatalf("Name() = %q, want the kernel's expansion of gtest%%d", tp.Name())
	}
	setLinkUp(t, tp.Name())
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
	ps, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		t.Fatalf("packet socket: %v", err)
	}
	defer unix.Close(ps)
	if err := unix.Bind(ps, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: iface.Index}); err != nil {
		t.Fatalf("bind packet socket: %v", err)
	}
	tv := unix.Timeval{Sec: 5}
	if err := unix.SetsockoptTimeval(ps, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}

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
		if n >= 14 && binary.BigEndian.Uint16(buf[12:]) == testEtherType {
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
		if n < VnetHdrLen+14 || binary.BigEndian.Uint16(frame[12:]) != testEtherType {
			continue // IPv6 neighbour discovery and the like
		}
		if got := frame[:n-VnetHdrLen]; !bytes.Equal(got, in) {
			t.Fatalf("tap read %x, want %x", got, in)
		}
		break
	}
}

func TestPersistentCreateDestroy(t *testing.T) {
	requireRoot(t)
	defer enterNewNetns(t)()

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
