package main

import (
	"fmt"
	"regexp"
	"strconv"
)

// blkTransfer matches one direction of the block self test's result, e.g.
// "wrote 134217728 bytes in 128 requests 250 ms 536 MB/s".
var blkTransfer = regexp.MustCompile(`(wrote|read) (\d+) bytes in (\d+) requests (\d+) ms (\d+) MB/s`)

// blkResult is the guest-measured throughput of both directions.
type blkResult struct {
	writeMBs, readMBs float64
}

// parseBlkResult reads the "selftest blk: ok ..." line. The guest prints
// whole MB/s; the rate is recomputed from bytes and milliseconds when the
// time is long enough to be meaningful, and the guest's figure is used
// otherwise.
func parseBlkResult(line string) (blkResult, error) {
	var r blkResult
	found := map[string]bool{}
	for _, m := range blkTransfer.FindAllStringSubmatch(line, -1) {
		bytes, _ := strconv.ParseFloat(m[2], 64)
		ms, _ := strconv.ParseFloat(m[4], 64)
		printed, _ := strconv.ParseFloat(m[5], 64)
		rate := printed
		if ms >= 10 {
			rate = bytes / 1e6 / (ms / 1e3)
		}
		if m[1] == "wrote" {
			r.writeMBs = rate
		} else {
			r.readMBs = rate
		}
		found[m[1]] = true
	}
	if !found["wrote"] || !found["read"] {
		return r, fmt.Errorf("no write and read figures in %q", line)
	}
	return r, nil
}
