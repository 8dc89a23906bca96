// Command bench compares gureum-vmm with QEMU's microvm machine and gokvm on
// gureum's own test guest (images/testguest). It measures, in one run and
// with every peer on the same guest:
//
//   - start to ready: process spawn until the guest's "ready" line arrives
//     on the serial console, and the resident memory of the idle guest 2 s
//     later (split into guest RAM the guest touched and the VMM's own);
//   - virtio-blk: the sequential MB/s the guest's block self test reports;
//   - virtio-net: ICMP echo replies per second from the guest in "serve"
//     mode, flooded from inside a network namespace the harness makes;
//   - a VPC (part vpc): ping latency and HTTP requests per second from a
//     client namespace on a gureum VPC's bridge to the guest in "serve"
//     mode on a tap of the same bridge;
//   - the control plane (part cp, gureum only): a real gureum daemon, from
//     the run-instances call to instances running with the ready line, for
//     1, 20 and 50 instances, and the daemon's memory with 50 running.
//
// Usage (from the repository root, as root, with /dev/kvm):
//
//	GUREUM_BIN=$PWD/bin go run ./bench [-reps N] [-only REGEX] [-out DIR]
//
// Every VMM process is bounded by a timeout and killed by its PID; the
// namespaces and taps of the network parts are removed on the way out,
// also after a failure or Ctrl-C. docs/benchmarks.md explains the method and
// holds the numbers of a real run.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"syscall"
	"time"
)

// options are the command-line settings of one benchmark run.
type options struct {
	reps     int
	only     *regexp.Regexp
	outDir   string
	binDir   string
	qemu     string
	gokvm    string
	scratch  string
	blkMiB   int
	pings    int
	pingTime time.Duration
	pingGap  time.Duration // between the vpc part's latency pings
	// tracePing records kernel trace events during the vpc part's
	// latency pings and splits them into segments (pingtrace.go).
	tracePing bool
}

func main() {
	os.Exit(run())
}

func run() int {
	var o options
	var only string
	flag.IntVar(&o.reps, "reps", 5, "repetitions of each measurement per peer")
	flag.StringVar(&only, "only", "", "run only cases whose \"part/peer\" name matches this regular expression (parts: boot, blk, net, blkraw, blkqcow2, cp, vpc; peers: gureum, qemu, gokvm; cp runs on gureum only)")
	flag.StringVar(&o.outDir, "out", "bench/results", "directory for the results (a time-stamped folder is made inside)")
	flag.StringVar(&o.binDir, "bin", os.Getenv("GUREUM_BIN"), "directory holding gureum-vmm and testguest.elf (default $GUREUM_BIN, else ./bin)")
	flag.StringVar(&o.qemu, "qemu", "qemu-system-x86_64", "QEMU binary")
	flag.StringVar(&o.gokvm, "gokvm", "", "gokvm binary (default: go install "+gokvmModule+" into a temporary GOBIN)")
	flag.StringVar(&o.scratch, "scratch", "", "directory for the raw disk images (default: the system temp dir)")
	flag.IntVar(&o.blkMiB, "blk-mib", 128, "MiB the guest's block self test writes and reads back")
	flag.IntVar(&o.pings, "pings", 2000, "ICMP echo requests per network run")
	flag.DurationVar(&o.pingTime, "ping-time", 60*time.Second, "upper bound on one echo flood")
	flag.DurationVar(&o.pingGap, "ping-gap", 2*time.Millisecond, "pause between the vpc part's latency pings (0: back to back, the guest never idles)")
	flag.BoolVar(&o.tracePing, "trace-ping", false, "vpc part: record kernel trace events during the latency pings and split each round trip into segments (needs tracefs; traced round trips are slower)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected argument %q\n", flag.Arg(0))
		return 2
	}
	re, err := regexp.Compile(only)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: -only: %v\n", err)
		return 2
	}
	o.only = re
	if o.reps < 1 {
		fmt.Fprintln(os.Stderr, "bench: -reps must be at least 1")
		return 2
	}
	// Warm-up requests use sequence numbers from 60000 on.
	if o.pings < 1 || o.pings > 50000 {
		fmt.Fprintln(os.Stderr, "bench: -pings must be between 1 and 50000")
		return 2
	}
	if o.pingGap < 0 || o.pingGap > time.Second {
		fmt.Fprintln(os.Stderr, "bench: -ping-gap must be between 0 and 1s")
		return 2
	}
	if o.blkMiB < 1 || o.blkMiB > blkImageSize>>20 {
		fmt.Fprintf(os.Stderr, "bench: -blk-mib must be between 1 and %d\n", blkImageSize>>20)
		return 2
	}
	if o.binDir == "" {
		o.binDir = "bin"
	}
	if o.binDir, err = filepath.Abs(o.binDir); err != nil {
		fmt.Fprintf(os.Stderr, "bench: -bin: %v\n", err)
		return 2
	}
	if o.scratch == "" {
		o.scratch = os.TempDir()
	}

	// Ctrl-C or SIGTERM cancels the context: the running VMM is killed by
	// PID and the network namespace removed before the harness exits.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := benchmark(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	return 0
}
