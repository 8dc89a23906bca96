package nested

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// RunConfig describes one boot of L1 under QEMU.
type RunConfig struct {
	QEMU      string // default qemu-system-x86_64
	Kernel    string // L1's bzImage
	Initrd    string // L1's initramfs (BuildL1)
	Append    string // extra kernel command line
	MemoryMiB int    // default 2048
	CPUs      int    // default 2
	// Timeout bounds the whole run; QEMU is killed after it.
	Timeout time.Duration
	// StallAfter: when L1 prints nothing for this long (its /init prints
	// a heartbeat every 5 s), it is taken to be frozen: its registers are
	// dumped through the QEMU monitor and QEMU is killed. Default 45 s.
	StallAfter time.Duration
	// Dir holds the monitor socket; it must exist.
	Dir string
	// Console, when set, gets a copy of L1's serial output as it comes.
	Console io.Writer
}

// Run is the outcome of one L1 boot.
type Run struct {
	Console   string        // everything L1 wrote to its serial console
	Began     bool          // the tests began (MarkerTestsBegin seen)
	Ended     bool          // the test binary finished (MarkerTestsEnd seen)
	Status    int           // the test binary's exit status, when Ended
	Stalled   bool          // output stopped for StallAfter
	Lockup    bool          // L1's kernel reported a CPU stuck in the kernel
	TimedOut  bool          // Timeout passed
	Registers string        // `info registers -a` when Stalled or TimedOut
	Elapsed   time.Duration // wall clock of the QEMU process
	Exit      error         // QEMU's exit (nil: status 0)
}

// EmulatorFroze reports a failure proven not to be ours: L1 went silent —
// not even its heartbeat — either before our tests started (nothing of
// gureum had run yet) or after its heartbeat had been running during the
// tests. The heartbeat is a shell loop of L1's own /init; no user-space
// program in L1, gureum-vmm included, can stop it from printing, so its
// silence means L1's kernel or QEMU's emulation of it stopped. 2 of 20 L1
// runs froze this way while gokvm was being evaluated on these machines,
// and about 1 in 10 L1 runs with our tests (QEMU 7.2's SVM emulation is
// the suspect). This is the only failure worth a retry. A test of ours
// that hangs leaves the heartbeat going and ends in the run's timeout,
// which is never retried.
func (r *Run) EmulatorFroze() bool {
	if !r.Stalled {
		return false
	}
	if !r.Began {
		return true
	}
	begin := strings.Index(r.Console, MarkerTestsBegin)
	return strings.Contains(r.Console[begin:], MarkerAlive)
}

// L1KernelPanicked reports the other failure proven not to be ours: L1's
// own kernel panicked ("Kernel panic - not syncing" on its console) and,
// with panic=-1 and -no-reboot, QEMU ended before the tests did. gureum
// runs in L1 as user-space programs, which cannot corrupt kernel state
// without a kernel (or emulator) bug; the panics seen on these machines
// were "corrupted stack end detected inside scheduler" in a vCPU thread's
// KVM_RUN, i.e. L1's KVM on QEMU's emulated SVM. docs/nested.md counts
// them.
func (r *Run) L1KernelPanicked() bool {
	return !r.Ended && !r.Stalled && !r.TimedOut && strings.Contains(r.Console, "Kernel panic - not syncing")
}

// lockupRE matches what L1's kernel prints when one of its CPUs has been
// stuck in kernel mode, not scheduling, for over 20 s (the soft lockup
// watchdog) or not even taking interrupts (the hard lockup one). Only at
// the start of a line: an L2 guest's console quoted in a test's failure
// message is indented, and an L2 kernel's lock-up is not L1's.
var lockupRE = regexp.MustCompile(`(?m)^\r?\[ *[0-9]+\.[0-9]+\] (watchdog: BUG: soft lockup|.*Watchdog detected hard LOCKUP)`)

// L1LockedUp reports a third failure proven not to be ours: L1's kernel
// saw one of its CPUs stuck in kernel mode. A user-space program (gureum
// in L1 is only that) can make a CPU busy but cannot keep the kernel from
// scheduling; the one seen on these machines was a gureum-vmm vCPU thread
// stuck inside KVM_RUN, i.e. L1's KVM on QEMU's emulated SVM, while L1's
// own heartbeat stopped. The run is ended at the first such report
// rather than at its timeout.
func (r *Run) L1LockedUp() bool { return r.Lockup && !r.Ended }

// L1Reset reports a fourth: QEMU ended normally before L1's /init printed
// its end marker, with no panic on the console. Under -no-reboot QEMU ends
// when L1's machine resets or powers off. The only program in L1 that
// powers it off is its /init, after the marker, and nothing of gureum
// calls reboot(2); so L1's kernel reset the machine without a word (a
// triple fault) or the emulator did. Seen once, in a CI run on
// 2026-11-27 during TestLinuxGuestEnds/cloud/poweroff.
func (r *Run) L1Reset() bool {
	return r.Exit == nil && !r.Ended && !r.Stalled && !r.TimedOut && !r.Lockup && !r.L1KernelPanicked()
}

// notOurs names the failure when the run failed in one of the ways above,
// proven not to be ours, and is "" otherwise.
func (r *Run) notOurs() string {
	switch {
	case r.EmulatorFroze():
		return "L1 froze, heartbeat and all"
	case r.L1KernelPanicked():
		return "L1's kernel panicked"
	case r.L1LockedUp():
		return "L1's kernel reported a CPU locked up"
	case r.L1Reset():
		return "L1's machine reset without a word before the tests ended"
	}
	return ""
}

// Retryable reports whether the run failed in a way proven not to be ours.
func (r *Run) Retryable() bool { return r.notOurs() != "" }

// Summary is a one-line account of the run for logs and failures.
func (r *Run) Summary() string {
	var what string
	switch {
	case r.Ended:
		what = fmt.Sprintf("tests ended with status %d", r.Status)
	case r.Stalled && !r.Began:
		what = "L1 froze before the tests began (no output, no heartbeat)"
	case r.Stalled:
		what = "L1 froze during the tests (no output, no heartbeat)"
	case r.TimedOut:
		what = "timed out"
	case r.Lockup:
		what = "L1's kernel reported a CPU locked up"
	case r.L1Reset():
		what = "L1's machine reset (QEMU ended with status 0) before the tests ended"
	default:
		what = fmt.Sprintf("QEMU ended (%v) before the tests ended", r.Exit)
	}
	return fmt.Sprintf("%s after %.1fs", what, r.Elapsed.Seconds())
}

var endRE = regexp.MustCompile(regexp.QuoteMeta(MarkerTestsEnd) + ` status=(\d+)`)

// RunL1 boots L1 once and waits for it to end, stall or time out. The
// error is for failures to start QEMU; everything after that is in Run.
func RunL1(ctx context.Context, cfg RunConfig) (*Run, error) {
	if cfg.QEMU == "" {
		cfg.QEMU = "qemu-system-x86_64"
	}
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = 2048
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 2
	}
	if cfg.StallAfter == 0 {
		cfg.StallAfter = 45 * time.Second
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Minute
	}
	mon := filepath.Join(cfg.Dir, "l1-monitor.sock")
	os.Remove(mon)
	accel := "tcg"
	if cfg.CPUs > 1 {
		// One host thread per emulated CPU.
		accel = "tcg,thread=multi"
	}
	// -cpu qemu64,+svm,+npt: a plain 64-bit CPU plus AMD's virtualization
	// extension and nested paging, which TCG emulates; L1's kvm_amd
	// drives them as it would real hardware.
	args := []string{
		"-accel", accel, "-cpu", "qemu64,+svm,+npt",
		"-m", strconv.Itoa(cfg.MemoryMiB), "-smp", strconv.Itoa(cfg.CPUs),
		"-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
		"-kernel", cfg.Kernel, "-initrd", cfg.Initrd,
		"-append", strings.TrimSpace("console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off " + cfg.Append),
		"-monitor", "unix:" + mon + ",server,nowait",
	}
	cmd := exec.Command(cfg.QEMU, args...)
	cmd.Stdin = nil
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w (install qemu-system-x86)", cfg.QEMU, err)
	}

	r := &Run{}
	var mu sync.Mutex
	var console bytes.Buffer
	grew := make(chan struct{}, 1)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 32<<10)
		for {
			n, err := out.Read(buf)
			if n > 0 {
				mu.Lock()
				console.Write(buf[:n])
				mu.Unlock()
				if cfg.Console != nil {
					cfg.Console.Write(buf[:n])
				}
				select {
				case grew <- struct{}{}:
				default:
				}
			}
			if err != nil {
				return
			}
		}
	}()
	exited := make(chan error, 1)
	go func() {
		<-readDone
		exited <- cmd.Wait()
	}()

	timeout := time.NewTimer(cfg.Timeout)
	defer timeout.Stop()
	stall := time.NewTimer(cfg.StallAfter)
	defer stall.Stop()
	kill := func() {
		// QEMU leads its own process group; its pid is the group id.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	scanned := 0 // console bytes already searched for lock-up reports
wait:
	for {
		select {
		case <-grew:
			mu.Lock()
			all := console.Bytes()
			// From the start of the line the last search ended in: a
			// report may straddle two reads, and must begin a line.
			locked := lockupRE.Match(all[bytes.LastIndexByte(all[:scanned], '\n')+1:])
			scanned = len(all)
			mu.Unlock()
			if locked {
				r.Lockup = true
				r.Registers = monitorCommand(mon, "info registers -a")
				kill()
				break wait
			}
			if !stall.Stop() {
				select {
				case <-stall.C:
				default:
				}
			}
			stall.Reset(cfg.StallAfter)
		case <-stall.C:
			r.Stalled = true
			r.Registers = monitorCommand(mon, "info registers -a")
			kill()
			break wait
		case <-timeout.C:
			r.TimedOut = true
			r.Registers = monitorCommand(mon, "info registers -a")
			kill()
			break wait
		case <-ctx.Done():
			kill()
			break wait
		case err := <-exited:
			exited <- err
			break wait
		}
	}
	r.Exit = <-exited
	r.Elapsed = time.Since(start)
	mu.Lock()
	r.Console = strings.ReplaceAll(console.String(), "\r\n", "\n")
	mu.Unlock()
	if s := strings.TrimSpace(stderr.String()); s != "" {
		r.Console += "\n[qemu stderr] " + s + "\n"
	}
	r.Began = strings.Contains(r.Console, MarkerTestsBegin)
	if m := endRE.FindStringSubmatch(r.Console); m != nil {
		r.Ended = true
		r.Status, _ = strconv.Atoi(m[1])
	}
	return r, nil
}

// RunL1WithRetry runs L1 and, only if it failed in a way proven not to be
// ours (L1 froze, its kernel panicked or reported a lock-up, or its
// machine reset silently), runs it once more. It returns every attempt,
// the last one first.
func RunL1WithRetry(ctx context.Context, cfg RunConfig, logf func(string, ...any)) ([]*Run, error) {
	var runs []*Run
	for attempt := 1; attempt <= 2; attempt++ {
		r, err := RunL1(ctx, cfg)
		if err != nil {
			return runs, err
		}
		runs = append([]*Run{r}, runs...)
		logf("L1 run %d: %s", attempt, r.Summary())
		why := r.notOurs()
		if why == "" || ctx.Err() != nil {
			break
		}
		next := "; running L1 again"
		if attempt == 2 {
			next = ""
		}
		if r.Registers != "" {
			next += "; registers:\n" + r.Registers
		}
		logf("%s (L1's or the emulator's failure, not ours)%s", why, next)
	}
	return runs, nil
}

var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// monitorCommand sends one command to QEMU's human monitor on a unix
// socket and returns its answer, or a line saying why it could not.
func monitorCommand(sock, command string) string {
	c, err := net.DialTimeout("unix", sock, 2*time.Second)
	if err != nil {
		return fmt.Sprintf("(monitor unreachable: %v)", err)
	}
	defer c.Close()
	readPrompt := func() (string, error) {
		var b bytes.Buffer
		buf := make([]byte, 64<<10)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for !bytes.HasSuffix(b.Bytes(), []byte("(qemu) ")) {
			n, err := c.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				return b.String(), err
			}
		}
		return b.String(), nil
	}
	if _, err := readPrompt(); err != nil {
		return fmt.Sprintf("(monitor: no prompt: %v)", err)
	}
	if _, err := io.WriteString(c, command+"\n"); err != nil {
		return fmt.Sprintf("(monitor: %v)", err)
	}
	ans, err := readPrompt()
	ans = ansiEscape.ReplaceAllString(ans, "")
	ans = strings.TrimSuffix(ans, "(qemu) ")
	// The monitor echoes the command first.
	if i := strings.Index(ans, "\n"); i >= 0 && strings.Contains(ans[:i], strings.Fields(command)[0]) {
		ans = ans[i+1:]
	}
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		ans += fmt.Sprintf("\n(monitor: %v)", err)
	}
	return strings.TrimSpace(strings.ReplaceAll(ans, "\r", ""))
}
