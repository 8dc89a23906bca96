package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// With -trace-ping the vpc part splits every latency ping into where its
// time went, from kernel trace events (tracefs) recorded during the pings:
//
//	client sendto ──► interrupt ──► vCPU awake ──► kick ──► writev ──► client has the reply
//	   (harness)      (VMM: MSI)    (KVM)          (guest)  (VMM)       (harness: recvmsg)
//
//   - send→irq: the client's send through the bridge into the tap, the
//     VMM's device thread woken, reading the frame into the guest's
//     receive buffer and raising the queue's MSI (kvm_msi_set_irq);
//   - irq→vcpu: KVM waking the halted vCPU (kvm_vcpu_wakeup);
//   - guest: the guest's own work, from its wake-up to its transmit kick
//     (the first MMIO write outside the local APIC: kvm_mmio, or
//     kvm_fast_mmio where the kick takes KVM's fast path);
//   - kick→write: the device thread woken by the kick's ioeventfd,
//     reading the reply from the transmit queue until its writev(2) to
//     the tap;
//   - write→reply: the reply through the bridge to the client, which is
//     woken and reads it (recvmsg(2) returning data).
//
// The same events are recorded for both VMMs, so the segments compare
// like with like; tracing costs time, so traced round trips are longer
// than untraced ones and a traced run's ping figures are not the part's
// figures. A ping whose events are not all there in that order (the vCPU
// was not halted, the trace lost events) is left out.

// tracefs is where the kernel's trace file system is mounted.
const tracefs = "/sys/kernel/tracing"

// pingTraceEvents are the events a traced ping needs.
var pingTraceEvents = []string{
	"syscalls/sys_enter_sendto",
	"syscalls/sys_exit_recvmsg",
	"syscalls/sys_enter_writev",
	"kvm/kvm_msi_set_irq",
	"kvm/kvm_vcpu_wakeup",
	"kvm/kvm_mmio",
	"kvm/kvm_fast_mmio",
}

// pingTrace is a tracefs recording in progress, with what it changed so
// that stop can put it back.
type pingTrace struct {
	saved map[string]string // tracefs file → its content before
}

// startPingTrace clears the trace buffer, enables the events (with each
// event's thread group id recorded) and turns tracing on.
func startPingTrace() (*pingTrace, error) {
	t := &pingTrace{saved: map[string]string{}}
	set := func(file, value string) error {
		path := filepath.Join(tracefs, file)
		if _, ok := t.saved[file]; !ok {
			old, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("trace: %w", err)
			}
			t.saved[file] = strings.TrimSpace(string(old))
		}
		if err := os.WriteFile(path, []byte(value), 0); err != nil {
			return fmt.Errorf("trace: write %s: %w", path, err)
		}
		return nil
	}
	steps := [][2]string{{"tracing_on", "0"}, {"options/record-tgid", "1"}, {"buffer_size_kb", "8192"}}
	for _, e := range pingTraceEvents {
		steps = append(steps, [2]string{"events/" + e + "/enable", "1"})
	}
	for _, s := range steps {
		if err := set(s[0], s[1]); err != nil {
			t.restore()
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(tracefs, "trace"), nil, 0); err != nil { // clears the buffer
		t.restore()
		return nil, fmt.Errorf("trace: clear: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tracefs, "tracing_on"), []byte("1"), 0); err != nil {
		t.restore()
		return nil, fmt.Errorf("trace: start: %w", err)
	}
	return t, nil
}

// stop turns tracing off, returns what was recorded and puts every
// setting back as it was.
func (t *pingTrace) stop() (string, error) {
	os.WriteFile(filepath.Join(tracefs, "tracing_on"), []byte("0"), 0)
	out, err := os.ReadFile(filepath.Join(tracefs, "trace"))
	t.restore()
	os.WriteFile(filepath.Join(tracefs, "trace"), nil, 0)
	if err != nil {
		return "", fmt.Errorf("trace: read: %w", err)
	}
	return string(out), nil
}

// restore writes back the saved settings, events first.
func (t *pingTrace) restore() {
	files := make([]string, 0, len(t.saved))
	for f := range t.saved {
		files = append(files, f)
	}
	sort.Slice(files, func(i, j int) bool {
		return strings.HasPrefix(files[i], "events/") && !strings.HasPrefix(files[j], "events/")
	})
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(tracefs, f), []byte(t.saved[f]), 0); err != nil {
			fmt.Fprintf(os.Stderr, "bench: trace: restore %s: %v\n", f, err)
		}
	}
}

// pingSegmentKeys are the segments in the order of a round trip; they are
// also the metric keys (with "_us").
var pingSegmentKeys = []string{"seg_send_irq", "seg_irq_vcpu", "seg_guest", "seg_kick_write", "seg_write_reply"}

// traceLine matches a line of the trace file with record-tgid on:
// "comm-tid (tgid) [cpu] flags seconds: event..." (the tgid may show as
// "-------" when the kernel did not know it).
var traceLine = regexp.MustCompile(`^\s*.+?-(\d+)\s+\(\s*(\d+|-+)\)\s+\[\d+\]\s+\S+\s+(\d+\.\d+): (\w+)(.*)$`)

// lapicPage is the guest-physical page of the local APIC; writes to it
// (an EOI) are not kicks.
const lapicPage = 0xfee00000

// pingSegments walks a trace and returns, for every ping whose events
// all came in order, the length of each segment in microseconds (by
// pingSegmentKeys), plus how many pings the client sent. client and vmm
// are the process ids of the pinger and of the VMM.
func pingSegments(trace string, client, vmm int) (map[string][]float64, int) {
	segs := map[string][]float64{}
	const (
		wantIRQ = iota + 1
		wantWake
		wantKick
		wantWrite
		wantReply
	)
	state := 0
	var stamps [6]float64
	sent := 0
	sc := bufio.NewScanner(strings.NewReader(trace))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := traceLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		tgid, err := strconv.Atoi(m[2])
		if err != nil {
			continue
		}
		ts, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			continue
		}
		us := ts * 1e6
		event, rest := m[4], m[5]
		switch {
		case tgid == client && event == "sys_sendto":
			sent++
			state, stamps[0] = wantIRQ, us
		case tgid == vmm && event == "kvm_msi_set_irq" && state == wantIRQ:
			state, stamps[1] = wantWake, us
		case tgid == vmm && event == "kvm_vcpu_wakeup" && state == wantWake:
			state, stamps[2] = wantKick, us
		case tgid == vmm && state == wantKick && isKick(event, rest):
			state, stamps[3] = wantWrite, us
		case tgid == vmm && event == "sys_writev" && state == wantWrite:
			state, stamps[4] = wantReply, us
		case tgid == client && event == "sys_recvmsg" && state == wantReply && returnedData(rest):
			stamps[5] = us
			for i, k := range pingSegmentKeys {
				segs[k] = append(segs[k], stamps[i+1]-stamps[i])
			}
			state = 0
		}
	}
	return segs, sent
}

// isKick reports whether a kvm_mmio or kvm_fast_mmio event is a guest
// write outside the local APIC's page.
func isKick(event, rest string) bool {
	var gpa string
	switch event {
	case "kvm_mmio":
		if !strings.Contains(rest, "mmio write") {
			return false
		}
		gpa = fieldAfter(rest, "gpa ")
	case "kvm_fast_mmio":
		gpa = fieldAfter(rest, "gpa ")
	default:
		return false
	}
	addr, err := strconv.ParseUint(strings.TrimPrefix(gpa, "0x"), 16, 64)
	return err == nil && addr&^0xfff != lapicPage
}

// fieldAfter returns the space-delimited word after key in s, or "".
func fieldAfter(s, key string) string {
	i := strings.Index(s, key)
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+len(key):])
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// returnedData reports whether a syscall exit event (" -> 0x54")
// returned a positive byte count. An error return (" -> 0xfffffffffffffff5",
// -EAGAIN) does not fit an int64 and fails to parse.
func returnedData(rest string) bool {
	n, err := strconv.ParseInt(strings.TrimPrefix(fieldAfter(rest, "-> "), "0x"), 16, 64)
	return err == nil && n > 0
}
