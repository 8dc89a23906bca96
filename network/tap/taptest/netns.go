// Package taptest helps tests that need real tap devices: it skips them
// without privileges and runs them in a network namespace of their own, so
// that nothing they do touches the host's interfaces.
package taptest

import (
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// RequireRoot skips a test that needs root and /dev/net/tun, or fails it
// when GUREUM_REQUIRE_KVM=1 asks for every privileged test to run.
func RequireRoot(t testing.TB) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root for tap devices and network namespaces"
	} else if _, err := os.Stat("/dev/net/tun"); err != nil {
		why = "needs /dev/net/tun"
	}
	if why == "" {
		return
	}
	if os.Getenv("GUREUM_REQUIRE_KVM") == "1" {
		t.Fatalf("%s (GUREUM_REQUIRE_KVM=1 forbids skipping)", why)
	}
	t.Skip(why)
}

// EnterNetns moves the calling goroutine, locked to its OS thread, into a
// fresh network namespace. Sockets and taps made afterwards on this
// goroutine live there. A network namespace belongs to a thread, not a
// process, hence the lock.
//
// The returned function moves the thread back and unlocks it; call it with
// defer on the same goroutine. If moving back fails the thread stays locked
// and Go ends it with the goroutine. The namespace, and every tap in it,
// disappears once no thread or fd refers to it.
func EnterNetns(t testing.TB) (leave func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("open current network namespace: %v", err)
	}
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		unix.Close(orig)
		runtime.UnlockOSThread()
		t.Fatalf("unshare network namespace: %v", err)
	}
	return func() {
		defer unix.Close(orig)
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			t.Errorf("return to the original network namespace: %v (thread left locked)", err)
			return
		}
		runtime.UnlockOSThread()
	}
}

// SetLinkUp brings interface name up (SIOCSIFFLAGS) in the calling thread's
// namespace.
func SetLinkUp(t testing.TB, name string) {
	t.Helper()
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		t.Fatalf("interface name %q: %v", name, err)
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		t.Fatalf("get flags of %s: %v", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
		t.Fatalf("set %s up: %v", name, err)
	}
}

// PacketSocket opens an AF_PACKET socket bound to interface ifindex that sees
// every frame the interface sends or receives and can send raw frames on
// it. Reads time out after 5 seconds. The socket is closed at test cleanup.
func PacketSocket(t testing.TB, ifindex int) int {
	t.Helper()
	proto := htons(unix.ETH_P_ALL)
	s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
	if err != nil {
		t.Fatalf("packet socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(s) })
	if err := unix.Bind(s, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifindex}); err != nil {
		t.Fatalf("bind packet socket: %v", err)
	}
	tv := unix.Timeval{Sec: 5}
	if err := unix.SetsockoptTimeval(s, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatalf("packet socket timeout: %v", err)
	}
	return s
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// TestEtherType is the IEEE "local experimental" EtherType. Test frames use
// it so that readers can skip the IPv6 neighbour discovery and similar
// traffic that appears on any interface that is up.
const TestEtherType = 0x88b5
