package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gureum/storage/qcow2"
)

// The blkio parts compare the disk formats: the same guest, on a fresh
// sparse image in raw or qcow2 format, runs the sequential block self test
// (blk.mib MiB in 1 MiB requests, four in flight) and then random 4 KiB
// reads and random 4 KiB writes over the first 64 MiB, four in flight,
// for blkIOSeconds each (blkiops=0:S:rw). QEMU opens the same files with
// the same format (-drive format=raw|qcow2, cache=writeback).

// blkIOSeconds is the length of each random-I/O window.
const blkIOSeconds = 3

// blkIOPSLine is one random-I/O result of the guest.
var blkIOPSLine = regexp.MustCompile(`selftest blkiops: (ok|fail) ops=(\d+) seconds=(\d+) mode=(read|write)[^\r\n]*\r?\n`)

// runBlkIO returns the part runner for one image format.
func runBlkIO(format string) func(ctx context.Context, c caseRun, p peer, rep int) (outcome, error) {
	return func(ctx context.Context, c caseRun, p peer, rep int) (outcome, error) {
		img, err := os.MkdirTemp(c.o.scratch, "gureum-bench-*")
		if err != nil {
			return outcome{}, fmt.Errorf("disk image: %w", err)
		}
		defer os.RemoveAll(img)
		path := filepath.Join(img, "disk."+format)
		if format == "qcow2" {
			err = qcow2.Create(path, blkImageSize, qcow2.CreateOptions{})
		} else {
			err = os.WriteFile(path, nil, 0o600)
			if err == nil {
				err = os.Truncate(path, blkImageSize)
			}
		}
		if err != nil {
			return outcome{}, fmt.Errorf("disk image: %w", err)
		}
		part := "blk" + format
		g := guestSetup{kernel: c.kernel, cmdline: fmt.Sprintf("selftest blk.mib=%d blkiops=0:%d:rw", c.o.blkMiB, blkIOSeconds),
			cpus: 1, memMiB: guestMemMiB, disk: path, diskFormat: format}
		out := outcome{argv: p.command(g), metrics: map[string]float64{}}
		proc, err := startVMM(out.argv, p.needsPTY, c.logPath(part, p.name, rep))
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
		if m[1] != "ok" {
			return out, fmt.Errorf("guest: %s", strings.TrimSpace(m[0]))
		}
		r, err := parseBlkResult(strings.TrimSpace(m[0]))
		if err != nil {
			return out, err
		}
		out.metrics["seq_write_mbs"] = r.writeMBs
		out.metrics["seq_read_mbs"] = r.readMBs
		var details []string
		for _, mode := range []string{"read", "write"} {
			m, _, err := proc.waitFor(ctx, regexp.MustCompile(`selftest blkiops: (ok|fail)[^\r\n]*mode=`+mode+`\r?\n`), blkTimeout)
			if err != nil {
				return out, err
			}
			f := blkIOPSLine.FindStringSubmatch(m[0])
			if f == nil || f[1] != "ok" {
				return out, fmt.Errorf("guest: %s", strings.TrimSpace(m[0]))
			}
			ops, _ := strconv.ParseFloat(f[2], 64)
			secs, _ := strconv.ParseFloat(f[3], 64)
			out.metrics["rand_"+mode+"_iops"] = ops / secs
			details = append(details, strings.TrimSpace(m[0]))
		}
		out.detail = strings.Join(details, "; ")
		code, err := proc.waitExit(ctx, exitTimeout)
		if err != nil {
			return out, fmt.Errorf("after the self test: %w", err)
		}
		if code != 0 {
			return out, fmt.Errorf("VMM exit status %d after the self test, want 0 (poweroff)", code)
		}
		return out, nil
	}
}

// blkIOMetrics are the table rows of the blkio parts.
func blkIOMetrics() []metric {
	var out []metric
	for _, f := range []string{"raw", "qcow2"} {
		out = append(out,
			metric{part: "blk" + f, key: "seq_write_mbs", label: f + ": sequential write, 1 MiB requests (MB/s)", format: "%.0f", goal: atLeastQEMU},
			metric{part: "blk" + f, key: "seq_read_mbs", label: f + ": sequential read, 1 MiB requests (MB/s)", format: "%.0f", goal: atLeastQEMU},
			metric{part: "blk" + f, key: "rand_read_iops", label: f + ": random 4 KiB reads, 4 in flight (IOPS)", format: "%.0f", goal: atLeastQEMU},
			metric{part: "blk" + f, key: "rand_write_iops", label: f + ": random 4 KiB writes, 4 in flight (IOPS)", format: "%.0f", goal: atLeastQEMU},
		)
	}
	return out
}
