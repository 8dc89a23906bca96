package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The vpc part measures what a user of a VPC sees of the VMM's network
// path: from a client namespace on a VPC's bridge (vpcnet.go) to the test
// guest in serve mode on a tap of that bridge,
//
//   - ping latency: vpcPings echo requests one at a time, -ping-gap
//     apart (default 2 ms: the guest is idle, as between a real client's
//     requests, and the VMM must wake it), median and 99th percentile
//     round trip;
//   - HTTP requests per second: GET / from a Go HTTP client dialing inside
//     the client namespace, one request per connection (the guest speaks
//     HTTP/1.0), first by one client in sequence, then by vpcClients
//     clients at once; each bounded by vpcRequests and vpcHTTPTime.
//
// Both peers get the same guest, command line and address; a repetition
// runs one peer's VMM alone.

// Settings of the vpc part.
const (
	vpcPings       = 1000
	vpcPingTimeout = time.Second // a request without a reply by then is lost
	vpcRequests    = 2000        // per HTTP measurement
	vpcHTTPTime    = 20 * time.Second
	vpcClients     = 4
	vpcGetTimeout  = 5 * time.Second // one GET, connect to last byte
)

func init() {
	parts = append(parts, part{name: "vpc", devices: true, run: runVPC})
	metrics = append(metrics, vpcMetrics()...)
}

// vpcMetrics are the table rows of the vpc part.
func vpcMetrics() []metric {
	return []metric{
		{part: "vpc", key: "ping_median_us", label: "VPC: ping round trip, median (µs)", format: "%.0f", goal: atMostQEMU},
		{part: "vpc", key: "ping_p99_us", label: "VPC: ping round trip, 99th percentile (µs)", format: "%.0f", goal: atMostQEMU},
		{part: "vpc", key: "ping_read_median_us", label: "VPC: ping round trip until the client has read the reply, median (µs)", format: "%.0f"},
		{part: "vpc", key: "ping_loss_pct", label: "VPC: echo requests unanswered (%)", format: "%.1f"},
		{part: "vpc", key: "http_rps", label: "VPC: HTTP GET /, 1 client (requests/s)", format: "%.0f", goal: atLeastQEMU},
		{part: "vpc", key: "http_conc_rps", label: fmt.Sprintf("VPC: HTTP GET /, %d clients at once (requests/s)", vpcClients), format: "%.0f", goal: atLeastQEMU},
		{part: "vpc", key: "http_failed", label: "VPC: failed GETs (both measurements)", format: "%.0f"},
		// With -trace-ping (pingtrace.go); medians over the traced pings.
		{part: "vpc", key: "seg_pings", label: "VPC traced: pings with every event in order", format: "%.0f"},
		{part: "vpc", key: "seg_send_irq_us", label: "VPC traced: client send → guest interrupt (µs)", format: "%.0f"},
		{part: "vpc", key: "seg_irq_vcpu_us", label: "VPC traced: interrupt → vCPU awake (µs)", format: "%.0f"},
		{part: "vpc", key: "seg_guest_us", label: "VPC traced: guest, awake → transmit kick (µs)", format: "%.0f"},
		{part: "vpc", key: "seg_kick_write_us", label: "VPC traced: kick → writev to the tap (µs)", format: "%.0f"},
		{part: "vpc", key: "seg_write_reply_us", label: "VPC traced: writev → client has the reply (µs)", format: "%.0f"},
	}
}

// atMostQEMU is the goal of latencies: gureum's median no higher than
// QEMU's.
var atMostQEMU = &goal{check: func(g, q spread) string {
	return verdict("≤ QEMU", g.median <= q.median, g.n > 0 && q.n > 0)
}, level: 1}

// runVPC is one repetition of the vpc part on one peer.
func runVPC(ctx context.Context, c caseRun, p peer, rep int) (outcome, error) {
	b := c.vpc
	g := guestSetup{kernel: c.kernel, cmdline: "serve ip=" + guestCIDR, cpus: 1, memMiB: guestMemMiB, tap: b.tap(p)}
	out := outcome{argv: b.wrap(p.command(g)), metrics: map[string]float64{}}
	b.forgetNeighbours()
	fd, err := openICMPSocket(b.client)
	if err != nil {
		return out, err
	}
	defer unix.Close(fd)
	proc, err := startVMM(out.argv, p.needsPTY, c.logPath("vpc", p.name, rep))
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

	var trace *pingTrace
	if c.o.tracePing {
		if trace, err = startPingTrace(); err != nil {
			return out, err
		}
	}
	rtts, reads, sent, err := pg.roundTrips(ctx, vpcPings, c.o.pingGap, vpcPingTimeout)
	if trace != nil {
		text, terr := trace.stop()
		if err == nil && terr != nil {
			err = terr
		}
		// The raw trace is kept beside the console log, for a closer look.
		tracePath := strings.TrimSuffix(c.logPath("vpc", p.name, rep), ".log") + ".trace"
		if werr := os.WriteFile(tracePath, []byte(text), 0o644); werr != nil && err == nil {
			err = werr
		}
		segs, _ := pingSegments(text, os.Getpid(), proc.cmd.Process.Pid)
		for _, k := range pingSegmentKeys {
			out.metrics[k+"_us"] = summarize(segs[k], 0).median
		}
		out.metrics["seg_pings"] = float64(len(segs[pingSegmentKeys[0]]))
	}
	if err != nil {
		return out, err
	}
	if len(rtts) == 0 {
		return out, fmt.Errorf("no replies to %d echo requests", sent)
	}
	out.metrics["ping_median_us"] = micros(percentile(rtts, 50))
	out.metrics["ping_p99_us"] = micros(percentile(rtts, 99))
	out.metrics["ping_read_median_us"] = micros(percentile(reads, 50))
	out.metrics["ping_loss_pct"] = 100 * float64(sent-len(rtts)) / float64(sent)

	client := &http.Client{Transport: &http.Transport{DialContext: b.dial, DisableKeepAlives: true}, Timeout: vpcGetTimeout}
	defer client.CloseIdleConnections()
	url := "http://" + guestIP + "/"
	seq, err := httpLoad(ctx, client, url, 1, vpcRequests, vpcHTTPTime)
	if err != nil {
		return out, fmt.Errorf("HTTP, 1 client: %w", err)
	}
	conc, err := httpLoad(ctx, client, url, vpcClients, vpcRequests, vpcHTTPTime)
	if err != nil {
		return out, fmt.Errorf("HTTP, %d clients: %w", vpcClients, err)
	}
	out.metrics["http_rps"] = seq.perSecond()
	out.metrics["http_conc_rps"] = conc.perSecond()
	out.metrics["http_failed"] = float64(seq.failed + conc.failed)
	out.detail = fmt.Sprintf("%d/%d echo replies %v apart; 1 client: %s; %d clients: %s", len(rtts), sent, c.o.pingGap, seq, vpcClients, conc)
	if s := proc.status(); s != "running" {
		return out, fmt.Errorf("the VMM ended during the measurement (%s)", s)
	}
	return out, nil
}

// roundTrips sends count echo requests one at a time, gap apart, each
// waiting up to timeout for its reply, and returns the round trip of
// every request answered in time, the same round trips until the client
// had read the reply, and how many requests were sent. A reply that comes
// later is not counted.
//
// A round trip runs from just before the request's sendto(2) to the
// reply's arrival at the client's socket, by the kernel's receive time
// stamp, which is what ping(8) reports. That leaves out the wake-up of
// the client itself, which takes the same time whichever VMM answered
// but varies by tens of µs on this machine; the second list keeps it in.
//
// The client should cost each round trip as little as ping(8) does, and
// the same every time, so it keeps its OS thread for the whole loop and
// waits only in system calls: poll(2) for the reply and nanosleep(2) for
// the gap. A goroutine that instead parks on a Go timer between requests
// makes the runtime wake a second thread at each request (to run the
// timer, then to look for other work), on the same two CPUs as the VMM
// under test: in one run here that put 12 µs on QEMU's median round trip
// and 46 µs on gureum-vmm's (docs/benchmarks.md, "The VPC network").
func (p *pinger) roundTrips(ctx context.Context, count int, gap, timeout time.Duration) (rtts, reads []time.Duration, sent int, err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pause := unix.NsecToTimespec(gap.Nanoseconds())
	for seq := 0; seq < count; seq++ {
		if err := ctx.Err(); err != nil {
			return rtts, reads, sent, err
		}
		start := time.Now()
		if err := p.send(uint16(seq)); err != nil {
			return rtts, reads, sent, err
		}
		sent++
		_, last, err := p.receive(uint16(seq), start.Add(timeout))
		if err != nil {
			return rtts, reads, sent, err
		}
		// receive returns as soon as this request's reply is in, so
		// last and p.arrived are its; without it, they belong to a
		// late reply to an earlier request.
		if p.seen[uint16(seq)] {
			arrived := last
			if !p.arrived.IsZero() {
				arrived = p.arrived
			}
			rtts = append(rtts, arrived.Sub(start))
			reads = append(reads, last.Sub(start))
		}
		for rest := pause; ; {
			if err := unix.Nanosleep(&rest, &rest); err != unix.EINTR {
				break
			}
		}
	}
	return rtts, reads, sent, nil
}

// percentile is the q-th percentile (nearest rank) of d; d is sorted in
// place.
func percentile(d []time.Duration, q int) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	rank := (q*len(d) + 99) / 100 // ceil(q/100 · n), from 1
	if rank < 1 {
		rank = 1
	}
	return d[rank-1]
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// httpStats is the outcome of one HTTP measurement.
type httpStats struct {
	ok, failed int
	elapsed    time.Duration // first request until the last answer
	firstError string
}

func (s httpStats) perSecond() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.ok) / s.elapsed.Seconds()
}

func (s httpStats) String() string {
	t := fmt.Sprintf("%d ok, %d failed in %.2f s", s.ok, s.failed, s.elapsed.Seconds())
	if s.firstError != "" {
		t += " (first failure: " + s.firstError + ")"
	}
	return t
}

// httpLoad has clients goroutines GET url one request after the other
// until total requests have been made between them or limit has passed.
// A request counts as ok when it gets status 200 and the guest's page.
// It fails only when ctx ends or nothing at all succeeded.
func httpLoad(ctx context.Context, client *http.Client, url string, clients, total int, limit time.Duration) (httpStats, error) {
	var (
		next   atomic.Int64
		mu     sync.Mutex
		st     httpStats
		wg     sync.WaitGroup
		start  = time.Now()
		end    = start.Add(limit)
		lastAt time.Time
	)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(total) && time.Now().Before(end) && ctx.Err() == nil {
				err := getPage(ctx, client, url)
				mu.Lock()
				if err == nil {
					st.ok++
					lastAt = time.Now()
				} else {
					st.failed++
					if st.firstError == "" {
						st.firstError = oneLine(err.Error(), 200)
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return st, err
	}
	if st.ok == 0 {
		return st, fmt.Errorf("no request succeeded (%s)", st)
	}
	st.elapsed = lastAt.Sub(start)
	return st, nil
}

// getPage fetches url and checks that it is the test guest's page.
func getPage(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "gureum-testguest") {
		return fmt.Errorf("status %d, body %q", resp.StatusCode, oneLine(string(body), 80))
	}
	return nil
}
