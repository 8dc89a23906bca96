package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"gureum/network/namespace"
	"gureum/network/vpc"
)

// The network of the vpc part is a real gureum VPC (network/vpc): its
// namespace with the bridge, one tap per peer on that bridge, and a client
// namespace standing on the bridge through a veth pair, as a test host or
// load balancer front end would:
//
//	 client namespace            VPC namespace gureum-vpc-bench<pid>
//	┌──────────────┐   veth   ┌──────────────────────────────────┐
//	│ eth0         ├──────────┤ gbvpc-client ─┐                  │
//	│ 10.0.0.10/24 │          │               gureum-br0          │
//	└──────────────┘          │ gbvpc-gureum ─┤  (bridge)         │
//	                          │ gbvpc-qemu  ──┘                   │
//	                          └──────┼──────────────┼─────────────┘
//	                           gureum-vmm        QEMU microvm
//
// Both peers run the same guest with the same command line and address,
// one after the other (a repetition starts one VMM, measures and kills it),
// so neither guest takes CPU time from the other's measurement. Nothing
// is configured outside the two namespaces.

// Addresses and names of the vpc part.
const (
	vpcClientName = "eth0"
	vpcClientPort = "gbvpc-client" // bridge end of the client's veth
	vpcTapPrefix  = "gbvpc-"       // + peer name: the peer's tap
)

// vpcClientAddr is the client's address, in the guest's subnet.
var vpcClientAddr = netip.MustParsePrefix("10.0.0.10/24")

// benchVPC is the VPC, its taps and the client namespace of the vpc part.
// It is made once per part; its methods may be called from the benchmark's
// goroutine and (dial) from any goroutine.
type benchVPC struct {
	v      *vpc.VPC
	client string // client namespace name
	// clientNS and homeNS are open handles on the client's namespace and
	// on the harness's own, kept for the part's life so that every dial
	// switches namespaces with two setns(2) calls and nothing else.
	clientNS, homeNS int
}

// createBenchVPC makes the VPC, a tap per peer plugged into its bridge and
// the client namespace with its veth. On error everything made so far is
// removed again.
func createBenchVPC(peers []peer) (*benchVPC, error) {
	b := &benchVPC{client: fmt.Sprintf("gureum-bench-client-%d", os.Getpid()), clientNS: -1, homeNS: -1}
	v, err := vpc.Create(fmt.Sprintf("vpc-bench%d", os.Getpid()), "")
	if err != nil {
		return nil, err
	}
	b.v = v
	if err := b.setUp(peers); err != nil {
		b.remove()
		return nil, err
	}
	return b, nil
}

func (b *benchVPC) setUp(peers []peer) error {
	for _, p := range peers {
		if err := b.v.AddTap(b.tap(p)); err != nil {
			return err
		}
	}
	if err := namespace.Create(b.client); err != nil {
		return err
	}
	err := b.v.ConnectNamespace(vpc.Host{Namespace: b.client, Name: vpcClientName, Port: vpcClientPort, Address: vpcClientAddr})
	if err != nil {
		return err
	}
	if b.clientNS, err = unix.Open(namespace.Path(b.client), unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
		return fmt.Errorf("open client namespace: %w", err)
	}
	if b.homeNS, err = unix.Open("/proc/self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
		return fmt.Errorf("open own namespace: %w", err)
	}
	return nil
}

// tap is the peer's tap on the bridge (interface names hold 15 bytes).
func (b *benchVPC) tap(p peer) string {
	name := vpcTapPrefix + p.name
	if len(name) > 15 {
		name = name[:15]
	}
	return name
}

// wrap returns argv run inside the VPC's namespace, where the taps are.
// ip netns exec execs the command in place, so the PID of the started
// process is the VMM's.
func (b *benchVPC) wrap(argv []string) []string {
	return append([]string{"ip", "netns", "exec", b.v.Namespace()}, argv...)
}

// forgetNeighbours flushes the client's ARP cache. Every peer's guest has
// the same address but its own MAC; without the flush the client would
// keep sending to the previous guest's MAC until the entry went stale.
func (b *benchVPC) forgetNeighbours() {
	ip("-n", b.client, "neigh", "flush", "dev", vpcClientName)
}

// remove deletes the taps, the VPC namespace and the client namespace
// (the veth pair goes with them). Errors are reported, not returned:
// removal runs on the way out, also after a failure.
func (b *benchVPC) remove() {
	for _, fd := range []int{b.clientNS, b.homeNS} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	if taps, err := b.v.Taps(); err == nil {
		for _, t := range taps {
			if err := b.v.RemoveTap(t); err != nil {
				fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			}
		}
	}
	if err := b.v.Delete(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: remove VPC: %v\n", err)
	}
	if namespace.Exists(b.client) {
		if err := namespace.Delete(b.client); err != nil {
			fmt.Fprintf(os.Stderr, "bench: remove client namespace: %v\n", err)
		}
	}
}

// dial opens a TCP connection from inside the client namespace; it is the
// HTTP client's DialContext. A socket belongs to the namespace of the
// thread that creates it, for its whole life, so only the creation needs
// the namespace: the goroutine locks its thread, enters the client
// namespace, dials (the thread stays locked while the connect waits) and
// goes back. If going back fails the thread stays locked and Go ends it
// with the goroutine, so no thread is left in the wrong namespace.
func (b *benchVPC) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	runtime.LockOSThread()
	if err := unix.Setns(b.clientNS, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("enter client namespace: %w", err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if serr := unix.Setns(b.homeNS, unix.CLONE_NEWNET); serr != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, fmt.Errorf("leave client namespace: %w", serr)
	}
	runtime.UnlockOSThread()
	return conn, err
}
