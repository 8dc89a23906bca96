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
