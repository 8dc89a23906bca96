package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	s := summarize([]float64{3, 1, 2}, 1)
	if s.min != 1 || s.median != 2 || s.max != 3 || s.n != 3 || s.failed != 1 {
		t.Fatalf("odd: %+v", s)
	}
	if s := summarize([]float64{4, 1, 3, 2}, 0); s.median != 2.5 {
		t.Fatalf("even: median %v, want 2.5", s.median)
	}
	if got := summarize(nil, 2).cell("%.1f"); got != "failed (2 runs)" {
		t.Fatalf("all failed: %q", got)
	}
	if got := summarize(nil, 0).cell("%.1f"); got != "—" {
		t.Fatalf("not applicable: %q", got)
	}
	if got := summarize([]float64{1, 2}, 1).cell("%.1f"); got != "1.0 / 1.5 / 2.0 (n=2, 1 failed)" {
		t.Fatalf("cell %q", got)
	}
}

func TestWriteTable(t *testing.T) {
	peers := []peer{{name: peerGureum, title: "gureum-vmm"}, {name: peerQEMU, title: "QEMU microvm"}, {name: peerGokvm, title: "gokvm", note: "no ACPI"}}
	rows := []row{
		{Part: "boot", Peer: peerGureum, Rep: 0, Metrics: map[string]float64{"ready_s": 0.10, "own_mib": 5}},
		{Part: "boot", Peer: peerGureum, Rep: 1, Metrics: map[string]float64{"ready_s": 0.12, "own_mib": 7}},
		{Part: "boot", Peer: peerGureum, Rep: 2, Metrics: map[string]float64{"ready_s": 0.11, "own_mib": 5.5}},
		{Part: "boot", Peer: peerQEMU, Rep: 0, Metrics: map[string]float64{"ready_s": 0.40, "own_mib": 33}},
		{Part: "boot", Peer: peerQEMU, Rep: 1, Metrics: map[string]float64{"ready_s": 0.48, "own_mib": 33}},
		{Part: "boot", Peer: peerQEMU, Rep: 2, Error: "no ready line"},
		{Part: "boot", Peer: peerGokvm, Metrics: map[string]float64{"first_line_s": 0.3}},
		{Part: "blk", Peer: peerGureum, Error: "guest: selftest blk: fail"},
		{Part: "blk", Peer: peerQEMU, Metrics: map[string]float64{"write_mbs": 200, "read_mbs": 300}},
	}
	var b bytes.Buffer
	writeTable(&b, rows, peers)
	writeNotes(&b, rows, peers)
	writeFailures(&b, rows)
	out := b.String()
	for _, want := range []string{
		// Repetitions 0 and 1 pair up (0.25 and 0.25); 2 has no QEMU figure.
		"| start to ready (s) | 0.100 / 0.110 / 0.120 (n=3) | 0.400 / 0.440 / 0.480 (n=2, 1 failed) | — | 0.25 | 0.25 (0.25–0.25, n=2) | ≤ 0.5× QEMU: met |",
		"| … of it the VMM's own (MiB) | 5.0 / 5.5 / 7.0 (n=3) | 33.0 / 33.0 / 33.0 (n=2, 1 failed) | — | 0.17 | 0.18 (0.15–0.21, n=2) | gureum ≤ 6 MiB: met |",
		"| virtio-blk sequential write (MB/s) | failed (1 runs) | 200 / 200 / 200 (n=1) | — | — | — | ≥ QEMU: not measured |",
		"Note on gokvm: no ACPI",
		"- blk/gureum rep 0: guest: selftest blk: fail",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// Figures nobody measured get no row.
	if strings.Contains(out, "echo") {
		t.Errorf("table has a net row without net runs:\n%s", out)
	}
}

func TestRepetitionOrder(t *testing.T) {
	peers := []peer{{name: "a"}, {name: "b"}, {name: "c"}}
	names := func(ps []peer) string {
		var s []string
		for _, p := range ps {
			s = append(s, p.name)
		}
		return strings.Join(s, " ")
	}
	for rep, want := range []string{"a b c", "c b a", "a b c", "c b a"} {
		if got := names(repetitionOrder(peers, rep)); got != want {
			t.Errorf("repetition %d: %s, want %s", rep, got, want)
		}
	}
	if names(peers) != "a b c" {
		t.Errorf("the peers' own order changed: %s", names(peers))
	}
}

func TestMedianInterval(t *testing.T) {
	v := func(n int) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = float64(i + 1)
		}
		return out
	}
	if _, _, ok := medianInterval(v(5)); ok {
		t.Error("5 values gave an interval: 2 × 1/32 > 5 %")
	}
	for _, c := range []struct {
		n      int
		lo, hi float64
	}{
		{6, 1, 6},   // P(count = 0) = 1/64
		{10, 2, 9},  // P(count ≤ 1) = 11/1024
		{12, 3, 10}, // P(count ≤ 2) = 79/4096
	} {
		lo, hi, ok := medianInterval(v(c.n))
		if !ok || lo != c.lo || hi != c.hi {
			t.Errorf("%d values: %v–%v (%v), want %v–%v", c.n, lo, hi, ok, c.lo, c.hi)
		}
	}
}

func TestNoiseNote(t *testing.T) {
	level := []float64{0.93, 0.96, 0.98, 0.99, 1.00, 1.01, 1.01, 1.02, 1.03, 1.04}
	if got := noiseNote(level, 1); got != " (within the noise: ratio 0.96–1.03, 95 %)" {
		t.Errorf("level pair: %q", got)
	}
	faster := []float64{0.80, 0.82, 0.85, 0.86, 0.88, 0.90, 0.91, 0.93, 0.95, 1.02}
	if got := noiseNote(faster, 1); got != "" {
		t.Errorf("a clear difference got a note: %q", got)
	}
	if got := noiseNote(level, 0); got != "" {
		t.Errorf("a goal that is not on the ratio got a note: %q", got)
	}
	if got := noiseNote(level[:4], 1); got != "" {
		t.Errorf("4 repetitions got a note: %q", got)
	}
}

func TestWriteTableNoise(t *testing.T) {
	peers := []peer{{name: peerGureum, title: "gureum-vmm"}, {name: peerQEMU, title: "QEMU microvm"}}
	var rows []row
	for rep, pair := range [][2]float64{{500, 490}, {480, 495}, {505, 500}, {470, 480}, {510, 500}, {490, 500}} {
		rows = append(rows,
			row{Part: "vpc", Peer: peerGureum, Rep: rep, Metrics: map[string]float64{"ping_median_us": pair[0]}},
			row{Part: "vpc", Peer: peerQEMU, Rep: rep, Metrics: map[string]float64{"ping_median_us": pair[1]}})
	}
	var b bytes.Buffer
	writeTable(&b, rows, peers)
	if want := "≤ QEMU: met (within the noise: ratio 0.97–1.02, 95 %) |"; !strings.Contains(b.String(), want) {
		t.Errorf("table lacks %q:\n%s", want, b.String())
	}
}
