package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Addresses of the benchmark network. They exist only inside the
// namespace the harness makes; nothing is configured outside it.
const (
	hostCIDR  = "10.0.0.1/24"
	guestIP   = "10.0.0.2"
	guestCIDR = guestIP + "/24"
)

// benchNet is a network namespace holding one tap device with the host
// side's address. The VMM runs inside the namespace (ip netns exec) and
// attaches to the tap; the pinger opens its socket there too.
type benchNet struct {
	ns  string
	tap string
}

// ip runs the ip(8) command and folds its output into the error.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// createNet makes the namespace and a persistent tap with vnet headers
// (both VMMs ask for them), gives the host side 10.0.0.1/24 and brings the
// links up. On error everything made so far is removed again.
func createNet() (*benchNet, error) {
	n := &benchNet{ns: fmt.Sprintf("gureum-bench-%d", os.Getpid()), tap: "gbtap0"}
	if err := ip("netns", "add", n.ns); err != nil {
		return nil, err
	}
	steps := [][]string{
		{"-n", n.ns, "link", "set", "lo", "up"},
		{"-n", n.ns, "tuntap", "add", "dev", n.tap, "mode", "tap", "vnet_hdr"},
		{"-n", n.ns, "addr", "add", hostCIDR, "dev", n.tap},
		{"-n", n.ns, "link", "set", n.tap, "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			n.remove()
			return nil, err
		}
	}
	return n, nil
}

// remove deletes the tap and then the namespace. A persistent tap is
// deleted explicitly rather than trusted to vanish with its namespace.
// Errors are reported, not returned: removal runs on the way out.
func (n *benchNet) remove() {
	ip("-n", n.ns, "link", "del", n.tap) // absent if creation failed early
	if err := ip("netns", "del", n.ns); err != nil {
		fmt.Fprintf(os.Stderr, "bench: remove namespace: %v\n", err)
	}
}

// wrap returns argv run inside the namespace. ip netns exec execs the
// command in place, so the PID of the started process is the VMM's.
func (n *benchNet) wrap(argv []string) []string {
	return append([]string{"ip", "netns", "exec", n.ns}, argv...)
}
