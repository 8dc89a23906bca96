package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
)

// row is one repetition of one case, written as a JSON line.
type row struct {
	Part    string             `json:"part"`
	Peer    string             `json:"peer"`
	Rep     int                `json:"rep"`
	Time    string             `json:"time"`
	Load1   float64            `json:"load1"`
	Argv    []string           `json:"argv"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
	Detail  string             `json:"detail,omitempty"`
	Error   string             `json:"error,omitempty"`
}

// metric describes one figure of the table.
type metric struct {
	part, key string
	label     string
	format    string // for one value
	goal      *goal  // nil: the figure is reported without one
}

// goal is what the project aims for on a figure.
type goal struct {
	// check says whether the spreads of gureum and QEMU meet it.
	check func(gureum, qemu spread) string
	// level, for a goal on the ratio gureum/QEMU, is the ratio at which
	// it is just met (1 for "≥ QEMU" or "≤ QEMU"); zero for other goals.
	// When the repetitions cannot tell the ratio from it, the table says
	// so beside the verdict (noiseNote).
	level float64
}

// verdict renders a goal check; measured says the figures it needs exist.
func verdict(text string, met, measured bool) string {
	switch {
	case !measured:
		return text + ": not measured"
	case met:
		return text + ": met"
	default:
		return text + ": not met"
	}
}

// metrics lists the table's rows in order.
var metrics = []metric{
	{part: "boot", key: "ready_s", label: "start to ready (s)", format: "%.3f",
		goal: &goal{check: func(g, q spread) string {
			return verdict("≤ 0.5× QEMU", g.median <= 0.5*q.median, g.n > 0 && q.n > 0)
		}, level: 0.5}},
	{part: "boot", key: "first_line_s", label: "start to the guest's first console line (s)", format: "%.3f"},
	{part: "boot", key: "rss_mib", label: "VmRSS 2 s after that line (MiB)", format: "%.1f"},
	{part: "boot", key: "guest_mib", label: "… of it guest RAM touched (MiB)", format: "%.1f"},
	{part: "boot", key: "own_mib", label: "… of it the VMM's own (MiB)", format: "%.1f",
		goal: &goal{check: func(g, q spread) string { return verdict("gureum ≤ 6 MiB", g.median <= 6, g.n > 0) }}},
	{part: "boot", key: "own_file_mib", label: "… of the VMM's own: binary and library pages (MiB)", format: "%.1f"},
	{part: "blk", key: "write_mbs", label: "virtio-blk sequential write (MB/s)", format: "%.0f",
		goal: atLeastQEMU},
	{part: "blk", key: "read_mbs", label: "virtio-blk sequential read (MB/s)", format: "%.0f",
		goal: atLeastQEMU},
	{part: "net", key: "echo_pps", label: "ICMP echo replies/s", format: "%.0f",
		goal: atLeastQEMU},
	{part: "net", key: "echo_loss_pct", label: "echo requests unanswered (%)", format: "%.1f"},
}

func init() { metrics = append(metrics, blkIOMetrics()...) }

// atLeastQEMU is the goal of the device figures: gureum's median no
// lower than QEMU's.
var atLeastQEMU = &goal{check: func(g, q spread) string {
	return verdict("≥ QEMU", g.median >= q.median, g.n > 0 && q.n > 0)
}, level: 1}

// spread is min, median and max of the successful repetitions of a case.
type spread struct {
	min, median, max float64
	n, failed        int
}

// summarize computes the spread of values; failed counts runs without a
// value.
func summarize(values []float64, failed int) spread {
	s := spread{n: len(values), failed: failed}
	if len(values) == 0 {
		return s
	}
	v := append([]float64(nil), values...)
	sort.Float64s(v)
	s.min, s.max = v[0], v[len(v)-1]
	if len(v)%2 == 1 {
		s.median = v[len(v)/2]
	} else {
		s.median = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return s
}

// cell renders a spread as "min / median / max (n=N)".
func (s spread) cell(format string) string {
	if s.n == 0 {
		if s.failed > 0 {
			return fmt.Sprintf("failed (%d runs)", s.failed)
		}
		return "—"
	}
	c := fmt.Sprintf(format+" / "+format+" / "+format+" (n=%d", s.min, s.median, s.max, s.n)
	if s.failed > 0 {
		c += fmt.Sprintf(", %d failed", s.failed)
	}
	return c + ")"
}

// writeTable renders the results as a markdown table: one row per figure,
// one column per peer, then the ratio of medians gureum/QEMU, the ratios of
// the repetitions taken one by one (pairedRatios) and the goal.
func writeTable(w io.Writer, rows []row, peers []peer) {
	fmt.Fprintf(w, "| measurement |")
	for _, p := range peers {
		fmt.Fprintf(w, " %s (min / median / max) |", p.title)
	}
	fmt.Fprintf(w, " gureum / QEMU (medians) | gureum / QEMU per repetition (median, min–max) | goal |\n|---|")
	for range peers {
		fmt.Fprintf(w, "---|")
	}
	fmt.Fprintf(w, "---|---|---|\n")
	for _, m := range metrics {
		spreads := map[string]spread{}
		seen := false
		for _, p := range peers {
			var vals []float64
			failed := 0
			for _, r := range rows {
				if r.Part != m.part || r.Peer != p.name {
					continue
				}
				// A run that succeeded without this figure is not a
				// failure: the figure does not apply to that peer.
				if v, ok := r.Metrics[m.key]; ok && r.Error == "" {
					vals = append(vals, v)
				} else if r.Error != "" {
					failed++
				}
			}
			spreads[p.name] = summarize(vals, failed)
			seen = seen || len(vals) > 0 || failed > 0
		}
		if !seen {
			continue
		}
		fmt.Fprintf(w, "| %s |", m.label)
		for _, p := range peers {
			fmt.Fprintf(w, " %s |", spreads[p.name].cell(m.format))
		}
		g, q := spreads[peerGureum], spreads[peerQEMU]
		ratio := "—"
		if g.n > 0 && q.n > 0 && q.median != 0 {
			ratio = fmt.Sprintf("%.2f", g.median/q.median)
		}
		ratios := pairedRatios(rows, m.part, m.key)
		paired := "—"
		if p := summarize(ratios, 0); p.n > 0 {
			paired = fmt.Sprintf("%.2f (%.2f–%.2f, n=%d)", p.median, p.min, p.max, p.n)
		}
		goalCell := "—"
		if m.goal != nil {
			goalCell = m.goal.check(g, q) + noiseNote(ratios, m.goal.level)
		}
		fmt.Fprintf(w, " %s | %s | %s |\n", ratio, paired, goalCell)
	}
}

// pairedRatios returns gureum's figure over QEMU's for every repetition in
// which both measured it. The two runs of a repetition follow each other
// (runPart), so a ratio compares them under the same machine conditions;
// the spread of these ratios shows how much of the difference between the
// medians is the machine drifting between repetitions.
func pairedRatios(rows []row, part, key string) []float64 {
	g, q := map[int]float64{}, map[int]float64{}
	for _, r := range rows {
		v, ok := r.Metrics[key]
		if r.Part != part || r.Error != "" || !ok {
			continue
		}
		switch r.Peer {
		case peerGureum:
			g[r.Rep] = v
		case peerQEMU:
			q[r.Rep] = v
		}
	}
	var out []float64
	for rep, gv := range g {
		if qv, ok := q[rep]; ok && qv != 0 {
			out = append(out, gv/qv)
		}
	}
	sort.Float64s(out)
	return out
}

// noiseNote qualifies a verdict on a ratio goal whose level lies inside
// the 95 % confidence interval of the median per-repetition ratio: the two
// VMMs differ by less than the repetitions can resolve, whichever way the
// medians fell. It is empty otherwise, and when there are too few
// repetitions for an interval.
func noiseNote(sortedRatios []float64, level float64) string {
	lo, hi, ok := medianInterval(sortedRatios)
	if level == 0 || !ok || level < lo || level > hi {
		return ""
	}
	return fmt.Sprintf(" (within the noise: ratio %.2f–%.2f, 95 %%)", lo, hi)
}

// medianInterval returns a 95 % confidence interval for the median of what
// the sorted values are drawn from: the k-th smallest and k-th largest
// value, with k the largest for which a Binomial(n, ½) count falls below
// k with probability at most 2.5 % (the sign test's interval, which
// assumes nothing about the distribution). It needs at least 6 values.
func medianInterval(sorted []float64) (lo, hi float64, ok bool) {
	n := len(sorted)
	k := 0
	choose, cum := 1.0, 0.0 // C(n, j) and P(count ≤ j)
	for j := 0; j < n; j++ {
		if j > 0 {
			choose = choose * float64(n-j+1) / float64(j)
		}
		cum += math.Ldexp(choose, -n)
		if cum > 0.025 {
			break
		}
		k = j + 1
	}
	if k == 0 {
		return 0, 0, false
	}
	return sorted[k-1], sorted[n-k], true
}

// writeNotes prints the notes of the peers that took part.
func writeNotes(w io.Writer, rows []row, peers []peer) {
	for _, p := range peers {
		if p.note == "" {
			continue
		}
		for _, r := range rows {
			if r.Peer == p.name {
				fmt.Fprintf(w, "\nNote on %s: %s\n", p.title, p.note)
				break
			}
		}
	}
}

// writeFacts renders the machine description as a markdown list.
func writeFacts(w io.Writer, facts []fact) {
	for _, f := range facts {
		fmt.Fprintf(w, "- %s: `%s`\n", f.Key, strings.ReplaceAll(f.Value, "`", "'"))
	}
}

// writeFailures lists the failed runs with their errors, so that a "failed"
// cell in the table can be traced to its console log.
func writeFailures(w io.Writer, rows []row) {
	first := true
	for _, r := range rows {
		if r.Error == "" {
			continue
		}
		if first {
			fmt.Fprintf(w, "\nFailed runs:\n\n")
			first = false
		}
		fmt.Fprintf(w, "- %s/%s rep %d: %s\n", r.Part, r.Peer, r.Rep, oneLine(r.Error, 300))
	}
}

// oneLine shortens s to at most n bytes on one line.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
