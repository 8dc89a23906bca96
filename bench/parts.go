package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Timeouts. Guest instructions may run in KVM's instruction emulator
// (about 1.6 M instructions/s on PVM hosts), so every bound is generous;
// on hardware KVM each step takes milliseconds.
const (
	readyTimeout = 90 * time.Second // spawn to the ready line
	blkTimeout   = 10 * time.Minute // ready to the block self test's result
	exitTimeout  = 2 * time.Minute  // result to poweroff
	aliveTimeout = 30 * time.Second // ready to the first echo reply
	idleSettle   = 2 * time.Second  // ready to the memory reading
	guestMemMiB  = 128              // guest RAM of every run
	blkImageSize = 256 << 20        // sparse raw image of the block part
)

// readyLine is what the test guest prints on COM1 once initialised.
var readyLine = regexp.MustCompile(`gureum-testguest: ready`)

// firstGuestLine is the guest's first line: the ready line, or the error
// that stopped its start-up. Line patterns end at the newline: the
// console arrives in pieces, and a match on half a line would cut the
// figures short.
var firstGuestLine = regexp.MustCompile(`gureum-testguest: (ready|error[^\r\n]*)\r?\n`)

// blkResultLine is the block self test's verdict line.
var blkResultLine = regexp.MustCompile(`selftest blk: (ok|fail|skip)[^\r\n]*\r?\n`)

// caseRun is what one measurement needs besides the peer: where to put
// the console log, the guest kernel, and the knobs from the flags.
type caseRun struct {
	o          options
	kernel     string
	consoleDir string
	net        *benchNet // set for the net part only
	vpc        *benchVPC // set for the vpc part only
}

// outcome is what one case run measured.
type outcome struct {
	argv    []string
	metrics map[string]float64
	detail  string
}

// logPath names the console log of one run.
func (c caseRun) logPath(part, peer string, rep int) string {
	return filepath.Join(c.consoleDir, fmt.Sprintf("%s-%s-%d.log", part, peer, rep))
}

// sleepCtx sleeps for d unless ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runBoot starts the guest with a plain command line (it initialises,
// prints the ready line and halts), times the ready line and reads the
// VMM's memory 2 s later. On a peer the guest cannot fully start on
// (stopsEarly), it times the guest's error line instead.
func runBoot(ctx context.Context, c caseRun, p peer, rep int) (outcome, error) {
	g := guestSetup{kernel: c.kernel, cmdline: "", cpus: 1, memMiB: guestMemMiB}
	out := outcome{argv: p.command(g), metrics: map[string]float64{}}
	proc, err := startVMM(out.argv, p.needsPTY, c.logPath("boot", p.name, rep))
	if err != nil {
		return out, err
	}
	defer proc.kill()
	m, at, err := proc.waitFor(ctx, firstGuestLine, readyTimeout)
	if err != nil {
		return out, err
	}
	out.metrics["first_line_s"] = at.Seconds()
	if m[1] == "ready" {
		out.metrics["ready_s"] = at.Seconds()
	} else if p.stopsEarly {
		out.detail = strings.TrimSpace(m[0])
	} else {
		return out, fmt.Errorf("guest: %s", strings.TrimSpace(m[0]))
	}
	if err := sleepCtx(ctx, time.Until(proc.start.Add(at+idleSettle))); err != nil {
		return out, err
	}
	if s := proc.status(); s != "running" {
		return out, fmt.Errorf("the idle guest's VMM ended (%s); last output: %q", s, proc.out.tail(400))
	}
	mem, err := measureMemory(proc.pid(), guestMemMiB)
	if err != nil {
		return out, err
	}
	out.metrics["rss_mib"] = float64(mem.rssKiB) / 1024
	out.metrics["guest_mib"] = float64(mem.guestKiB) / 1024
	out.metrics["own_mib"] = float64(mem.ownKiB) / 1024
	out.metrics["own_file_mib"] = float64(mem.fileKiB) / 1024
	return out, nil
}

// runBlk gives the guest a fresh sparse raw image and runs its block self
// test, which writes blk.mib MiB sequentially, flushes, reads it back and
// prints the MB/s it measured with its own clock (TSC) around the
// requests alone.
func runBlk(ctx context.Context, c caseRun, p peer, rep int) (outcome, error) {
	img, err := os.CreateTemp(c.o.scratch, "gureum-bench-*.raw")
	if err != nil {
		return outcome{}, fmt.Errorf("disk image: %w", err)
	}
	defer os.Remove(img.Name())
	err = img.Truncate(blkImageSize)
	if cerr := img.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return outcome{}, fmt.Errorf("disk image: %w", err)
	}
	g := guestSetup{kernel: c.kernel, cmdline: "selftest blk.mib=" + strconv.Itoa(c.o.blkMiB),
		cpus: 1, memMiB: guestMemMiB, disk: img.Name()}
	out := outcome{argv: p.command(g), metrics: map[string]float64{}}
	proc, err := startVMM(out.argv, p.needsPTY, c.logPath("blk", p.name, rep))
	if err != nil {
		return out, err
	}
	defer proc.kill()
	if _, _, err := proc.waitFor(ctx, readyLine, readyTimeout); err != nil {
		return out, err
	}
	m, _, err := proc.waitFor(ctx, blkResultLine, blkTimeout)
	if err != nil {
		return out, err
	}
	out.detail = strings.TrimSpace(m[0])
	if m[1] != "ok" {
		return out, fmt.Errorf("guest: %s", out.detail)
	}
	r, err := parseBlkResult(out.detail)
	if err != nil {
		return out, err
	}
	out.metrics["write_mbs"] = r.writeMBs
	out.metrics["read_mbs"] = r.readMBs
	code, err := proc.waitExit(ctx, exitTimeout)
	if err != nil {
		return out, fmt.Errorf("after the self test: %w", err)
	}
	if code != 0 {
		return out, fmt.Errorf("VMM exit status %d after the self test, want 0 (poweroff)", code)
	}
	return out, nil
}

// runNet starts the guest in serve mode on the namespace's tap, waits for
// its first echo reply, then floods it with echo requests from inside the
// namespace and reports the replies per second.
func runNet(ctx context.Context, c caseRun, p peer, rep int) (outcome, error) {
	g := guestSetup{kernel: c.kernel, cmdline: "serve ip=" + guestCIDR, cpus: 1, memMiB: guestMemMiB, tap: c.net.tap}
	out := outcome{argv: c.net.wrap(p.command(g)), metrics: map[string]float64{}}
	// The previous run's guest had another MAC address: forget it, or the
	// host would keep sending to the old one until its entry goes stale.
	ip("-n", c.net.ns, "neigh", "flush", "dev", c.net.tap)
	fd, err := openICMPSocket(c.net.ns)
	if err != nil {
		return out, err
	}
	defer unix.Close(fd)
	proc, err := startVMM(out.argv, p.needsPTY, c.logPath("net", p.name, rep))
	if err != nil {
		return out, err
	}
	defer proc.kill()
	if _, _, err := proc.waitFor(ctx, readyLine, readyTimeout); err != nil {
		return out, err
	}
	pg := newPinger(fd, [4]byte{10, 0, 0, 2})
	if err := pg.waitAlive(ctx, aliveTimeout); err != nil {
		return out, fmt.Errorf("%w; last output: %q", err, proc.out.tail(400))
	}
	st, err := pg.flood(ctx, c.o.pings, c.o.pingTime)
	if err != nil {
		return out, err
	}
	out.detail = fmt.Sprintf("%d requests, %d replies in %.2f s", st.sent, st.received, st.elapsed.Seconds())
	if st.received == 0 || st.elapsed <= 0 {
		return out, fmt.Errorf("no replies to the flood (%s)", out.detail)
	}
	out.metrics["echo_pps"] = float64(st.received) / st.elapsed.Seconds()
	out.metrics["echo_loss_pct"] = 100 * float64(st.sent-st.received) / float64(st.sent)
	if s := proc.status(); s != "running" {
		return out, fmt.Errorf("the VMM ended during the flood (%s)", s)
	}
	return out, nil
}
