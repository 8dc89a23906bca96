package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// part is one kind of measurement.
type part struct {
	name    string
	devices bool // needs virtio devices, which only some peers offer
	// gureumOnly: the part measures gureum's own control plane, which
	// has no counterpart in the other peers.
	gureumOnly bool
	run        func(ctx context.Context, c caseRun, p peer, rep int) (outcome, error)
}

var parts = []part{
	{name: "boot", run: runBoot},
	{name: "blk", devices: true, run: runBlk},
	{name: "net", devices: true, run: runNet},
	{name: "blkraw", devices: true, run: runBlkIO("raw")},
	{name: "blkqcow2", devices: true, run: runBlkIO("qcow2")},
}

// selected returns the peers that run part under the -only filter.
func selected(o options, pt part, peers []peer) []peer {
	var out []peer
	for _, p := range peers {
		if pt.devices && !p.devices || pt.gureumOnly && p.name != peerGureum {
			continue
		}
		if o.only.MatchString(pt.name + "/" + p.name) {
			out = append(out, p)
		}
	}
	return out
}

// benchmark runs every selected part. Within a part the repetitions are
// interleaved (rep 0 of every peer, then rep 1, ...), so that a change of
// machine load during the part affects all peers alike (runPart).
func benchmark(ctx context.Context, o options) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, taps, /dev/kvm)")
	}
	kernel := filepath.Join(o.binDir, "testguest.elf")
	if _, err := os.Stat(kernel); err != nil {
		return fmt.Errorf("test guest: %w (run make build first)", err)
	}
	dir := filepath.Join(o.outDir, time.Now().UTC().Format("20060102T150405Z"))
	consoleDir := filepath.Join(dir, "console")
	if err := os.MkdirAll(consoleDir, 0o755); err != nil {
		return fmt.Errorf("results directory: %w", err)
	}

	peers := []peer{gureumPeer(o.binDir), qemuPeer(o.qemu)}
	gokvmBin := o.gokvm
	if o.only.MatchString("boot/" + peerGokvm) {
		if gokvmBin == "" {
			bin, cleanup, err := installGokvm(ctx)
			if err != nil {
				fmt.Fprintf(os.Stderr, "bench: %v; leaving gokvm out\n", err)
			} else {
				defer cleanup()
				gokvmBin = bin
			}
		}
		if gokvmBin != "" {
			peers = append(peers, gokvmPeer(gokvmBin))
		}
	}

	facts := describeMachine(o, gokvmBin)
	rowsFile, err := os.Create(filepath.Join(dir, "rows.jsonl"))
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	defer rowsFile.Close()
	enc := json.NewEncoder(rowsFile)

	fmt.Printf("bench: results in %s\n", dir)
	var rows []row
	for _, pt := range parts {
		run := selected(o, pt, peers)
		if len(run) == 0 {
			continue
		}
		load, _ := loadAverage()
		facts = append(facts, fact{"load average before " + pt.name, load})
		fmt.Printf("== %s (load average %s)\n", pt.name, load)
		c := caseRun{o: o, kernel: kernel, consoleDir: consoleDir}
		if pt.name == "net" {
			n, err := createNet()
			if err != nil {
				return fmt.Errorf("network namespace: %w", err)
			}
			c.net = n
		}
		if pt.name == "vpc" {
			v, err := createBenchVPC(run)
			if err != nil {
				return fmt.Errorf("VPC: %w", err)
			}
			c.vpc = v
		}
		err := runPart(ctx, c, pt, run, func(r row) {
			rows = append(rows, r)
			enc.Encode(r)
		})
		if c.net != nil {
			c.net.remove()
		}
		if c.vpc != nil {
			c.vpc.remove()
		}
		if err != nil {
			break // cancelled; the table still gets what was measured
		}
	}

	var table bytes.Buffer
	fmt.Fprintf(&table, "Machine and versions:\n\n")
	writeFacts(&table, facts)
	fmt.Fprintf(&table, "\n")
	writeTable(&table, rows, peers)
	writeNotes(&table, rows, peers)
	writeFailures(&table, rows)
	if err := os.WriteFile(filepath.Join(dir, "table.md"), table.Bytes(), 0o644); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	factsJSON, _ := json.MarshalIndent(facts, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "machine.json"), factsJSON, 0o644); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	fmt.Printf("\n%s", table.Bytes())
	return ctx.Err()
}

// runPart runs reps repetitions of a part on each of its peers and hands
// every row to record. Within a repetition the peers run one after the
// other, in reverse order every other repetition, so that no peer always
// runs first (straight after the previous part) or always after the same
// other one. It stops early only when ctx is cancelled; a failing run is
// recorded and the next one started.
func runPart(ctx context.Context, c caseRun, pt part, peers []peer, record func(row)) error {
	for rep := 0; rep < c.o.reps; rep++ {
		for _, p := range repetitionOrder(peers, rep) {
			if err := ctx.Err(); err != nil {
				return err
			}
			_, load1 := loadAverage()
			r := row{Part: pt.name, Peer: p.name, Rep: rep, Time: time.Now().UTC().Format(time.RFC3339), Load1: load1}
			out, err := pt.run(ctx, c, p, rep)
			r.Argv, r.Metrics, r.Detail = out.argv, out.metrics, out.detail
			if err != nil {
				r.Error = err.Error()
				fmt.Printf("%s/%s #%d: FAILED: %s\n", pt.name, p.name, rep, oneLine(r.Error, 300))
			} else {
				fmt.Printf("%s/%s #%d: %s\n", pt.name, p.name, rep, formatMetrics(pt.name, out.metrics))
			}
			record(r)
		}
	}
	return nil
}

// repetitionOrder is the order in which the peers run in repetition rep:
// as given in even repetitions, reversed in odd ones.
func repetitionOrder(peers []peer, rep int) []peer {
	out := append([]peer(nil), peers...)
	if rep%2 == 1 {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out
}

// formatMetrics prints a run's figures in table order.
func formatMetrics(partName string, values map[string]float64) string {
	var b bytes.Buffer
	for _, m := range metrics {
		if v, ok := values[m.key]; ok && m.part == partName {
			fmt.Fprintf(&b, "%s="+m.format+" ", m.key, v)
		}
	}
	return b.String()
}
